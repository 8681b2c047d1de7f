"""Listener limits over every worker: counts per stream and per client address, kept in Redis.

Each worker counts its own listeners in `rtc:listeners:<worker>` ({profile pk: n}, by the
profile's primary key: a slug may be renamed while its listeners stay; admin and `manage.py
stats` add these up) and `rtc:addresses:<worker>` ({address: n}), with a few
seconds' TTL that it renews every second, so a worker that dies stops counting; it lists
itself in `rtc:workers`. Admitting a listener is one Lua script: it adds up every live
worker's counts and counts the listener here only if both are under their limits, so two
workers admitting at once cannot both take the last place. A listener that leaves is
uncounted by another script. The counts only change by these steps, one at a time per worker
(a lock); when Redis failed or lost them (a restart, an expiry) the worker writes them again
from its own admitted peers. A leaver whose uncount waited behind such a rewrite is not
uncounted again: the rewrite already left it out. One Redis server, not Redis Cluster: the
script reads the keys of every worker.
"""
import asyncio
import logging

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from ..ops.limits import listener_refusal, local_refusal
from ..ops.supervision import Supervisor
from . import wire

logger = logging.getLogger(__name__)

TTL_SECONDS = 5
RENEW_SECONDS = 1.0
REDIS_TIMEOUT_SECONDS = 1.0  # a joining listener waits at most this long for Redis, then local limits apply

# KEYS: workers set, this worker's listeners, this worker's addresses.
# ARGV: listeners prefix, addresses prefix, this worker, profile pk, address, stream max, address max, TTL.
# The rule is listener_refusal's: a max of 0 means no limit.
ADMIT = """
local stream_total, address_total = 0, 0
for _, worker in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local listeners = ARGV[1] .. worker
  if redis.call('EXISTS', listeners) == 1 then
    stream_total = stream_total + tonumber(redis.call('HGET', listeners, ARGV[4]) or '0')
    address_total = address_total + tonumber(redis.call('HGET', ARGV[2] .. worker, ARGV[5]) or '0')
  elseif worker ~= ARGV[3] then
    redis.call('SREM', KEYS[1], worker)
  end
end
local stream_max, address_max = tonumber(ARGV[6]), tonumber(ARGV[7])
if (stream_max > 0 and stream_total >= stream_max) or (address_max > 0 and address_total >= address_max) then
  return {0, stream_total, address_total}
end
redis.call('HINCRBY', KEYS[2], ARGV[4], 1)
redis.call('HINCRBY', KEYS[3], ARGV[5], 1)
redis.call('EXPIRE', KEYS[2], ARGV[8])
redis.call('EXPIRE', KEYS[3], ARGV[8])
redis.call('SADD', KEYS[1], ARGV[3])
return {1, stream_total, address_total}
"""

# KEYS: this worker's listeners, this worker's addresses. ARGV: profile pk, address.
RELEASE = """
if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
if redis.call('HINCRBY', KEYS[2], ARGV[2], -1) <= 0 then redis.call('HDEL', KEYS[2], ARGV[2]) end
"""


