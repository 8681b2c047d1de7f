"""Listener limits over every worker (streams/relay/admission.py) against the real Redis, database 11.

Two ClusterAdmission objects with their own worker ids stand for two worker processes; the
peers are plain records with a slug and an address, as the limits only read those.
"""
import asyncio
from dataclasses import dataclass

import pytest
import redis

from streams.relay import admission as admission_module
from streams.relay import wire
from streams.relay.admission import ClusterAdmission
from streams.runtime import PeerSet
from tests.helpers import run
from tests.waiting import until

REDIS_URL = "redis://127.0.0.1:6379/11"


@dataclass(eq=False)
class Peer:
    slug: str
    address: str


@pytest.fixture
def clean_redis():
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()  # fails (does not skip) when Redis is missing
    yield client
    client.flushdb()
    client.close()


class Worker:
    def __init__(self, worker_id):
        self.peers = PeerSet(on_leave=lambda peer: self.admission.left(peer))
        self.admission = ClusterAdmission(REDIS_URL, worker_id, self.peers)

    async def join(self, slug, address, stream_max=0, address_max=0):
        """Like the consumer: the peer exists, then asks to be admitted; refused, it leaves."""
        peer = Peer(slug, address)
        self.peers.add(peer)
        refusal = await self.admission.admit(peer, stream_max, address_max)
        if refusal:
            self.peers.discard(peer)
        return peer, refusal


def listener_counts(client, slug):
    return sum(int(client.hget(key, slug) or 0) for key in client.scan_iter(wire.LISTENERS_PREFIX + "*"))


def test_a_stream_limit_counts_the_listeners_of_every_worker(clean_redis):
    async def scenario():
        first, second = Worker("w1"), Worker("w2")
        results = [await first.join("hall", f"10.0.0.{i}", stream_max=3) for i in range(2)]
        results.append(await second.join("hall", "10.0.0.9", stream_max=3))
        full = await second.join("hall", "10.0.0.10", stream_max=3)
        other_stream = await second.join("foyer", "10.0.0.10", stream_max=3)
        counted = listener_counts(clean_redis, "hall")
        first.peers.discard(results[0][0])  # a listener on the first worker leaves
        await until(lambda: listener_counts(clean_redis, "hall") == 2, 5, "the leaver to be uncounted")
        after_leave = await second.join("hall", "10.0.0.10", stream_max=3)
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
        answers = [await first.join("hall", "192.0.2.7", address_max=2),
                   await second.join("foyer", "192.0.2.7", address_max=2),
                   await second.join("hall", "192.0.2.7", address_max=2),
                   await first.join("hall", "192.0.2.8", address_max=2)]
        await asyncio.gather(first.admission.close(), second.admission.close())
        return [refusal for _, refusal in answers]

    assert run(scenario()) == [None, None, "Too many listeners from your address (2 at most).", None]


def test_two_workers_admitting_at_once_never_pass_the_limit(clean_redis):
    async def scenario():
        workers = [Worker("w1"), Worker("w2")]
        joins = [workers[i % 2].join("hall", f"10.1.0.{i}", stream_max=10) for i in range(40)]
        refusals = [refusal for _, refusal in await asyncio.gather(*joins)]
        await asyncio.gather(*(worker.admission.close() for worker in workers))
        return refusals

    refusals = run(scenario())
    assert refusals.count(None) == 10


def test_a_dead_workers_listeners_stop_counting_when_its_counts_expire(clean_redis, monkeypatch):
    monkeypatch.setattr(admission_module, "TTL_SECONDS", 1)

    async def scenario():
        doomed, survivor = Worker("w1"), Worker("w2")
        await doomed.join("hall", "10.0.0.1", stream_max=1)
        full = await survivor.join("hall", "10.0.0.2", stream_max=1)
        doomed.admission._task.cancel()  # it stops renewing, as a killed process would
        await until(lambda: not clean_redis.exists(wire.LISTENERS_PREFIX + "w1"), 5, "the dead worker's counts to expire")
        again = await survivor.join("hall", "10.0.0.2", stream_max=1)
        workers = clean_redis.smembers(wire.WORKERS_KEY)
        await survivor.admission.close()
        return full[1], again[1], workers

    full, again, workers = run(scenario())
    assert full.startswith("This stream is full")
    assert again is None
    assert workers == {b"w2"}  # the dead worker was dropped from the list


def test_without_redis_the_limits_apply_to_this_worker_alone():
    async def scenario():
        worker = Worker.__new__(Worker)
        worker.peers = PeerSet(on_leave=lambda peer: worker.admission.left(peer))
        worker.admission = ClusterAdmission("redis://127.0.0.1:1/0", "lonely", worker.peers)  # nothing listens
        answers = [await worker.join("hall", f"10.0.0.{i}", stream_max=2) for i in range(3)]
        await worker.admission.close()
        return [refusal for _, refusal in answers]

    assert run(scenario()) == [None, None, "This stream is full (2 listeners). Try again later."]
