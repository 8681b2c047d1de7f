"""The media owner: the one process that captures and encodes, for every worker.

It holds a Redis lock (`rtc:owner`), so a second owner started by mistake, or by a supervisor
restarting it early, waits as a standby and takes over only when the first is gone. While it
holds the lock it runs exactly the streams that some worker wants (wire.WANTED_KEY), each with
a BroadcastHub and its device capture, as in single-process mode; the hub's one subscriber is a
PacketPublisher that puts every encoded packet on the stream's pub/sub channel.

The lock and the clock. Every Redis command of the owner answers or fails within
REDIS_TIMEOUT_SECONDS (no retries behind its back). The lock lives LOCK_SECONDS, four times
that, and is renewed every RENEW_SECONDS, so three renewals can fail before it is at risk. A
renewal sent at time t reaches Redis after t, so the lock then lives until t + LOCK_SECONDS at
least; an owner that has not renewed since t stops its streams at t + STOP_AFTER_SECONDS, a
whole Redis timeout before that: a standby can only take the lock once it expired, so two
owners never publish at once. Its token is random, one per owner: `host:pid` repeats (every
container's owner is PID 1), and two owners with one token would each take the other's lock
for its own.
"""
import asyncio
import collections
import json
import logging
import time
import uuid

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import LockError, LockNotOwnedError, RedisError

from ..audio import frametiming, sources
from ..audio.broadcast import BroadcastHub
from ..audio.capture import AudioCaptureManager
from ..audio.config import FRAME_MS
from ..ops import livestats, redispools
from ..ops.memory import release_free_memory
from ..ops.supervision import Supervisor
from . import wire

logger = logging.getLogger(__name__)

REDIS_TIMEOUT_SECONDS = 1.0  # every command of the owner answers or fails within this
LOCK_SECONDS = 4  # the lock's TTL: a dead owner's streams come back (from a standby) within this
RENEW_SECONDS = 1.0
STOP_AFTER_SECONDS = LOCK_SECONDS - REDIS_TIMEOUT_SECONDS  # unrenewed this long: stop, the lock may expire
POLL_SECONDS = 0.25  # how often demand is read: a new stream starts within this
STATS_SECONDS = 1.0
PUBLISH_QUEUE_PACKETS = 50  # 1 s of 20 ms packets (100 of 10 ms): Redis slower than that loses the oldest
STATS_TTL_SECONDS = 5


def stop_if_cancelled():
    """Raise CancelledError if this task was asked to stop and the request got lost: Python 3.11's
    asyncio.wait_for, which redis-py wraps every send in, returns a result that was ready instead
    of raising the cancellation (a test saw an owner serve on after its cancel). The request is
    still counted by the task."""
    if asyncio.current_task().cancelling():
        raise asyncio.CancelledError


class PacketPublisher:
    """A hub subscriber that publishes each packet (in order, from one task) to Redis."""

    def __init__(self, redis, key, queue_packets=PUBLISH_QUEUE_PACKETS):
        self.key = key
        self.channel = wire.audio_channel(key, wire.database_of(redis))
        self._redis = redis
        self._queue = collections.deque(maxlen=queue_packets)
        self._ready = asyncio.Event()
        self.sequence = 0
        self.dropped = 0
        self._failing = False
        self._task = Supervisor(f"publish:{key}", self._run)

    def push(self, packet):
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1
        self._queue.append(wire.pack_packet(self.key, self.sequence, packet.pts, packet.payload))
        self.sequence += 1
        self._ready.set()

    async def _run(self):
        while True:
            stop_if_cancelled()
            await self._ready.wait()
            self._ready.clear()
            while self._queue:
                stop_if_cancelled()  # stopped: not one packet more
                data = self._queue.popleft()
                try:
                    await self._redis.publish(self.channel, data)
                    self._failing = False
                except RedisError as error:
                    if not self._failing:  # once per outage, not 50 times a second
                        logger.warning("publishing %s failed (%s)", self.key, error)
                    self._failing = True

    def stop(self):
        self._task.stop()


class OwnedStream:
    """One stream the owner runs: its hub and its publisher."""

    def __init__(self, config, key, hub, publisher):
        self.config, self.key, self.hub, self.publisher = config, key, hub, publisher

    def stop(self):
        self.hub.unsubscribe(self.publisher)
        self.publisher.stop()