class ClusterAdmission:
    """Listener limits over every worker; with `names=wire.SOCKET_COUNTS`, the same for open sockets."""

    def __init__(self, redis_url, worker_id, names=wire.LISTENER_COUNTS):
        self._redis = aioredis.from_url(redis_url, socket_timeout=REDIS_TIMEOUT_SECONDS,
                                        socket_connect_timeout=REDIS_TIMEOUT_SECONDS, retry=Retry(NoBackoff(), 0))
        self._worker_id = worker_id
        self._names = names
        self._listeners_key = names.streams + worker_id
        self._addresses_key = names.addresses + worker_id
        self._counted = set()  # the seats of this worker's admitted listeners
        self._dirty = False  # the Redis counts may be wrong: write them again whole
        self._rewrites = 0  # how many times the counts were written again whole (from _counted)
        self._lock = asyncio.Lock()  # one change of the counts at a time
        self._closed = False
        self._admit = self._redis.register_script(ADMIT)
        self._release = self._redis.register_script(RELEASE)
        self._pending = set()
        self._task = Supervisor("listener-counts", self._renew)

    async def admit(self, seat, stream_max, address_max):
        """Why `seat`'s listener may not join (a sentence), or None once it is counted over
        every worker: then it counts until left(seat)."""
        async with self._lock:
            try:
                admitted, stream_total, address_total = await self._admit(
                    keys=[self._names.workers, self._listeners_key, self._addresses_key],
                    args=[self._names.streams, self._names.addresses, self._worker_id, seat.profile_id,
                          seat.address, stream_max or 0, address_max or 0, TTL_SECONDS],
                )
            except RedisError as error:
                logger.warning("Redis does not answer (%s): applying listener limits to this worker only", error)
                self._dirty = True
                refusal = local_refusal(seat, self._counted, stream_max, address_max)
                if refusal is None:
                    self._counted.add(seat)  # Redis learns of it when it answers again
                return refusal
            if not admitted:
                return listener_refusal(stream_listeners=stream_total, stream_max=stream_max,
                                        address_listeners=address_total, address_max=address_max)
            self._counted.add(seat)
            return None

    def left(self, seat):
        """`seat`'s listener is gone: uncount it (without waiting for Redis)."""
        if seat not in self._counted or self._closed:
            return
        self._counted.discard(seat)
        task = asyncio.get_running_loop().create_task(self._uncount(seat.profile_id, seat.address, self._rewrites))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    @property
    def seats_held(self):
        """This worker's admitted listeners."""
        return len(self._counted)

    async def _uncount(self, profile_id, address, rewrites):
        """Uncount a listener that left when `rewrites` rewrites had been made."""
        async with self._lock:
            if self._dirty or self._rewrites != rewrites:
                return  # the counts will be, or were since it left, written again whole without it
            try:
                await self._release(keys=[self._listeners_key, self._addresses_key], args=[profile_id, address])
            except RedisError as error:
                logger.warning("cannot uncount a listener in Redis (%s); recounting when it answers", error)
                self._dirty = True

    async def _renew(self):
        while True:
            if asyncio.current_task().cancelling():  # a cancel redis-py swallowed (owner.stop_if_cancelled)
                raise asyncio.CancelledError
            async with self._lock:
                await self._renew_once()
            await asyncio.sleep(RENEW_SECONDS)

    async def _renew_once(self):
        rewrite, self._dirty = self._dirty, False
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                if rewrite:
                    self._rewrite(pipe)
                if self._counted:
                    pipe.sadd(self._names.workers, self._worker_id)
                pipe.expire(self._listeners_key, TTL_SECONDS)
                pipe.expire(self._addresses_key, TTL_SECONDS)
                replies = await pipe.execute()
            if self._counted and not all(replies[-2:]):
                logger.warning("this worker's listener counts were gone from Redis (restarted?): writing them again")
                self._dirty = True
        except RedisError as error:
            logger.warning("cannot renew listener counts in Redis (%s)", error)
            self._dirty = True

    def _rewrite(self, pipe):
        self._rewrites += 1  # from here on, the counts written are those of _counted now
        streams, addresses = {}, {}
        for seat in self._counted:
            streams[seat.profile_id] = streams.get(seat.profile_id, 0) + 1
            addresses[seat.address] = addresses.get(seat.address, 0) + 1
        pipe.delete(self._listeners_key, self._addresses_key)
        if streams:
            pipe.hset(self._listeners_key, mapping=streams)
            pipe.hset(self._addresses_key, mapping=addresses)

    async def close(self):
        self._closed = True
        self._task.stop()
        await asyncio.gather(self._task.task, *self._pending, return_exceptions=True)
        try:
            await self._redis.delete(self._listeners_key, self._addresses_key)
            await self._redis.srem(self._names.workers, self._worker_id)
        except RedisError:
            pass
        await self._redis.aclose()
