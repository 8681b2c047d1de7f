"""A daphne worker's side of multi-process mode: relay a stream from the media owner.

A RelayHub stands where a BroadcastHub stands in single-process mode (HubRegistry makes
one per StreamConfig) and looks the same to peers and /status.json, but it opens no
source and encodes nothing. While it has listeners it
- keeps this worker's demand for the stream alive in Redis (its member of `rtc:wanted`, see wire.py),
- subscribes to the stream's packets (`rtc:audio:<db>:<key>`), counts sequence gaps,
- re-stamps each packet on its own continuous clock (wire.restamp) and pushes the same
  EncodedPacket to every listener, exactly as a BroadcastHub does,
- says "source-lost" to its listeners when packets stop for a second (owner restarting,
  Redis gone) and "playing" when they come back; the listeners stay connected.
"""
import asyncio
import logging
import secrets
import time

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ..audio.broadcast import Hub
from ..audio.encoders import rtp_clock_rate
from ..ops.supervision import Supervisor
from ..webrtc.fanout import EncodedPacket
from . import wire

logger = logging.getLogger(__name__)

WANT_TTL_SECONDS = 5
WANT_RENEW_SECONDS = 1.0
SILENCE_SECONDS = 1.0  # no packet for this long: tell the listeners the source is gone
SOURCE_LOST_MESSAGE = "The audio source is restarting; sound comes back by itself."


class RelayHub(Hub):
    mode = "relay"  # /status.json: packets come from the media owner

    def __init__(self, config, max_packets, redis_url, worker_id, announce, on_idle):
        super().__init__(config, max_packets, on_idle)
        self.key = wire.stream_key(config)
        self._redis_url = redis_url
        self._announce = announce
        self._tasks = []
        self._redis = None
        self._want = wire.want_member(self.key, worker_id, secrets.token_hex(3))
        self._withdrawing = set()
        self.clock_rate = rtp_clock_rate(config.codec)
        self.frame_samples = self.clock_rate * config.frame_ms // 1000
        self.late_frames = 0  # (the owner paces the stream; a relay makes nothing late itself)
        # (owner sequence, owner pts, our pts, monotonic time) of the last packet relayed: kept
        # across a restart of the relay task, so that the listeners' timeline never goes back.
        self._last = None

    def _start(self):
        self._redis = aioredis.from_url(self._redis_url, socket_connect_timeout=5)
        self._tasks = [
            Supervisor(f"want:{self.config.slug}", self._keep_wanting),
            Supervisor(f"relay:{self.config.slug}", self._relay),
        ]

    @property
    def restarts(self):
        """Times the relay's tasks failed and were restarted (streams/ops/supervision.py)."""
        return sum(task.restarts for task in self._tasks)

    def _stop_work(self):
        for task in self._tasks:
            task.stop()
        self._tasks = []
        redis, self._redis = self._redis, None
        task = asyncio.get_running_loop().create_task(self._withdraw(redis))
        self._withdrawing.add(task)
        task.add_done_callback(self._withdrawing.discard)

    async def _withdraw(self, redis):
        try:
            await redis.zrem(wire.WANTED_KEY, self._want)
        except RedisError:
            pass  # the want lapses by itself
        finally:
            await redis.aclose()

    async def _keep_wanting(self):
        want = self._redis.register_script(wire.WANT)
        keys, value = [wire.WANTED_KEY, wire.config_key(self.key)], wire.config_to_json(self.config)
        while True:
            try:
                await want(keys=keys, args=[self._want, value, WANT_TTL_SECONDS])
            except RedisError as error:
                logger.warning("%s: cannot reach Redis to ask for the stream (%s); retrying", self.config.slug, error)
            await asyncio.sleep(WANT_RENEW_SECONDS)

    async def _relay(self):
        while True:
            try:
                async with self._redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(wire.audio_channel(self.key, wire.database_of(self._redis)))
                    heard_at = time.monotonic()
                    while True:
                        # None also comes for the (ignored) subscribe confirmation: go by the clock.
                        message = await pubsub.get_message(timeout=SILENCE_SECONDS / 4)
                        if message is not None:
                            self._last = self._forward(message["data"], self._last)
                            heard_at = time.monotonic()
                        elif time.monotonic() - heard_at > SILENCE_SECONDS:
                            self._set_status("source-lost", SOURCE_LOST_MESSAGE)
            except RedisError as error:
                self._set_status("source-lost", SOURCE_LOST_MESSAGE)
                logger.warning("%s: lost Redis (%s); resubscribing", self.config.slug, error)
                await asyncio.sleep(0.5)

    def _forward(self, data, last):
        try:
            key, sequence, remote_pts, payload = wire.unpack_packet(data)
        except wire.BadPacket as error:
            logger.warning("%s: dropped a malformed packet (%s)", self.config.slug, error)
            return last
        if key != self.key:
            return last
        now = time.monotonic()
        if last is None:
            pts, marker = wire.restamp(None, None, remote_pts, 0, self.frame_samples)
        else:
            last_sequence, last_remote, last_pts, last_time = last
            gap = wire.sequence_gap(last_sequence, sequence)
            if gap:
                self.packets_missed += gap
            elapsed = round((now - last_time) * self.clock_rate)
            # Marked after a gap: DTX, a lost packet, or the owner's timeline jumped.
            pts, marker = wire.restamp(last_pts, last_remote, remote_pts, elapsed, self.frame_samples)
        self._set_status("playing", "")
        self._push(EncodedPacket(payload, pts, marker), len(payload))
        return sequence, remote_pts, pts, now

    def _set_status(self, state, message):
        if (state, message) != self.status:
            self.status = (state, message)
            logger.info("%s: %s %s", self.config.slug, state, message)
            self._announce(self.config.slug, state, message, self.key)
