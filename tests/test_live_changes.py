"""Changing a profile in admin applies to its live listeners (issue 8): the admin form is
posted over HTTP to the server, so the save happens where the listeners are.

Tests that save get a server of their own: the test database is flushed between tests,
which renumbers Django's content types, and a long-lived server would still hold the old
ids in its cache (the admin's change log would then point at a missing content type)."""
import asyncio

import pytest

from tests.helpers import live_opus_kbps, make_profile, run
from tests.listener import Listener
from tests.rigs.admin_http import operator
from tests.rigs.live_changes import assert_followed_within_2_s, follow_a_bitrate_change, stats_json, while_listening
from tests.waiting import until

pytestmark = pytest.mark.django_db(transaction=True)

@pytest.fixture
def fresh_server(own_server):
    return own_server()


def test_a_bitrate_change_in_admin_reaches_a_live_listener_within_2_s_without_reconnecting(fresh_server):
    server = fresh_server
    profile = make_profile("retune", opus_cbr=True, audio_bitrate=96_000, sine_frequency=440)
    (heard,), saved_at = follow_a_bitrate_change(server.ws_url("retune"), operator(server), profile)
    assert_followed_within_2_s(heard, saved_at)


def change_while_listening_until_closed(server, slug, profile, **changes):
    """Listen, save `changes` in admin, wait for the server to close the socket;
    (close code, messages, seconds from the save's start to the close)."""
    admin = operator(server)

    async def scenario():
        listener = Listener(server.ws_url(slug))
        await listener.connect()
        await until(lambda: len(listener.heard.packets) >= 25, 20, "packets")
        loop = asyncio.get_running_loop()
        saving = loop.time()
        await loop.run_in_executor(None, lambda: admin.save_profile(profile, **changes))
        await until(lambda: listener._ws.close_code is not None, 5, "the server to close the socket")
        closed_after = loop.time() - saving
        await listener.close()
        return listener._ws.close_code, listener.heard.messages, closed_after

    return run(scenario())


def test_a_codec_change_asks_the_listener_to_renegotiate(fresh_server):
    profile = make_profile("recodec", channels=1, audio_bitrate=64_000)
    close_code, messages, seconds = change_while_listening_until_closed(fresh_server, "recodec", profile, codec="pcmu")
    assert close_code == 4426
    assert {"type": "renegotiate", "message": "The stream changed to PCMU; reconnecting."} in messages
    assert seconds < 2, f"told to renegotiate {seconds:.2f} s after the save began"


def test_changing_access_to_logged_in_closes_anonymous_listeners_as_forbidden(fresh_server):
    profile = make_profile("closing-doors")
    close_code, messages, _ = change_while_listening_until_closed(fresh_server, "closing-doors", profile,
                                                                  access="login")
    assert close_code == 4403
    assert [m["code"] for m in messages if m["type"] == "error"] == ["forbidden"]


def test_admin_and_manage_py_stats_show_live_listeners_and_the_measured_bitrate(server):
    make_profile("counted", opus_cbr=True, audio_bitrate=64_000)
    admin = operator(server)

    def look():
        return stats_json({}, "--port", str(server.port)), admin.page("/admin/streams/streamprofile/")

    stats, changelist = while_listening([server.ws_url("counted")] * 2, look)
    assert stats["counted"]["listeners"] == 2
    [variant] = stats["counted"]["variants"]
    assert variant["codec"] == "opus" and variant["bitrate"] == pytest.approx(64_000, rel=0.05)
    assert live_opus_kbps(changelist, 2) == pytest.approx(64, rel=0.05)


def test_listeners_are_told_of_a_change_only_once_it_is_committed(monkeypatch):
    """Their consumers reload the profile on another database connection: told before the
    commit, they would read the old settings and keep them (this happened between workers)."""
    from django.db import transaction

    from streams import signals

    sent = []
    monkeypatch.setattr(signals, "_send", lambda profile_id, slug, event: sent.append((slug, event["type"])))
    profile = make_profile("committed")
    assert sent == [("committed", "stream.changed")]  # saved in autocommit: told at once
    sent.clear()
    with transaction.atomic():
        profile.audio_bitrate = 64_000
        profile.save()
        assert sent == []  # not yet: the change is not visible to other connections
    assert sent == [("committed", "stream.changed")]
