"""Multi-process mode with the real Redis: one media owner, two daphne workers (issue 8).

Redis is the one on 127.0.0.1:6379 that the test set-up starts when nothing answers
(scripts/ensure-redis.sh); these tests use the run's database of it (tests/rigs/redis_db.py).
"""
import asyncio

import numpy as np
import pytest
import redis
from aiortc.clock import current_ms
from django.conf import settings

from tests.helpers import assert_same_packets, counted_listeners, live_opus_kbps, make_profile, refusal_of, run
from tests.listener import Listener, dominant_frequency
from tests.rigs.owner import owner_and_workers
from tests.rigs.admin_http import operator
from tests.rigs.live_changes import assert_followed_within_2_s, follow_a_bitrate_change, stats_json, while_listening
from tests.rigs.redis_db import REDIS_URL
from tests.waiting import until, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def cluster(django_db_setup, tmp_path_factory):
    """An owner and two workers sharing the test database and Redis."""
    with owner_and_workers(settings.DATABASES["default"]["NAME"], tmp_path_factory.mktemp("cluster"),
                           REDIS_URL) as started:
        yield started


def arrivals_gap(heard, since):
    """Longest time between consecutive RTP packets arriving after `since` (ms, aiortc's clock)."""
    times = [p[0] for p in heard.packets if p[0] >= since]
    return max(np.diff(times)) if len(times) > 1 else None


def tail_frequency(heard, seconds=0.5):
    tail = heard.samples()[-int(seconds * heard.sample_rate):, 0]
    return dominant_frequency(tail, heard.sample_rate)


def test_listeners_on_two_workers_get_the_same_packets_from_the_one_owner(cluster):
    owner, (first, second) = cluster
    make_profile("everywhere", sine_frequency=440, sine_frequency_right=660)

    async def scenario():
        a = Listener(first.ws_url("everywhere"))
        await a.connect()
        await until(lambda: len(a.heard.packets) >= 25, 20, "packets on worker 1")
        b = Listener(second.ws_url("everywhere"))
        await b.connect()
        await until(lambda: len(b.heard.packets) >= 100, 20, "packets on worker 2")
        modes = [[(hub["slug"], hub["mode"]) for hub in worker.status()["hubs"]] for worker in (first, second)]
        await asyncio.gather(a.listen_for(1.5), b.listen_for(1.5))
        await asyncio.gather(a.close(), b.close())
        return a.heard, b.heard, modes

    a, b, modes = run(scenario())
    assert modes == [[("everywhere", "relay")]] * 2  # the workers relay, they do not encode
    assert_same_packets(a.packets, b.packets, at_least=90)
    for heard in (a, b):
        assert abs(tail_frequency(heard) - 440) <= 5
    assert owner.log().count("starting everywhere") == 1  # encoded once, in the owner


def test_a_worker_killed_leaves_the_other_workers_listeners_without_a_gap(cluster, own_server):
    owner, (first, second) = cluster
    make_profile("survivor", sine_frequency=523)
    doomed = own_server({"REDIS_URL": REDIS_URL})

    async def scenario():
        staying, leaving = Listener(first.ws_url("survivor")), Listener(doomed.ws_url("survivor"))
        await asyncio.gather(staying.connect(), leaving.connect())
        await asyncio.gather(staying.listen_for(1.0), leaving.listen_for(1.0))
        killed_at = staying.heard.packets[-1][0]
        doomed.kill()
        count = len(staying.heard.packets)
        await until(lambda: len(staying.heard.packets) >= count + 100, 10, "2 s more on the other worker")
        await asyncio.gather(staying.close(), leaving.close(), return_exceptions=True)
        return staying.heard, killed_at

    heard, killed_at = run(scenario())
    assert arrivals_gap(heard, killed_at) < 100
    after = [p for p in heard.packets if p[0] >= killed_at]
    assert set(np.diff([p[1] for p in after]) % (1 << 16)) == {1}  # no packet lost
    assert set(np.diff([p[2] for p in after]) % (1 << 32)) == {960}  # none skipped at the source
    assert abs(tail_frequency(heard) - 523) <= 5


