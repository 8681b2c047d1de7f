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
import logging
import time

import redis.asyncio as aioredis
from redis.exceptions import LockError, RedisError

from ..audio import sources
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
        self._task = asyncio.create_task(self._run(), name=f"publish:{key}")

    def push(self, packet):
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1
        self._queue.append(wire.pack_packet(self.key, self.sequence, packet.pts, bytes(packet)))
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
                except RedisError as error:
                    logger.warning("publishing %s failed (%s)", self.key, error)

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
        self._redis = aioredis.from_url(redis_url)
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
                    if not await lock.acquire(blocking=False, token=self.name):
                        await asyncio.sleep(POLL_SECONDS)
                        continue
                    logger.info("%s: media owner now (lock %s)", self.name, wire.OWNER_LOCK)
                    await self._serve(lock)
                except (RedisError, LockError) as error:
                    logger.warning("%s: lost Redis or the lock (%s); stopping streams and retrying", self.name, error)
                    self._stop_all()
                    await asyncio.sleep(POLL_SECONDS)
        finally:
            await self._release(lock)

    async def _release(self, lock):
        """On a clean stop, hand the lock over at once instead of letting it expire."""
        try:
            if await lock.owned():
                await lock.release()
        except (RedisError, LockError):
            pass

    async def _serve(self, lock):
        renew_at = time.monotonic() + 1
        while True:
            await self._follow_demand()
            if time.monotonic() >= renew_at:
                await lock.reacquire()  # raises LockNotOwnedError if another owner took it
                await self._publish_stats()
                renew_at += 1
            await asyncio.sleep(POLL_SECONDS)

    async def wanted(self):
        """{stream key: StreamConfig} of every stream some worker has listeners for."""
        wanted = {}
        async for name in self._redis.scan_iter(match=wire.WANT_PREFIX + "*", count=500):
            key = wire.wanted_stream(name.decode())
            if key not in wanted and key not in self.streams:
                value = await self._redis.get(name)
                if value is None:
                    continue
                try:
                    wanted[key] = wire.config_from_json(value)
                except (ValueError, TypeError) as error:
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
                self._start(key, config)

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
                     "bitrate": stream.hub.bitrate,
                     "packets": stream.publisher.sequence, "dropped": stream.publisher.dropped}
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
