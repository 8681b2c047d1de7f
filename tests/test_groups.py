"""Listeners hear of their stream for as long as they stay: "stream stopped", "profile changed" and
the like reach them through the Channels layer's groups, which forget members (after the
layer's group_expiry; all at once when Redis restarts), and which are keyed by the profile's
primary key, so that a renamed slug still reaches them (streams/groups.py, runtime.status_group).

Multi-process, with every kind of listener: a WebRTC listener on each of two workers, an Ogg
listener over HTTP and a WHEP player. The cluster has a redis-server of its own
(tests/rigs/private_redis.py), which one test restarts, and its layer keeps group members
GROUP_EXPIRY seconds only (tests/rigs/short_group_expiry_settings.py)."""
import asyncio
from pathlib import Path

import pytest
import redis
from django.conf import settings

from streams.session import ListenerSession
from tests.helpers import make_profile, run
from tests.listener import Listener
from tests.rigs.admin_http import operator
from tests.rigs.ogg_http import ogg_client
from tests.rigs.owner import owner_and_workers
from tests.rigs.private_redis import PrivateRedis
from tests.rigs.whep import WhepListener, http_over_socket
from tests.waiting import until

pytestmark = pytest.mark.django_db(transaction=True)

GROUP_EXPIRY = 2  # seconds; a day by default
OFFER = (Path(__file__).parent / "data" / "aiortc_offer.sdp").read_text()  # aiortc's: recvonly audio


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    server = PrivateRedis(tmp_path_factory.mktemp("groups-redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def env(redis_server):
    return {"REDIS_URL": redis_server.url(), "DJANGO_SETTINGS_MODULE": "tests.rigs.short_group_expiry_settings",
            "RTC_TEST_GROUP_EXPIRY": str(GROUP_EXPIRY)}


@pytest.fixture(scope="module")
def cluster(django_db_setup, redis_server, env, tmp_path_factory):
    """A media owner and two daphne workers on the module's Redis."""
    with owner_and_workers(settings.DATABASES["default"]["NAME"], tmp_path_factory.mktemp("groups-cluster"),
                           redis_server.url(), owner_env=env, worker_env=env) as started:
        yield started


class Audience:
    """A profile's listeners of every kind, spread over both workers."""

    def __init__(self, workers, slug):
        first, second = self.workers = workers
        self.webrtc = [Listener(first.ws_url(slug)), Listener(second.ws_url(slug))]
        self.whep = WhepListener(http_over_socket(second.url("")), f"/whep/{slug}/")
        self.ogg = ogg_client(first, slug)

    @property
    def players(self):
        return [*self.webrtc, self.whep]

    async def connect(self):
        await asyncio.gather(*(player.connect() for player in self.players), self.ogg.open())
        assert self.ogg.status == 200
        await self.hear_more(1.0)

    async def hear_more(self, seconds):
        """Wait until every listener has had `seconds` more of the stream."""
        decoded = [(player, player.heard.seconds()) for player in self.players]
        pages = len(self.ogg.pages)
        await until(lambda: all(player.heard.seconds() >= before + seconds for player, before in decoded)
                    and len(self.ogg.pages) >= pages + seconds * 50, 20, f"{seconds} s more for every listener")

    def errors(self):
        return [message for player in self.webrtc for message in player.heard.messages if message["type"] == "error"]

    async def all_stopped(self):
        """Every listener was told that the stream stopped, each in its own way."""
        await until(lambda: all(player._ws.close_code is not None for player in self.webrtc) and self.ogg.ended,
                    10, "the WebRTC listeners closed and the Ogg stream ended")
        await until(lambda: all(worker.status()["peers"] == 0 for worker in self.workers), 10, "every peer closed")
        assert [(player._ws.close_code, [m["code"] for m in player.heard.messages if m["type"] == "error"])
                for player in self.webrtc] == [(4404, ["stream-stopped"])] * 2
        status, _, body = await self.whep.delete()
        assert status == 200 and "already ended (stream-stopped)" in body, body

    async def close(self):
        await asyncio.gather(*(player.close() for player in self.players), self.ogg.close(), return_exceptions=True)


def listen(workers, slug, scenario):
    """Run `scenario(audience)` with the profile's listeners connected; closed after it."""
    async def listening():
        audience = Audience(workers, slug)
        try:
            await audience.connect()
            return await scenario(audience)
        finally:
            await audience.close()

    return run(listening(), timeout=120)


def hub_slugs(workers):
    return [sorted({hub["slug"] for hub in worker.status()["hubs"]}) for worker in workers]


def test_listeners_who_stay_longer_than_the_layer_keeps_group_members_still_hear_the_stream_stop(
        cluster, own_server, env):
    owner, workers = cluster
    profile = make_profile("marathon")
    admin = operator(own_server(env))

    async def scenario(audience):
        await audience.hear_more(3 * GROUP_EXPIRY)  # joined their groups longer ago than the layer keeps members
        await asyncio.to_thread(admin.save_profile, profile, enabled=False)
        await audience.all_stopped()

    listen(workers, "marathon", scenario)


def test_after_a_redis_restart_changes_and_the_stop_still_reach_every_listener(cluster, own_server, env,
                                                                              redis_server):
    owner, workers = cluster
    profile = make_profile("survivors", opus_cbr=True, audio_bitrate=96_000)
    group = f"asgi:group:stream.{profile.pk}".encode()  # channels_redis's key of the profile's group
    client = redis.Redis.from_url(redis_server.url())
    admin = operator(own_server(env))

    async def scenario(audience):
        members = client.zcard(group)
        assert members == 4  # a WebRTC session on each worker, the WHEP session, the Ogg listener
        await asyncio.to_thread(redis_server.restart)  # every group, count, want and lock is gone
        await audience.hear_more(1.0)  # the owner took the lock again, the workers want and relay again
        await until(lambda: client.zcard(group) == members, 10, "the listeners to be in their group again")
        await asyncio.to_thread(admin.save_profile, profile, audio_bitrate=32_000)
        await until(lambda: all({hub["bitrate"] for hub in worker.status()["hubs"]} == {32_000} for worker in workers),
                    10, "every listener to move to the 32 kb/s stream")
        await audience.hear_more(0.5)
        assert audience.errors() == []
        await asyncio.to_thread(admin.save_profile, profile, enabled=False)
        await audience.all_stopped()

    try:
        listen(workers, "survivors", scenario)
    finally:
        client.close()


def test_a_renamed_slug_reaches_the_listeners_who_came_by_the_old_one_and_they_play_on(cluster, own_server, env):
    owner, workers = cluster
    profile = make_profile("before")
    admin = operator(own_server(env))

    async def scenario(audience):
        assert hub_slugs(workers) == [["before"], ["before"]]
        await asyncio.to_thread(admin.save_profile, profile, slug="after")
        await until(lambda: hub_slugs(workers) == [["after"], ["after"]], 10,
                    "every listener to move to the renamed stream")
        await audience.hear_more(1.0)
        assert audience.errors() == [] and all(player._ws.close_code is None for player in audience.webrtc)
        profile.slug = "after"
        await asyncio.to_thread(admin.save_profile, profile, enabled=False)
        await audience.all_stopped()

    listen(workers, "before", scenario)


def test_in_one_process_a_session_older_than_the_layers_group_expiry_still_hears_the_stream_stop(settings):
    """The same with the in-memory layer of single-process mode, which forgets members alike."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer",
                                           "CONFIG": {"group_expiry": GROUP_EXPIRY}}}
    profile = make_profile("evergreen")
    ends = []

    async def ended(code, message):
        ends.append(code)

    async def scenario():
        loop = asyncio.get_running_loop()
        session = ListenerSession(profile, "127.0.0.1", on_end=ended)
        await session.start(OFFER)  # no peer answers it: it ends as "ice-timeout" after 15 s
        joined = loop.time()
        await until(lambda: loop.time() > joined + 2 * GROUP_EXPIRY + 1, 10, "the members to be older than the expiry")
        profile.enabled = False
        await asyncio.to_thread(profile.save)
        await until(lambda: ends, 5, "the session to end")
        await session.end()

    run(scenario())
    assert ends == ["stream-stopped"]