def test_a_restarted_owner_brings_the_sound_back_within_5_s_without_reconnecting(cluster):
    owner, (first, second) = cluster
    make_profile("phoenix", sine_frequency=660)

    async def scenario():
        listeners = [Listener(first.ws_url("phoenix")), Listener(second.ws_url("phoenix"))]
        await asyncio.gather(*(listener.connect() for listener in listeners))
        await asyncio.gather(*(listener.listen_for(1.0) for listener in listeners))
        owner.kill()
        await until(lambda: all(any(m.get("state") == "source-lost" for m in listener.heard.messages)
                                for listener in listeners), 10, "both workers to say the source is lost")
        counts = [len(listener.heard.packets) for listener in listeners]
        restarted_ms = current_ms()  # the clock of aiortc's arrival times
        await asyncio.get_running_loop().run_in_executor(None, owner.start)
        await until(lambda: all(len(listener.heard.packets) >= count + 50
                                for listener, count in zip(listeners, counts)), 10, "sound again on both workers")
        resumed_after = [(listener.heard.packets[count][0] - restarted_ms) / 1000
                         for listener, count in zip(listeners, counts)]
        await asyncio.gather(*(listener.listen_for(listener.heard.seconds() + 0.5) for listener in listeners))
        await asyncio.gather(*(listener.close() for listener in listeners))
        return [listener.heard for listener in listeners], resumed_after

    heards, resumed_after = run(scenario(), timeout=120)
    assert max(resumed_after) < 5, f"sound came back {resumed_after} s after the owner restarted"
    for heard in heards:
        states = [m["state"] for m in heard.messages if m["type"] == "status"]
        assert states[-2:] == ["source-lost", "playing"], states
        assert not [m for m in heard.messages if m["type"] == "error"]  # never told to reconnect
        # The RTP clock ran on through the outage by as long as the listener waited (its jitter
        # buffer sees a pause, not a jump); every other packet is one 20 ms frame after the last.
        steps = np.diff([p[2] for p in heard.packets]) % (1 << 32)
        arrivals = np.diff([p[0] for p in heard.packets])
        outage = int(np.argmax(arrivals))
        assert abs(steps[outage] / 48 - arrivals[outage]) < 100
        assert set(np.delete(steps, outage)) == {960}
        assert abs(tail_frequency(heard) - 660) <= 5


def test_a_bitrate_change_in_admin_reaches_listeners_on_both_workers_within_2_s(cluster, own_server):
    owner, (first, second) = cluster
    profile = make_profile("retune-everywhere", opus_cbr=True, audio_bitrate=96_000, sine_frequency=440)
    # The operator uses a third worker (a fresh one: see tests/test_live_changes.py on content types).
    third = own_server({"REDIS_URL": REDIS_URL})
    heards, saved_at = follow_a_bitrate_change(first.ws_url("retune-everywhere"), operator(third), profile,
                                              other_listen_url=second.ws_url("retune-everywhere"))
    for heard in heards:
        assert_followed_within_2_s(heard, saved_at)


def test_admin_and_stats_add_up_listeners_over_both_workers(cluster):
    owner, (first, second) = cluster
    make_profile("headcount", opus_cbr=True, audio_bitrate=48_000)
    admin = operator(second)

    def look():
        # A worker counts a listener in Redis once admitted: wait until all three are.
        stats = wait_for(lambda: (s := stats_json({"REDIS_URL": REDIS_URL})).get("headcount", {}).get("listeners") == 3
                         and s, 5, "three listeners counted")
        return stats, admin.page("/admin/streams/streamprofile/")

    urls = [first.ws_url("headcount"), first.ws_url("headcount"), second.ws_url("headcount")]
    stats, changelist = while_listening(urls, look)
    [variant] = stats["headcount"]["variants"]
    assert variant["bitrate"] == pytest.approx(48_000, rel=0.05)  # measured in the owner
    assert live_opus_kbps(changelist, 3) == pytest.approx(48, rel=0.05)


def test_disabling_a_profile_in_admin_stops_its_listeners_on_every_worker(cluster, own_server):
    owner, (first, second) = cluster
    profile = make_profile("last-call")
    admin = operator(own_server({"REDIS_URL": REDIS_URL}))

    async def scenario():
        listeners = [Listener(first.ws_url("last-call")), Listener(second.ws_url("last-call"))]
        await asyncio.gather(*(listener.connect() for listener in listeners))
        await until(lambda: all(len(listener.heard.packets) >= 25 for listener in listeners), 20, "packets")
        await asyncio.get_running_loop().run_in_executor(None, lambda: admin.save_profile(profile, enabled=False))
        await until(lambda: all(listener._ws.close_code is not None for listener in listeners), 5,
                    "both workers to close their listeners")
        await asyncio.gather(*(listener.close() for listener in listeners))
        return [(listener._ws.close_code, listener.heard.messages) for listener in listeners]

    for close_code, messages in run(scenario()):
        assert close_code == 4404
        assert [m["code"] for m in messages if m["type"] == "error"] == ["stream-stopped"]


def test_a_streams_listener_limit_holds_over_both_workers(cluster):
    owner, (first, second) = cluster
    booth = make_profile("booth", sine_frequency=440, max_listeners=2)

    async def scenario():
        admitted = [Listener(first.ws_url("booth")), Listener(second.ws_url("booth"))]
        await asyncio.gather(*(listener.connect() for listener in admitted))
        refused = [await refusal_of(Listener(worker.ws_url("booth"))) for worker in (first, second)]
        await admitted[0].close()  # a place is free again, whichever worker it was on
        counts = redis.Redis.from_url(REDIS_URL)
        await until(lambda: counted_listeners(counts, booth.pk) == 1, 10, "the leaver to be uncounted in Redis")
        counts.close()
        late = Listener(second.ws_url("booth"))
        await late.connect()
        await asyncio.gather(admitted[1].listen_for(0.5), late.listen_for(0.5))
        await asyncio.gather(admitted[1].close(), late.close())
        return refused

    assert run(scenario()) == ["too-many-listeners: This stream is full (2 listeners). Try again later."] * 2

