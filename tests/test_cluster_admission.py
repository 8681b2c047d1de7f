"""Listener limits over every worker (streams/relay/admission.py) against the real Redis, in the
test run's own database (tests/rigs/redis_db.py).

Two ClusterAdmission objects with their own worker ids stand for two worker processes. Seats go
by the profile's primary key (HALL, FOYER); a rename with listeners on two real workers:
tests/test_limits_after_rename.py.
"""
import asyncio
import os

import pytest
import redis

from streams.ops.limits import Seat
from streams.relay import admission as admission_module
from streams.relay import wire
from streams.relay.admission import ClusterAdmission
from tests.helpers import counted_listeners, run
from tests.rigs.redis_db import REDIS_URL
from tests.waiting import until

HALL, FOYER = 1, 2  # two profiles' primary keys


@pytest.fixture
def clean_redis():
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()  # fails (does not skip) when Redis is missing
    yield client
    client.flushdb()
    client.close()


class Worker:
    def __init__(self, worker_id, redis_url=REDIS_URL):
        self.admission = ClusterAdmission(redis_url, worker_id)

    async def join(self, profile_id, address, stream_max=0, address_max=0):
        seat = Seat(profile_id, address)
        return seat, await self.admission.admit(seat, stream_max, address_max)


def test_a_stream_limit_counts_the_listeners_of_every_worker(clean_redis):
    async def scenario():
        first, second = Worker("w1"), Worker("w2")
        results = [await first.join(HALL, f"10.0.0.{i}", stream_max=3) for i in range(2)]
        results.append(await second.join(HALL, "10.0.0.9", stream_max=3))
        full = await second.join(HALL, "10.0.0.10", stream_max=3)
        other_stream = await second.join(FOYER, "10.0.0.10", stream_max=3)
        counted = counted_listeners(clean_redis, HALL)
        first.admission.left(results[0][0])  # a listener on the first worker leaves
        await until(lambda: counted_listeners(clean_redis, HALL) == 2, 5, "the leaver to be uncounted")
        after_leave = await second.join(HALL, "10.0.0.10", stream_max=3)
        await asyncio.gather(first.admission.close(), second.admission.close())
        return results, full, other_stream, counted, after_leave

    results, full, other_stream, counted, after_leave = run(scenario())
    assert [refusal for _, refusal in results] == [None, None, None]
    assert full[1] == "This stream is full (3 listeners). Try again later."
    assert other_stream[1] is None
    assert counted == 3
    assert after_leave[1] is None


def test_an_address_limit_counts_that_address_on_every_worker(clean_redis):
    async def scenario():
        first, second = Worker("w1"), Worker("w2")
        answers = [await first.join(HALL, "192.0.2.7", address_max=2),
                   await second.join(FOYER, "192.0.2.7", address_max=2),
                   await second.join(HALL, "192.0.2.7", address_max=2),
                   await first.join(HALL, "192.0.2.8", address_max=2)]
        await asyncio.gather(first.admission.close(), second.admission.close())
        return [refusal for _, refusal in answers]

    assert run(scenario()) == [None, None, "Too many listeners from your address (2 at most).", None]


def test_two_workers_admitting_at_once_never_pass_the_limit(clean_redis):
    async def scenario():
        workers = [Worker("w1"), Worker("w2")]
        joins = [workers[i % 2].join(HALL, f"10.1.0.{i}", stream_max=10) for i in range(40)]
        refusals = [refusal for _, refusal in await asyncio.gather(*joins)]
        await asyncio.gather(*(worker.admission.close() for worker in workers))
        return refusals

    refusals = run(scenario())
    assert refusals.count(None) == 10


def test_a_dead_workers_listeners_stop_counting_when_its_counts_expire(clean_redis, monkeypatch):
    monkeypatch.setattr(admission_module, "TTL_SECONDS", 1)

    async def scenario():
        doomed, survivor = Worker("w1"), Worker("w2")
        await doomed.join(HALL, "10.0.0.1", stream_max=1)
        full = await survivor.join(HALL, "10.0.0.2", stream_max=1)
        doomed.admission._task.stop()  # it stops renewing, as a killed process would
        await until(lambda: not clean_redis.exists(wire.LISTENERS_PREFIX + "w1"), 5, "the dead worker's counts to expire")
        again = await survivor.join(HALL, "10.0.0.2", stream_max=1)
        workers = clean_redis.smembers(wire.WORKERS_KEY)
        await survivor.admission.close()
        await doomed.admission._redis.aclose()
        return full[1], again[1], workers

    full, again, workers = run(scenario())
    assert full.startswith("This stream is full")
    assert again is None
    assert workers == {b"w2"}  # the dead worker was dropped from the list


