"""WHEP in multi-process mode (REDIS_URL): the daphne workers share one port, so a player's PATCH
or DELETE may reach another worker than the one holding its session; that worker passes it on
over the Channels layer to the holder (streams/whepforward.py). Here each worker has a port of
its own, which is what the shared port does to a request at its worst: it reaches a worker that
does not hold the session. A media owner, two workers, the real Redis (database of
tests/rigs/redis_db.py) and a real aiortc WHEP player."""
import asyncio
import re

import pytest
import redis
from django.conf import settings

from streams import whepforward
from tests.helpers import make_profile, run
from tests.listener import ask_for_stereo
from tests.rigs.daphne import DaphneServer
from tests.rigs.owner import MediaOwnerProcess
from tests.rigs.redis_db import REDIS_URL
from tests.rigs.whep import WhepListener, fragment, http_over_socket, without_candidates
from tests.waiting import until, until_awaited

pytestmark = pytest.mark.django_db(transaction=True)

SDP_FRAGMENT = {"Content-Type": "application/trickle-ice-sdpfrag"}


@pytest.fixture(scope="module")
def cluster(django_db_setup, tmp_path_factory):
    """An owner and two workers sharing the test database and Redis."""
    redis.Redis.from_url(REDIS_URL).ping()  # fails (does not skip) when Redis is missing
    directory = tmp_path_factory.mktemp("whep-cluster")
    db = settings.DATABASES["default"]["NAME"]
    owner = MediaOwnerProcess(db, directory / "owner.log", REDIS_URL).start()
    workers = [DaphneServer(db, directory / f"worker-{i}.log", extra_env={"REDIS_URL": REDIS_URL}).start()
               for i in (1, 2)]
    yield owner, workers
    for process in (*workers, owner):
        process.stop()


async def peers(worker):
    return (await asyncio.to_thread(worker.status))["peers"]


async def until_peers(worker, count, what):
    await until_awaited(lambda: _has_peers(worker, count), 2, what)


async def _has_peers(worker, count):
    return await peers(worker) == count


async def playing_on(holder, slug, offer_edit=ask_for_stereo):
    """A WHEP player whose session `holder` holds, once its packets arrive."""
    listener = WhepListener(http_over_socket(holder.url("")), f"/whep/{slug}/", offer_edit=offer_edit)
    await listener.connect()
    await until(lambda: len(listener.heard.packets) >= 25, 20, "packets from the holding worker")
    return listener


def test_the_session_url_names_the_worker_that_holds_it(cluster):
    owner, (holder, _) = cluster
    make_profile("whep-named", sine_frequency=440)

    async def scenario():
        listener = await playing_on(holder, "whep-named")
        try:
            return listener.location
        finally:
            await listener.delete()
            await listener.close()

    location = run(scenario())
    assert re.fullmatch(r"/whep/whep-named/[0-9a-f]+-[0-9a-f]{12}\.[\w-]{20,}/", location)


def test_a_delete_on_another_worker_ends_the_session_on_the_worker_holding_it(cluster):
    owner, (holder, other) = cluster
    make_profile("whep-delete", sine_frequency=440)

    async def scenario():
        listener = await playing_on(holder, "whep-delete")
        try:
            await until_peers(holder, 1, "the holder's peer")
            assert await peers(other) == 0
            answer = await http_over_socket(other.url(""))("DELETE", listener.location)
            await until_peers(holder, 0, "the holder's peer to be closed")
        finally:
            await listener.close()
        return answer

    status, headers, body = run(scenario())
    assert (status, body) == (200, "The session has ended.\n")
    assert headers["access-control-allow-origin"] == "*"
    assert "WHEP session ended by the player (DELETE)" in holder.log()


def test_a_patch_on_another_worker_adds_the_candidates_on_the_worker_holding_it(cluster):
    owner, (holder, other) = cluster
    make_profile("whep-patch", sine_frequency=440)

    async def scenario():
        listener = await playing_on(holder, "whep-patch",
                                    offer_edit=lambda offer: ask_for_stereo(without_candidates(offer)))
        local = listener.pc.localDescription.sdp
        ufrag, pwd = (re.search(rf"a={name}:(\S+)", local).group(1) for name in ("ice-ufrag", "ice-pwd"))
        candidates = re.findall(r"a=(candidate:\S.*)", local)
        elsewhere = http_over_socket(other.url(""))
        try:
            trickled = await elsewhere("PATCH", listener.location, fragment(ufrag, pwd, candidates),
                                       {**SDP_FRAGMENT, "If-Match": listener.headers["etag"]})
            stale = await elsewhere("PATCH", listener.location, fragment(ufrag, pwd, []),
                                    {**SDP_FRAGMENT, "If-Match": '"0000"'})
        finally:
            await listener.delete()
            await listener.close()
        return trickled, stale, listener.headers["etag"], len(candidates)

    (status, headers, body), stale, etag, count = run(scenario())
    assert (status, body, headers["etag"]) == (204, "", etag)
    assert f"{count} trickled candidate(s) added" in holder.log()
    assert (stale[0], stale[1]["etag"]) == (412, etag)  # the holder's own refusal, headers and all


def test_an_unknown_session_on_another_worker_answers_404(cluster):
    owner, (holder, other) = cluster
    make_profile("whep-unknown", sine_frequency=440)

    async def scenario():
        listener = await playing_on(holder, "whep-unknown")
        worker_part, token = listener.location.split("/")[3].split(".")
        elsewhere = http_over_socket(other.url(""))
        try:
            answers = {
                "unknown session of the holder": await elsewhere(
                    "DELETE", f"/whep/whep-unknown/{worker_part}.no-such-session-at-all/"),
                "another stream's path": await elsewhere(
                    "DELETE", listener.location.replace("/whep-unknown/", "/whep-other/")),
                "no worker named": await elsewhere("DELETE", "/whep/whep-unknown/no-such-session/"),
                "an id no worker made": await elsewhere(
                    "PATCH", f"/whep/whep-unknown/0badc0de-{worker_part[-12:]}.{token}/", "a=end-of-candidates\r\n",
                    SDP_FRAGMENT),
            }
            await listener.delete()
            answers["deleted already"] = await elsewhere("DELETE", listener.location)
        finally:
            await listener.close()
        return answers

    answers = run(scenario())
    assert {case: status for case, (status, _, _) in answers.items()} == {
        "unknown session of the holder": 404, "another stream's path": 404, "no worker named": 404,
        "an id no worker made": 404, "deleted already": 404}


def test_a_session_of_a_worker_that_died_gets_503_once_the_wait_is_over(cluster, own_server):
    owner, (_, other) = cluster
    make_profile("whep-orphan", sine_frequency=440)
    doomed = own_server({"REDIS_URL": REDIS_URL})

    async def scenario():
        listener = await playing_on(doomed, "whep-orphan")
        doomed.kill()
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            answer = await http_over_socket(other.url(""))("DELETE", listener.location)
        finally:
            await listener.close()
        return answer, loop.time() - started

    (status, headers, body), took = run(scenario())
    assert status == 503
    assert "did not answer" in body and headers["access-control-allow-origin"] == "*"
    assert whepforward.FORWARD_TIMEOUT_SECONDS <= took < whepforward.FORWARD_TIMEOUT_SECONDS + 2
