"""The media owner's lock and its demand (streams/relay/owner.py), against a redis-server of this
module's own (tests/rigs/private_redis.py: these tests take the owner lock and cut owners off,
which the shared Redis must not see). Owners and a worker's RelayHub run in the test's process;
an owner is cut off from Redis by a TCP forwarder that stops carrying bytes (tests/rigs/tcp_proxy.py)."""
import asyncio

import pytest
import redis

from streams.audio.config import StreamConfig
from streams.relay import owner as owner_module
from streams.relay import wire
from streams.relay.owner import MediaOwner
from streams.relay.worker import RelayHub
from tests.helpers import run
from tests.rigs.private_redis import PrivateRedis
from tests.rigs.tcp_proxy import TcpProxy
from tests.waiting import until

CONFIG = StreamConfig(slug="locked", source="sine", channels=1, codec="opus")
SAME_NAME = "rtc-caster:1"  # what `host:pid` gives two containers whose owner is PID 1 on one host name


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    server = PrivateRedis(tmp_path_factory.mktemp("owner-redis")).start()
    yield server
    server.stop()


@pytest.fixture
def client(redis_server):
    client = redis.Redis.from_url(redis_server.url())
    client.flushall()
    yield client
    client.close()


def nothing_to_say(*args):
    pass


class Rig:
    """A worker that wants CONFIG, and the owners of a test, all stopped at its end."""

    def __init__(self, redis_url):
        self.redis_url = redis_url
        self.hub = RelayHub(CONFIG, 50, redis_url, "worker", nothing_to_say, on_idle=lambda hub: None)
        self.reader = self.hub.subscribe_reader()  # a listener: the worker wants the stream from now on
        self.runs = {}
        self.proxies = []

    async def owner(self, name, through_proxy=False):
        url = self.redis_url
        if through_proxy:
            port = int(self.redis_url.rsplit(":", 1)[1].split("/")[0])
            self.proxies.append(await TcpProxy(port).start())
            url = self.proxies[-1].url()
        owner = MediaOwner(url, nothing_to_say, capture_linger_seconds=0, name=name)
        self.runs[owner] = asyncio.create_task(owner.run())
        return owner

    async def stop(self, owner):
        task = self.runs.pop(owner)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await owner.close()

    async def close(self):
        for owner in list(self.runs):
            await self.stop(owner)
        self.reader.stop()
        for proxy in self.proxies:
            await proxy.close()


def test_an_owner_cut_off_from_redis_stops_its_streams_before_a_standby_can_take_the_lock(redis_server, client):
    """Its Redis timeout is well inside the lock's TTL: it knows that it may lose the lock while
    it still holds it, and stops first."""
    async def scenario():
        rig = Rig(redis_server.url())
        try:
            first = await rig.owner("first", through_proxy=True)
            await until(lambda: first.streams, 10, "the first owner to run the wanted stream")
            second = await rig.owner("second")
            rig.proxies[0].cut()
            await until(lambda: second.streams, 20, "the standby to take over")
            first_still_running = bool(first.streams)
            return first_still_running, client.get(wire.OWNER_LOCK)
        finally:
            await rig.close()

    first_still_running, holder = run(scenario())
    assert not first_still_running, "two owners ran the stream at once"
    assert holder.startswith(b"second")


def test_the_lock_lives_well_beyond_a_redis_timeout_and_is_renewed_well_before_it_expires():
    assert owner_module.LOCK_SECONDS >= 3 * owner_module.REDIS_TIMEOUT_SECONDS
    assert owner_module.RENEW_SECONDS + owner_module.REDIS_TIMEOUT_SECONDS < owner_module.STOP_AFTER_SECONDS
    assert owner_module.STOP_AFTER_SECONDS + owner_module.REDIS_TIMEOUT_SECONDS <= owner_module.LOCK_SECONDS


def test_an_owner_that_stops_leaves_alone_the_lock_of_another_owner_of_the_same_name(redis_server, client):
    """Two owners named alike (PID 1 in two containers) hold the lock with tokens of their own:
    the one that lost the lock and then stops cleanly must not release the other's."""
    async def scenario():
        rig = Rig(redis_server.url())
        try:
            first = await rig.owner(SAME_NAME, through_proxy=True)
            await until(lambda: first.streams, 10, "the first owner to run the wanted stream")
            second = await rig.owner(SAME_NAME)
            rig.proxies[0].cut()  # the first loses the lock without noticing at once
            await until(lambda: second.streams, 20, "the second owner to take over")
            rig.proxies[0].mend()
            await rig.stop(first)  # a clean stop: it releases the lock if it holds it
            return client.get(wire.OWNER_LOCK), bool(second.streams)
        finally:
            await rig.close()

    holder, second_runs = run(scenario())
    assert holder is not None, "the stopping owner released the lock of the one that runs"
    assert holder.startswith(SAME_NAME.encode()) and second_runs


def test_the_owner_reads_demand_without_scanning_the_keyspace(redis_server, client):
    """The keyspace is shared with channels_redis (every channel and group is a key): demand is
    one sorted set, read four times a second, never a SCAN."""
    client.mset({f"asgi:unrelated:{i}": "x" for i in range(1000)})

    async def scenario():
        rig = Rig(redis_server.url())
        try:
            client.config_resetstat()
            owner = await rig.owner("owner")
            await until(lambda: owner.streams, 10, "the owner to run the wanted stream")
            polls = owner_module.POLL_SECONDS
            started = asyncio.get_running_loop().time()
            await until(lambda: asyncio.get_running_loop().time() - started > 4 * polls, 5, "four polls of demand")
            return client.info("commandstats")
        finally:
            await rig.close()

    stats = run(scenario())
    assert "cmdstat_scan" not in stats and "cmdstat_keys" not in stats


def test_a_want_that_is_not_renewed_lapses_and_the_owner_stops_the_stream(redis_server, client, monkeypatch):
    """A worker that dies (stops renewing, withdraws nothing) stops wanting within its TTL."""
    from streams.relay import worker as worker_module

    monkeypatch.setattr(worker_module, "WANT_TTL_SECONDS", 1)

    async def scenario():
        rig = Rig(redis_server.url())
        try:
            owner = await rig.owner("owner")
            await until(lambda: owner.streams, 10, "the owner to run the wanted stream")
            for task in rig.hub._tasks:  # the worker dies: nothing renews or withdraws its want
                task.stop()
            await until(lambda: not owner.streams, 5, "the owner to stop the stream no one wants")
            return client.zcard(wire.WANTED_KEY), client.exists(wire.config_key(wire.stream_key(CONFIG)))
        finally:
            await rig.close()

    assert run(scenario()) == (0, 0)  # nothing of the dead worker's is left


def test_a_worker_that_withdraws_stops_the_stream_at_once(redis_server, client):
    async def scenario():
        rig = Rig(redis_server.url())
        try:
            owner = await rig.owner("owner")
            await until(lambda: owner.streams, 10, "the owner to run the wanted stream")
            rig.reader.stop()  # the last listener leaves: the hub withdraws its want
            await until(lambda: not owner.streams, 2, "the owner to stop the stream")
        finally:
            await rig.close()

    run(scenario())