def test_without_redis_the_limits_apply_to_this_worker_alone():
    async def scenario():
        worker = Worker("lonely", redis_url="redis://127.0.0.1:1/0")  # nothing listens there
        started = asyncio.get_running_loop().time()
        answers = [await worker.join(HALL, f"10.0.0.{i}", stream_max=2) for i in range(3)]
        seconds = asyncio.get_running_loop().time() - started
        await worker.admission.close()
        return [refusal for _, refusal in answers], seconds

    refusals, seconds = run(scenario())
    assert refusals == [None, None, "This stream is full (2 listeners). Try again later."]
    assert seconds < 3 * (admission_module.REDIS_TIMEOUT_SECONDS + 0.5)  # no retries with backoff


def test_counts_lost_in_redis_are_written_again_so_the_limit_still_holds(clean_redis):
    async def scenario():
        first, second = Worker("w1"), Worker("w2")
        await first.join(HALL, "10.0.0.1", stream_max=2)
        await first.join(HALL, "10.0.0.2", stream_max=2)
        clean_redis.flushdb()  # Redis restarted empty
        await until(lambda: counted_listeners(clean_redis, HALL) == 2, 5, "the first worker's counts written again")
        refused = await second.join(HALL, "10.0.0.3", stream_max=2)
        await asyncio.gather(first.admission.close(), second.admission.close())
        return refused[1]

    assert run(scenario()) == "This stream is full (2 listeners). Try again later."


def test_open_sockets_are_counted_per_address_over_every_worker_apart_from_listeners(clean_redis):
    """The socket cap (RTC_MAX_SOCKETS_PER_ADDRESS) is the same admission under other names."""
    async def scenario():
        sockets = [ClusterAdmission(REDIS_URL, worker, names=wire.SOCKET_COUNTS) for worker in ("w1", "w2")]
        listeners = Worker("w1")
        await listeners.join(HALL, "192.0.2.7", address_max=1)  # a listener does not take a socket place
        seats = [Seat("*", "192.0.2.7") for _ in range(4)]
        answers = [await sockets[i % 2].admit(seat, 0, 3) for i, seat in enumerate(seats)]
        sockets[0].left(seats[0])
        await until(lambda: sum(int(clean_redis.hget(key, "192.0.2.7") or 0)
                                for key in clean_redis.scan_iter(wire.SOCKET_COUNTS.addresses + "*")) == 2,
                    5, "the closed socket to be uncounted")
        again = await sockets[1].admit(Seat("*", "192.0.2.7"), 0, 3)
        await asyncio.gather(*(admission.close() for admission in sockets), listeners.admission.close())
        return answers, again

    answers, again = run(scenario())
    assert answers[:3] == [None, None, None] and answers[3].startswith("Too many listeners from your address (3")
    assert again is None


def test_a_listener_who_left_while_the_counts_were_written_again_is_uncounted_once(clean_redis):
    """The counts are written again whole from the worker's own listeners (after a Redis error or
    restart). A listener who left just before, whose uncount waited for the counts' lock behind
    that rewrite, is already left out of it: uncounting it again would free a place twice."""
    async def scenario():
        worker = Worker("w1")
        leaving, _ = await worker.join(HALL, "10.0.0.1")
        await worker.join(HALL, "10.0.0.2")
        async with worker.admission._lock:  # the counts are busy (an admit waiting on Redis, say)
            worker.admission._dirty = True  # an earlier Redis error: they are to be written again whole
            worker.admission.left(leaving)  # its uncount waits for the lock...
            await worker.admission._renew_once()  # ...behind the rewrite, which already leaves it out
        await asyncio.gather(*worker.admission._pending)  # the uncount has run
        counted = counted_listeners(clean_redis, HALL)
        await worker.admission.close()
        return counted

    assert run(scenario()) == 1
