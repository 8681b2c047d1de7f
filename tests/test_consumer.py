"""The signaling consumer, through Channels' WebsocketCommunicator (no server process)."""
import json

import pytest

from streams.models import StreamProfile, not_found_message
from streams.runtime import get_runtime
from tests.helpers import AIORTC_OFFER, run
from tests.rigs.communicator import answer_to_offer, connected, send_and_receive

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def hall():
    return StreamProfile.objects.create(name="Hall", slug="hall")


def test_unknown_profile_gets_an_error_and_close_4404():
    async def scenario():
        communicator = await connected("nope")
        error = await communicator.receive_json_from()
        assert error == {"type": "error", "code": "profile-not-found", "message": not_found_message("nope")}
        assert await communicator.receive_output() == {"type": "websocket.close", "code": 4404}

    run(scenario())


def test_disabled_profile_gets_close_4404():
    StreamProfile.objects.create(name="Off", slug="off", enabled=False)

    async def scenario():
        communicator = await connected("off")
        assert (await communicator.receive_json_from())["code"] == "profile-not-found"
        assert (await communicator.receive_output())["code"] == 4404

    run(scenario())


BAD_MESSAGES = [
    ("{not json", None, "invalid-json"),
    ("[1, 2]", None, "missing-type"),
    ('{"sdp": "v=0"}', None, "missing-type"),
    ('{"type": 7}', None, "missing-type"),
    ('{"type": "hello"}', None, "unknown-type"),
    (None, b"\x00\x01binary", "not-text"),
    ('{"type": "offer"}', None, "invalid-sdp"),
    ('{"type": "offer", "sdp": 42}', None, "invalid-sdp"),
    ('{"type": "offer", "sdp": "v=0\\r\\ns=-\\r\\nm=video 9 RTP/AVP 96\\r\\n"}', None, "no-audio"),
    ('{"type": "offer", "sdp": "v=0\\r\\nm=audio 9 UDP/TLS/RTP/SAVPF 111\\r\\n"}', None, "invalid-sdp"),
    # Found by the fuzz test: ICE credentials but no DTLS fingerprint used to crash aiortc's connect task.
    ('{"type": "offer", "sdp": "v=0\\r\\nm=audio 9 UDP/TLS/RTP/SAVPF 111\\r\\na=ice-ufrag:u\\r\\na=ice-pwd:p\\r\\n'
     'a=rtpmap:111 opus/48000/2\\r\\n"}', None, "invalid-sdp"),
]


@pytest.mark.parametrize("text, binary, code", BAD_MESSAGES, ids=[code for *_, code in BAD_MESSAGES])
def test_bad_message_gets_its_error_and_the_socket_still_answers_an_offer(hall, text, binary, code):
    async def scenario():
        communicator = await connected()
        error = await send_and_receive(communicator, text, binary)
        assert error["type"] == "error" and error["code"] == code, error
        assert error["message"]
        assert "m=audio" in await answer_to_offer(communicator)
        await communicator.disconnect()

    run(scenario())


def test_oversized_message_limit_is_64_kib_and_closes_the_socket(hall):
    async def scenario():
        communicator = await connected()
        padding = " " * (64 * 1024 - len('{"type": "hello"}'))
        assert (await send_and_receive(communicator, '{"type": "hello"}' + padding))["code"] == "unknown-type"
        assert (await send_and_receive(communicator, '{"type": "hello"}' + padding + " "))["code"] == "too-large"
        assert await communicator.receive_output() == {"type": "websocket.close", "code": 4009}

    run(scenario())


def test_second_offer_on_the_same_socket_is_refused(hall):
    async def scenario():
        communicator = await connected()
        await answer_to_offer(communicator)
        error = await send_and_receive(communicator, json.dumps({"type": "offer", "sdp": AIORTC_OFFER}))
        assert error["code"] == "second-offer"
        assert len(get_runtime().peers) == 1
        await communicator.disconnect()

    run(scenario())


def test_offer_without_the_profiles_codec_is_refused_and_leaves_no_peer():
    StreamProfile.objects.create(name="Phone", slug="phone", codec="pcma", channels=1, audio_bitrate=64000)
    offer = AIORTC_OFFER.replace(" 96 9 0 8", " 96 9 0").replace("a=rtpmap:8 PCMA/8000\n", "")

    async def scenario():
        communicator = await connected("phone")
        error = await send_and_receive(communicator, json.dumps({"type": "offer", "sdp": offer}))
        assert error["code"] == "codec-not-offered" and "PCMA" in error["message"]
        assert get_runtime().peers == set() and get_runtime().hubs.running() == []
        await communicator.disconnect()

    run(scenario())


def test_closing_the_socket_closes_the_peer_and_stops_the_hub(hall):
    async def scenario():
        communicator = await connected()
        await answer_to_offer(communicator)
        runtime = get_runtime()
        assert len(runtime.peers) == 1 and len(runtime.hubs.running()) == 1
        await communicator.disconnect()
        assert runtime.peers == set() and runtime.hubs.running() == []

    run(scenario())


