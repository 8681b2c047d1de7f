"""The media owner: the one process that captures and encodes, for every worker.

It holds a Redis lock (`rtc:owner`, renewed every second, a few seconds' TTL), so a second
owner started by mistake, or by a supervisor restarting it early, waits as a standby and
takes over only when the first is gone. While it holds the lock it runs exactly the
streams that some worker wants (wire.WANT_PREFIX keys), each with a BroadcastHub and its
device capture, as in single-process mode; the hub's one subscriber is a PacketPublisher
that puts every encoded packet on the stream's pub/sub channel.
"""
import asyncio
import collections
import json
import logging
import time

import redis.asyncio as aioredis
from redis.exceptions import LockError, LockNotOwnedError, RedisError

from ..audio import frametiming, sources
from ..audio.broadcast import BroadcastHub
from ..audio.capture import AudioCaptureManager
from . import wire

logger = logging.getLogger(__name__)

LOCK_SECONDS = 3
POLL_SECONDS = 0.25  # how often demand is read: a new stream starts within this
PUBLISH_QUEUE_PACKETS = 50  # 1 s: Redis slower than that loses the oldest packets
STATS_TTL_SECONDS = 5


class PacketPublisher:
    """A hub subscriber that publishes each packet (in order, from one task) to Redis."""

    def __init__(self, redis, key):
        self.key = key
        self.channel = wire.audio_channel(key)
        self._redis = redis
        self._queue = collections.deque(maxlen=PUBLISH_QUEUE_PACKETS)
        self._ready = asyncio.Event()
        self.sequence = 0
        self.dropped = 0
        self._failing = False
        self._task = asyncio.create_task(self._run(), name=f"publish:{key}")

    def push(self, packet):
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1
        self._queue.append(wire.pack_packet(self.key, self.sequence, packet.pts, packet.payload))
        self.sequence += 1
        self._ready.set()

    async def _run(self):
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._queue:
                data = self._queue.popleft()
                try:
                    await self._redis.publish(self.channel, data)
                    self._failing = False
                except RedisError as error:
                    if not self._failing:  # once per outage, not 50 times a second
                        logger.warning("publishing %s failed (%s)", self.key, error)
                    self._failing = True

    def stop(self):
        self._task.cancel()


class OwnedStream:
    """One stream the owner runs: its hub and its publisher."""

    def __init__(self, config, key, hub, publisher):
        self.config, self.key, self.hub, self.publisher = config, key, hub, publisher

    def stop(self):
        self.hub.unsubscribe(self.publisher)
        self.publisher.stop()


class MediaOwner:
    def __init__(self, redis_url, announce, capture_linger_seconds=3, name="owner"):
        self._redis = aioredis.from_url(redis_url, socket_timeout=LOCK_SECONDS, socket_connect_timeout=LOCK_SECONDS)
        self._announce = announce
        self.captures = AudioCaptureManager(capture_linger_seconds)
        self.name = name
        self.streams = {}  # stream key -> OwnedStream

    async def run(self):
        """Wait for the lock, then serve demand until cancelled; if the lock is lost, stop and wait again."""
        lock = self._redis.lock(wire.OWNER_LOCK, timeout=LOCK_SECONDS)
        try:
            while True:
                try:
                    if await lock.acquire(blocking=False, token=self.name):
                        logger.info("%s: media owner now (lock %s)", self.name, wire.OWNER_LOCK)
                        await self._serve(lock)
                    else:
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

    async def _serve(self, lock):
        """Run the wanted streams while this process holds the lock. A Redis hiccup shorter than
        the lock's TTL changes nothing (the streams play on); losing the lock stops them."""
        renewed = time.monotonic()
        minute_ends = renewed + 60
        while True:
            if time.monotonic() >= minute_ends:
                minute_ends += 60
                frametiming.log_minute([stream.hub for stream in self.streams.values()])
            try:
                await self._follow_demand()
                if time.monotonic() - renewed >= 1:
                    await lock.reacquire()  # raises LockNotOwnedError if another owner took it
                    renewed = time.monotonic()
                    await self._publish_stats()
            except LockNotOwnedError:
                logger.warning("%s: another owner holds the lock now; stopping my streams", self.name)
                self._stop_all()
                return
            except RedisError as error:
                if time.monotonic() - renewed > LOCK_SECONDS:
                    logger.warning("%s: Redis gone for over %d s (%s); the lock has expired, stopping",
                                   self.name, LOCK_SECONDS, error)
                    self._stop_all()
                    return
                logger.warning("%s: Redis error (%s); streams play on", self.name, error)
            await asyncio.sleep(POLL_SECONDS)

    async def wanted(self):
        """Every stream some worker has listeners for: {stream key: its StreamConfig}, or None for
        a stream this owner already runs (its config is not read again)."""
        wanted = {}
        async for name in self._redis.scan_iter(match=wire.WANT_PREFIX + "*", count=500):
            key = wire.wanted_stream(name.decode())
            if key not in wanted and key not in self.streams:
                value = await self._redis.get(name)
                if value is None:
                    continue
                try:
                    wanted[key] = wire.config_from_json(value)
                except ValueError as error:
                    logger.warning("ignoring a malformed stream request %s (%s)", name, error)
                    continue
            else:
                wanted.setdefault(key, None)
        return wanted

    async def _follow_demand(self):
        wanted = await self.wanted()
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
        hub = BroadcastHub(config, PUBLISH_QUEUE_PACKETS, self._open_source, self._announce, on_idle=lambda hub: None)
        publisher = PacketPublisher(self._redis, key)
        hub.attach(publisher)
        self.streams[key] = OwnedStream(config, key, hub, publisher)

    def _open_source(self, config, on_device_state):
        return sources.open_source(config, self.captures, on_device_state)

    async def _publish_stats(self):
        for key, stream in self.streams.items():
            stats = {"slug": stream.config.slug, "codec": stream.config.codec, "channels": stream.config.channels,
                     "bitrate": stream.hub.bitrate, "late_frames": stream.hub.late_frames,
                     "packets": stream.publisher.sequence, "dropped": stream.publisher.dropped,
                     "frames": json.dumps(stream.hub.timing.summary())}
            await self._redis.hset(wire.STATS_PREFIX + key, mapping=stats)
            await self._redis.expire(wire.STATS_PREFIX + key, STATS_TTL_SECONDS)

    def _stop_all(self):
        for stream in self.streams.values():
            stream.stop()
        self.streams.clear()

    async def close(self):
        self._stop_all()
        await self.captures.close()
        await self._redis.aclose()