class MediaOwner:
    def __init__(self, redis_url, announce, capture_linger_seconds=3, name="owner", announce_clients=list):
        self._redis = aioredis.from_url(redis_url, socket_timeout=REDIS_TIMEOUT_SECONDS,
                                        socket_connect_timeout=REDIS_TIMEOUT_SECONDS, retry=Retry(NoBackoff(), 0))
        self._announce = announce  # announce(profile_id, state, message): to every listener of the profile
        self._announce_clients = announce_clients  # () -> the Redis clients announce uses: given back when idle
        self._wanted = self._redis.register_script(wire.WANTED)
        self.captures = AudioCaptureManager(capture_linger_seconds)
        self.name = name  # for the log
        self.token = f"{name}/{uuid.uuid4().hex}"  # what it holds the lock with: its own, whatever its name
        self.holding = False  # holds the lock and may run streams
        self.streams = {}  # stream key -> OwnedStream
        self._idle_spells = redispools.IdleSpells()

    async def run(self):
        """Wait for the lock, then serve demand until cancelled; if the lock is lost, stop and wait again."""
        lock = self._redis.lock(wire.OWNER_LOCK, timeout=LOCK_SECONDS)
        try:
            while True:
                stop_if_cancelled()
                try:
                    sent = time.monotonic()
                    if await lock.acquire(blocking=False, token=self.token):
                        logger.info("%s: media owner now (lock %s, token %s)", self.name, wire.OWNER_LOCK, self.token)
                        await self._serve(lock, sent)
                    else:
                        await self._release_if_idle()
                        await asyncio.sleep(POLL_SECONDS)
                except RedisError as error:
                    logger.warning("%s: cannot reach Redis (%s); retrying", self.name, error)
                    await asyncio.sleep(POLL_SECONDS)
        finally:
            self._stop_all()  # before the lock goes: never two owners publishing at once
            await self._release(lock)

    async def _release(self, lock):
        """On a clean stop, hand the lock over at once instead of letting it expire."""
        try:
            if await lock.owned():
                await lock.release()
        except (RedisError, LockError):
            pass

    async def _serve(self, lock, acquired_at):
        """Run the wanted streams while this process holds the lock (renewed by _keep_lock, which
        stops them itself when the lock is lost or may expire). A Redis hiccup changes nothing
        else: the streams play on."""
        self.holding = True
        keeping = asyncio.create_task(self._keep_lock(lock, acquired_at), name="owner-lock")
        minute_ends = stats_due = time.monotonic()
        minute_ends += 60
        failing = False
        try:
            while not keeping.done():
                stop_if_cancelled()
                if time.monotonic() >= minute_ends:
                    minute_ends += 60
                    frametiming.log_minute([stream.hub for stream in self.streams.values()])
                    release_free_memory()
                try:
                    await self._follow_demand()
                    await self._release_if_idle()
                    if time.monotonic() >= stats_due:
                        stats_due = time.monotonic() + STATS_SECONDS
                        await self._publish_stats()
                    failing = False
                except RedisError as error:
                    if not failing:
                        logger.warning("%s: Redis error (%s); streams play on", self.name, error)
                    failing = True
                await asyncio.wait([keeping], timeout=POLL_SECONDS)
            if keeping.exception() is not None:  # a bug: say so, and stop as if the lock were lost
                logger.error("%s: keeping the lock failed", self.name, exc_info=keeping.exception())
        finally:
            keeping.cancel()
            self._let_go()

    async def _keep_lock(self, lock, acquired_at):
        """Renew the lock every RENEW_SECONDS. Return, having stopped every stream, once another
        owner holds it, or once the last renewal that went through was sent STOP_AFTER_SECONDS ago."""
        deadline = acquired_at + STOP_AFTER_SECONDS
        renew_at = acquired_at + RENEW_SECONDS
        failing = False
        while True:
            await asyncio.sleep(max(0.0, min(renew_at, deadline) - time.monotonic()))
            stop_if_cancelled()
            sent = time.monotonic()
            if sent >= deadline:
                logger.warning("%s: the lock could not be renewed for %g s and may expire: stopping my streams",
                               self.name, STOP_AFTER_SECONDS)
                return self._let_go()
            renew_at = sent + RENEW_SECONDS
            try:
                async with asyncio.timeout(min(REDIS_TIMEOUT_SECONDS, deadline - sent)):
                    await lock.reacquire()  # raises LockNotOwnedError if another owner took it
            except LockNotOwnedError:
                logger.warning("%s: the lock is not mine any more (expired, or another owner holds it); "
                               "stopping my streams", self.name)
                return self._let_go()
            except (RedisError, TimeoutError) as error:
                if not failing:
                    logger.warning("%s: cannot renew the lock (%s); streams play on", self.name,
                                   error or type(error).__name__)
                failing = True
                continue
            if failing:
                logger.info("%s: the lock is renewed again", self.name)
            failing = False
            deadline = sent + STOP_AFTER_SECONDS

    async def _release_if_idle(self):
        """With no stream to run for a while, give back what the streams took: the memory (as a
        worker does, streams/ops/memory.py) and the Redis connections its publishers and its
        announcements opened and nothing uses now (streams/ops/redispools.py). Said in the log
        the first time in a spell of idleness, and whenever it closed any."""
        time_in_spell = self._idle_spells.due(not self.streams, time.monotonic())
        if time_in_spell:
            release_free_memory(collect_garbage=True)
            closed = await redispools.close_idle(self._redis, *self._announce_clients())
            if time_in_spell == 1 or closed:
                logger.info("%s: idle: memory given back, %d unused connection(s) to Redis closed", self.name, closed)

    def _let_go(self):
        """This owner may no longer run streams: stop them all, now."""
        self.holding = False
        self._stop_all()

    async def wanted(self):
        """Every stream some worker has listeners for: {stream key: its StreamConfig}, or None for
        a stream this owner already runs (its config is not read again). One sorted set, no scan."""
        members = await self._wanted(keys=[wire.WANTED_KEY])
        wanted = dict.fromkeys({wire.wanted_stream(member.decode()) for member in members})
        new = [key for key in wanted if key not in self.streams]
        values = await self._redis.mget([wire.config_key(key) for key in new]) if new else []
        for key, value in zip(new, values):
            try:
                if value is None:
                    raise ValueError("its config is gone")
                wanted[key] = wire.config_from_json(value)
            except ValueError as error:
                logger.warning("ignoring a request for stream %s (%s)", key, error)
                del wanted[key]
        return wanted

    async def _follow_demand(self):
        wanted = await self.wanted()
        if not self.holding:
            return  # the lock was lost meanwhile
        for key in list(self.streams):
            if key not in wanted:
                logger.info("%s: stopping %s (%s), no worker wants it", self.name, self.streams[key].config.slug, key)
                self.streams.pop(key).stop()
        for key, config in wanted.items():
            if key not in self.streams and config is not None:
                try:
                    self._start(key, config)
                except Exception:  # one bad request must not stop the owner and every other stream
                    logger.exception("%s: cannot start %s (%s)", self.name, config.slug, key)

    def _start(self, key, config):
        logger.info("%s: starting %s (%s)", self.name, config.slug, key)

        def announce(slug, state, message):  # a hub says its slug; the news is for the profile's listeners
            self._announce(config.profile_id, state, message)

        hub = BroadcastHub(config, PUBLISH_QUEUE_PACKETS, self._open_source, announce, on_idle=lambda hub: None)
        publisher = PacketPublisher(self._redis, key, config.frames_in(PUBLISH_QUEUE_PACKETS * FRAME_MS))
        try:
            hub.attach(publisher)  # starts the source and encoder: may fail (a device not there)
        except Exception:
            publisher.stop()  # tried again on the next poll: leave no publisher behind
            raise
        self.streams[key] = OwnedStream(config, key, hub, publisher)

    def _open_source(self, config, on_device_state):
        return sources.open_source(config, self.captures, on_device_state)

    async def _publish_stats(self):
        for key, stream in list(self.streams.items()):
            stats = {"slug": stream.config.slug, "codec": stream.config.codec, "channels": stream.config.channels,
                     "bitrate": stream.hub.bitrate, "late_frames": stream.hub.late_frames,
                     "packets": stream.publisher.sequence, "dropped": stream.publisher.dropped,
                     "frames": json.dumps(stream.hub.timing.summary())}
            await self._redis.hset(wire.STATS_PREFIX + key, mapping=stats)
            await self._redis.expire(wire.STATS_PREFIX + key, STATS_TTL_SECONDS)
        # The owner's whole picture at one moment (captures, alarms, restarts): what /metrics and
        # admin show of its streams.
        snapshot = livestats.take_owner([stream.hub for stream in self.streams.values()], self.captures)
        await self._redis.set(livestats.SNAPSHOT_PREFIX + livestats.OWNER, livestats.to_json(snapshot),
                              ex=livestats.SNAPSHOT_TTL_SECONDS)

    def _stop_all(self):
        for stream in self.streams.values():
            stream.stop()
        self.streams.clear()

    async def close(self):
        self._stop_all()
        await self.captures.close()
        await self._redis.aclose()