def with_opus_fmtp(offer, value):
    return offer.replace("a=rtpmap:96 opus/48000/2\n", f"a=rtpmap:96 opus/48000/2\na=fmtp:96 {value}\n")


def test_an_unexpected_error_after_the_seat_was_taken_closes_the_socket_and_gives_the_seat_back(monkeypatch):
    StreamProfile.objects.create(name="Small", slug="small", max_listeners=1)

    async def scenario():
        runtime = get_runtime()

        def broken_subscribe(config):
            raise RuntimeError("a bug after admission")

        monkeypatch.setattr(runtime.hubs, "subscribe", broken_subscribe)
        for _ in range(3):  # more than the profile has places
            communicator = await connected("small")
            error = await send_and_receive(communicator, json.dumps({"type": "offer", "sdp": AIORTC_OFFER}))
            assert error["code"] == "internal-error", error
            assert await communicator.receive_output() == {"type": "websocket.close", "code": 4500}
            assert runtime.admission.seats_held == 0 and runtime.peers == set()
        monkeypatch.undo()
        communicator = await connected("small")
        assert "m=audio" in await answer_to_offer(communicator)  # the one place is free
        await communicator.disconnect()
        assert runtime.admission.seats_held == 0

    run(scenario())


@pytest.mark.parametrize("trigger", ["maxaveragebitrate=²", "maxaveragebitrate=" + "9" * 5000, "80 m-lines"])
def test_hostile_offer_values_cost_no_seat(trigger):
    StreamProfile.objects.create(name="Small", slug="small", max_listeners=1)
    if trigger == "80 m-lines":  # each answered in kind: an answer over daphne's 64 KiB
        offer = AIORTC_OFFER + "".join(f"m=audio 9 UDP/TLS/RTP/SAVPF 0\na=mid:{i}\na=rtpmap:0 PCMU/8000\n"
                                        for i in range(1, 80))
        assert len(offer) < 8 * 1024
    else:
        offer = with_opus_fmtp(AIORTC_OFFER, trigger)

    async def scenario():
        runtime = get_runtime()
        for _ in range(3):
            communicator = await connected("small")
            reply = await send_and_receive(communicator, json.dumps({"type": "offer", "sdp": offer}))
            assert reply["type"] in ("answer", "error"), reply
            if reply["type"] == "error":
                assert reply["code"] == "invalid-sdp"
            await communicator.disconnect()
            assert runtime.admission.seats_held == 0 and runtime.peers == set()
        communicator = await connected("small")
        assert "m=audio" in await answer_to_offer(communicator)
        await communicator.disconnect()

    run(scenario())


def test_a_rejected_offer_does_not_stop_the_offer_deadline(settings):
    settings.RTC_OFFER_TIMEOUT_SECONDS = 1
    StreamProfile.objects.create(name="Phone", slug="phone", codec="pcma", channels=1, audio_bitrate=64000)
    offer = AIORTC_OFFER.replace(" 96 9 0 8", " 96 9 0").replace("a=rtpmap:8 PCMA/8000\n", "")

    async def scenario():
        communicator = await connected("phone")
        error = await send_and_receive(communicator, json.dumps({"type": "offer", "sdp": offer}))
        assert error["code"] == "codec-not-offered"
        timeout = await communicator.receive_json_from(timeout=3)
        assert timeout["code"] == "offer-timeout"
        assert await communicator.receive_output(timeout=3) == {"type": "websocket.close", "code": 4408}

    run(scenario())


def test_one_address_may_hold_only_so_many_sockets_before_any_offer(settings, hall):
    settings.RTC_MAX_SOCKETS_PER_ADDRESS = 3

    async def scenario():
        idle = [await connected() for _ in range(3)]
        refused = await connected()
        error = await refused.receive_json_from()
        assert error["code"] == "too-many-connections" and "3 at most" in error["message"]
        assert await refused.receive_output() == {"type": "websocket.close", "code": 4429}
        await idle.pop().disconnect()
        again = await connected()
        assert "m=audio" in await answer_to_offer(again)  # a place was given back with the closed socket
        for communicator in [*idle, again]:
            await communicator.disconnect()
        assert get_runtime().sockets.seats_held == 0

    run(scenario())


def test_a_message_to_a_socket_daphne_has_already_closed_is_dropped_with_a_log_line(caplog):
    """A listener that hangs up may close DTLS a moment before its WebSocket: the session's end
    then finds daphne's protocol closed (autobahn raises Disconnected, seen in a suite run)."""
    from autobahn.exception import Disconnected

    from streams.consumers import ListenConsumer

    async def closed_protocol(message):
        raise Disconnected("Attempt to send on a closed protocol")

    consumer = ListenConsumer()
    consumer.scope, consumer.base_send = {"client": ("127.0.0.1", 5000)}, closed_protocol
    with caplog.at_level("INFO", logger="streams.consumers"):
        run(consumer.send_error("connection-failed", "The audio connection ended."))
    assert "127.0.0.1: the socket closed before a message could reach it" in caplog.text
