"""A profile's listener limit and its live count follow the profile, not its slug (issue #17).

An operator renames a stream's slug while it is full. The listeners who came by the old slug
stay (they move to the renamed stream, streams/session.py and streams/oggstream.py), and they
must still count towards the profile's `max_listeners`: a new listener by the new slug is
refused, whether it comes over the WebSocket, WHEP or Ogg over HTTP, and admin, /status.json
and `manage.py stats` show the profile's listeners under its new name.

Real parts: daphne servers, the admin over HTTP, aiortc listeners; in one process
(LocalAdmission) and with a media owner and two workers on Redis (ClusterAdmission).
"""
import asyncio
import re

import pytest
from django.conf import settings

from tests.helpers import make_profile, run
from tests.listener import Listener
from tests.rigs.admin_http import operator
from tests.rigs.live_changes import stats_json
from tests.rigs.ogg_http import ogg_client
from tests.rigs.owner import owner_and_workers
from tests.rigs.redis_db import REDIS_URL
from tests.rigs.whep import WhepListener, http_over_socket
from tests.waiting import until, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

CHANGELIST = "/admin/streams/streamprofile/"


@pytest.fixture(scope="module")
def cluster(django_db_setup, tmp_path_factory):
    """A media owner and two workers sharing the test database and Redis."""
    with owner_and_workers(settings.DATABASES["default"]["NAME"], tmp_path_factory.mktemp("rename-cluster"),
                           REDIS_URL) as (owner, workers):
        yield workers


def live_now(changelist, slug):
    """The "Live now" text of the admin changelist's row for `slug`."""
    row = re.search(rf'<td class="field-slug">{re.escape(slug)}</td>.*?<td class="field-live_now">(.*?)</td>',
                    changelist, re.S)
    assert row, f"no row for {slug} in the changelist"
    return row.group(1)


class Room:
    """One listener of each kind on `servers` (WebRTC, WHEP, Ogg; one server each, or one for all)."""

    def __init__(self, servers, slug):
        self.servers = servers
        self.webrtc = Listener(servers[0].ws_url(slug))
        self.whep = WhepListener(http_over_socket(servers[1].url("")), f"/whep/{slug}/")
        self.ogg = ogg_client(servers[2], slug)

    async def connect(self):
        await asyncio.gather(self.webrtc.connect(), self.whep.connect(), self.ogg.open())
        assert self.ogg.status == 200
        await until(lambda: self.webrtc.heard.seconds() > 0.5 and self.whep.heard.seconds() > 0.5
                    and len(self.ogg.pages) > 25, 20, "every listener to play")

    async def latecomers(self, slug):
        """What a listener of each kind gets who comes now by `slug`: its refusal, or None if admitted."""
        server_webrtc, server_whep, server_ogg = self.servers
        outcomes = []
        for player in (Listener(server_webrtc.ws_url(slug)),
                       WhepListener(http_over_socket(server_whep.url("")), f"/whep/{slug}/")):
            try:
                await player.connect()
                outcomes.append(None)
            except ConnectionError as refused:
                outcomes.append(str(refused).strip())
            await player.close()
        ogg = await ogg_client(server_ogg, slug).open()
        outcomes.append(None if ogg.status == 200 else f"{ogg.status}: {ogg.body.decode().strip()}")
        await ogg.close()
        return outcomes

    async def close(self):
        await asyncio.gather(self.webrtc.close(), self.whep.close(), self.ogg.close(), return_exceptions=True)


def hubs(servers):
    """(slug, listeners) of every hub of every distinct server, from its /status.json."""
    return sorted((hub["slug"], hub["listeners"]) for server in {id(s): s for s in servers}.values()
                  for hub in server.status()["hubs"])


def renamed_while_full(servers, admin, read_stats):
    """A full profile of 3 places, one listener of each kind on `servers`, is renamed in admin.
    Returns what admin, `manage.py stats` (`read_stats()`: its JSON) and /status.json show once the
    listeners moved, and what three newcomers by the new slug get."""
    profile = make_profile("before", max_listeners=3)

    async def scenario():
        room = Room(servers, "before")
        try:
            await room.connect()
            await asyncio.to_thread(admin.save_profile, profile, slug="after")
            await until(lambda: {slug for slug, _ in hubs(servers)} == {"after"}, 10,
                        "every listener to move to the renamed stream")
            shown = await asyncio.to_thread(
                lambda: until_shown(lambda: (live_now(admin.page(CHANGELIST), "after"),
                                             read_stats().get("after", {}).get("listeners"),
                                             sum(count for _, count in hubs(servers)))))
            return shown, await room.latecomers("after")
        finally:
            await room.close()

    return run(scenario(), timeout=120)


def until_shown(look, seconds=15):
    """What `look()` returns once every count in it says 3 listeners (they are published every
    second), or what it returned last when the deadline passed."""
    seen = []

    def settled():
        seen.append(look())
        live, stats, status = seen[-1]
        return live.startswith("3 listeners ") and stats == status == 3

    try:
        wait_for(settled, seconds, "admin, stats and status.json to count 3 listeners")
    except TimeoutError:
        pass
    return seen[-1]


FULL = "This stream is full (3 listeners). Try again later."


def test_in_one_process_a_renamed_profile_keeps_its_listeners_counted_and_its_limit(own_server):
    server = own_server()
    read_stats = lambda: stats_json({}, "--port", str(server.port))  # noqa: E731
    (live, stats, status), latecomers = renamed_while_full([server] * 3, operator(server), read_stats)
    assert live.startswith("3 listeners · opus"), live
    assert stats == status == 3
    assert latecomers == [f"too-many-listeners: {FULL}", f"503: {FULL}", f"503: {FULL}"]


def test_over_two_workers_a_renamed_profile_keeps_its_listeners_counted_and_its_limit(cluster, own_server):
    first, second = cluster
    admin = operator(own_server({"REDIS_URL": REDIS_URL}))  # a fresh worker of its own saves (test_live_changes.py)
    read_stats = lambda: stats_json({"REDIS_URL": REDIS_URL})  # noqa: E731
    (live, stats, status), latecomers = renamed_while_full([first, second, first], admin, read_stats)
    assert live.startswith("3 listeners · opus"), live
    assert stats == status == 3
    assert latecomers == [f"too-many-listeners: {FULL}", f"503: {FULL}", f"503: {FULL}"]
