"""ListenerSession (streams/session.py) on its own: no consumer, no HTTP. The stream's news reach
it through the Channels layer, as they do in the server (the in-memory layer here)."""
import asyncio
from pathlib import Path

import pytest
from channels.layers import get_channel_layer

from streams.runtime import get_runtime, status_group
from streams.session import ListenerSession, SessionRefused
from tests.helpers import make_profile, run
from tests.waiting import until

pytestmark = pytest.mark.django_db(transaction=True)

OFFER = (Path(__file__).parent / "data" / "aiortc_offer.sdp").read_text()


class Owner:
    """What a session tells its owner."""

    def __init__(self):
        self.statuses = []
        self.ends = []

    async def on_status(self, state, message):
        self.statuses.append(state)

    async def on_end(self, code, message):
        self.ends.append(code)


def held():
    runtime = get_runtime()
    tasks = [t for t in asyncio.all_tasks() if t.get_name().startswith("session-events")]
    return len(runtime.peers), runtime.admission.seats_held, len(tasks), len(runtime.hubs.running())


def session_for(profile, owner, **who):
    return ListenerSession(profile, "127.0.0.1", on_status=owner.on_status, on_end=owner.on_end, **who)


def test_a_session_holds_a_peer_a_place_a_task_and_a_hub_until_it_ends():
    profile = make_profile("hall")

    async def scenario():
        owner = Owner()
        session = session_for(profile, owner)
        answer = await session.start(OFFER)
        assert "m=audio" in answer
        assert held() == (1, 1, 1, 1)
        assert session.stream_status()[0] == "playing"
        await session.end()
        assert held() == (0, 0, 0, 0)
        await session.end()  # a second time: nothing more to give back, nothing said
        assert owner.ends == [] and session.ended

    run(scenario())


@pytest.mark.parametrize("offer, code", [
    ("v=0\r\ns=-\r\nm=video 9 RTP/AVP 96\r\n", "no-audio"),
    (OFFER.replace("a=fingerprint", "a=x-fingerprint"), "invalid-sdp"),
    (OFFER.replace(" 96 9 0 8", " 96 9 0").replace("a=rtpmap:8 PCMA/8000\n", ""), "codec-not-offered"),
])
def test_a_refused_offer_raises_with_its_code_and_holds_nothing(offer, code):
    profile = make_profile("phone", codec="pcma", channels=1, audio_bitrate=64_000)

    async def scenario():
        with pytest.raises(SessionRefused) as refused:
            await session_for(profile, Owner()).start(offer)
        assert refused.value.code == code and refused.value.message
        assert held() == (0, 0, 0, 0)

    run(scenario())


def test_the_listener_limit_refuses_the_next_session():
    profile = make_profile("small", max_listeners=1)

    async def scenario():
        first = session_for(profile, Owner())
        await first.start(OFFER)
        with pytest.raises(SessionRefused) as refused:
            await session_for(profile, Owner()).start(OFFER)
        assert refused.value.code == "too-many-listeners" and "full (1 listeners)" in refused.value.message
        await first.end()
        second = session_for(profile, Owner())
        await second.start(OFFER)
        await second.end()
        assert held() == (0, 0, 0, 0)

    run(scenario())


def test_the_streams_status_reaches_the_session():
    profile = make_profile("hall")

    async def scenario():
        owner = Owner()
        session = session_for(profile, owner)
        await session.start(OFFER)
        get_runtime().announce(profile.pk, "device-lost", "The device is gone.")
        await until(lambda: owner.statuses == ["device-lost"], 5, "the status")
        await session.end()

    run(scenario())


def test_a_stopped_stream_ends_the_session_and_everything_is_given_back():
    profile = make_profile("hall")

    async def scenario():
        owner = Owner()
        session = session_for(profile, owner)
        await session.start(OFFER)
        await get_channel_layer().group_send(status_group(profile.pk), {"type": "stream.stopped", "message": "Stopped."})
        await until(lambda: owner.ends == ["stream-stopped"], 5, "the session to end")
        assert held() == (0, 0, 0, 0)
        layer = get_channel_layer()  # the in-memory layer: its groups can be read
        assert not layer.groups.get(status_group(profile.pk)) and not layer.groups.get(
            status_group(profile.pk, get_runtime().worker_id))  # its channel left the stream's groups

    run(scenario())


def test_an_access_change_that_refuses_the_listener_ends_it_as_forbidden():
    profile = make_profile("hall")

    async def scenario():
        owner = Owner()
        keyed = session_for(profile, owner, key=profile.access_key)  # holds the key: stays
        plain = session_for(profile, owner)
        await keyed.start(OFFER)
        await plain.start(OFFER)
        profile.access = "link"
        await asyncio.to_thread(profile.save)
        await until(lambda: owner.ends == ["forbidden"], 5, "the keyless session to end")
        assert plain.ended and not keyed.ended
        await keyed.end()
        assert held() == (0, 0, 0, 0)

    run(scenario())


def test_an_event_the_session_cannot_handle_ends_it_as_internal_error():
    profile = make_profile("hall")

    async def scenario():
        owner = Owner()
        session = session_for(profile, owner)
        await session.start(OFFER)
        await get_channel_layer().group_send(status_group(profile.pk), {"type": "stream.status"})  # no state
        await until(lambda: owner.ends == ["internal-error"], 5, "the session to end")
        assert held() == (0, 0, 0, 0)

    run(scenario())


def test_a_session_starts_once():
    profile = make_profile("hall")

    async def scenario():
        session = session_for(profile, Owner())
        await session.start(OFFER)
        with pytest.raises(RuntimeError):
            await session.start(OFFER)
        assert held() == (1, 1, 1, 1)
        await session.end()

    run(scenario())
