"""Interop with another WebRTC stack: GStreamer's webrtcbin (Debian 12's 1.22) as a listener.

webrtcbin before 1.28 makes an RSA certificate, and aiortc's DTLS client offers only
ECDHE-ECDSA suites: with the server as the DTLS client they share no cipher. The server takes
the DTLS server role when the offer lets it (streams/webrtc/dtls.py), so these listeners connect.
Each one speaks the project's WebSocket protocol (tests/rigs/gstreamer.py), decodes with
GStreamer's own depayloaders and decoders, and the test checks the tones and the rates.
"""
import asyncio
import re

import pytest

from streams.webrtc import sdp
from tests.helpers import make_profile, run
from tests.listener import dominant_frequency
from tests.rigs.gstreamer import GStreamerListener
from tests.waiting import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

CLOSE_CONNECTION_FAILED = 4410


def steady(listener, seconds=1.0):
    """The last `seconds` of what the listener decoded (past decoder start-up)."""
    samples = listener.samples()
    return samples[-int(seconds * listener.decoding["rate"]):]


def tone(listener, channel=0):
    return dominant_frequency(steady(listener)[:, channel], listener.decoding["rate"])


def test_gstreamer_hears_stereo_opus_with_each_channel_its_tone_and_no_loss(server, tmp_path):
    make_profile("gst-stereo", codec="opus", channels=2, sine_frequency=440, sine_frequency_right=660)

    async def scenario():
        async with GStreamerListener(server.ws_url("gst-stereo"), tmp_path) as listener:
            await listener.hear(2.5)
            return listener, await listener.inbound_rtp()

    listener, inbound = run(scenario())
    assert "a=setup:passive" in listener.answer_sdp.splitlines(), "the server should be the DTLS server"
    assert listener.decoding["rtp"]["encoding-name"] == "OPUS"
    assert (listener.decoding["rate"], listener.decoding["channels"]) == (48000, 2)
    assert abs(tone(listener, 0) - 440) <= 2
    assert abs(tone(listener, 1) - 660) <= 2
    assert inbound["packets-received"] >= 100  # 2.5 s of 20 ms packets
    assert inbound["packets-lost"] == 0


def test_gstreamer_hears_mono_opus(server, tmp_path):
    make_profile("gst-mono", codec="opus", channels=1, sine_frequency=523, audio_bitrate=48000)

    async def scenario():
        async with GStreamerListener(server.ws_url("gst-mono"), tmp_path, mono=True) as listener:
            await listener.hear(2.0)
            return listener

    listener = run(scenario())
    assert sdp.codec_fmtp(listener.answer_sdp, "opus")["sprop-stereo"] == "0"
    assert (listener.decoding["rate"], listener.decoding["channels"]) == (48000, 1)
    assert abs(tone(listener) - 523) <= 2


FIXED_RATE = {
    # codec: (RTP encoding name, RTP clock rate, decoded rate, tone)
    "pcmu": ("PCMU", 8000, 8000, 700),
    "pcma": ("PCMA", 8000, 8000, 900),
    "g722": ("G722", 8000, 16000, 1200),  # G.722 samples at 16 kHz; its RTP clock says 8000 (RFC 3551)
}


@pytest.mark.parametrize("codec", list(FIXED_RATE))
def test_gstreamer_hears_g711_and_g722_at_their_own_rates(server, tmp_path, codec):
    name, clock_rate, rate, frequency = FIXED_RATE[codec]
    make_profile(f"gst-{codec}", codec=codec, channels=1, sine_frequency=frequency, audio_bitrate=64000)

    async def scenario():
        async with GStreamerListener(server.ws_url(f"gst-{codec}"), tmp_path) as listener:
            await listener.hear(2.0)
            return listener

    listener = run(scenario())
    rtp = listener.decoding["rtp"]
    assert (rtp["encoding-name"], rtp["clock-rate"]) == (name, clock_rate)
    assert (listener.decoding["rate"], listener.decoding["channels"]) == (rate, 1)
    assert abs(tone(listener) - frequency) <= 2


def test_three_gstreamer_listeners_at_once(server, tmp_path):
    make_profile("gst-three", codec="opus", channels=2, sine_frequency=440, sine_frequency_right=660)

    async def scenario():
        listeners = [GStreamerListener(server.ws_url("gst-three"), tmp_path) for _ in range(3)]
        try:
            await asyncio.gather(*(listener.connect() for listener in listeners))
            await asyncio.gather(*(listener.hear(2.0) for listener in listeners))
            peers = (await asyncio.to_thread(server.status))["connected_peers"]
            return listeners, peers, [await listener.inbound_rtp() for listener in listeners]
        finally:
            await asyncio.gather(*(listener.close() for listener in listeners))

    listeners, peers, inbound = run(scenario())
    assert peers == 3
    for listener, stats in zip(listeners, inbound):
        assert abs(tone(listener, 0) - 440) <= 2
        assert abs(tone(listener, 1) - 660) <= 2
        assert stats["packets-lost"] == 0
    wait_for(lambda: server.status()["peers"] == 0, 10, "the server to close the three peers")


def test_a_dtls_failure_with_gstreamer_is_logged_with_the_openssl_reason(server, tmp_path):
    """An offer that insists on a=setup:passive makes the server the DTLS client again: its
    ECDHE-ECDSA-only hello meets GStreamer's RSA certificate, which is the failure this fixes.
    The listener is told why, closed with 4410, and the log says why."""
    make_profile("gst-dtls")
    as_passive = lambda offer: offer.replace("a=setup:actpass", "a=setup:passive")  # noqa: E731

    async def scenario():
        async with GStreamerListener(server.ws_url("gst-dtls"), tmp_path, offer_edit=as_passive) as listener:
            await listener.closed(15)
            return listener

    listener = run(scenario())
    reason = "DTLS handshake failed: tls alert handshake failure (this server was the DTLS client)"
    assert "a=setup:active" in listener.answer_sdp.splitlines()
    assert listener.close_code == CLOSE_CONNECTION_FAILED
    assert listener.messages[-1] == {"type": "error", "code": "connection-failed",
                                     "message": f"The audio connection failed ({reason})."}
    assert any("dtlsdec" in problem.get("error", "") for problem in listener.problems())
    logged = wait_for(lambda: re.findall(r"<listener gst-dtls/\w+>: connection failed or consent expired; "
                                         r"closing \((.*)\)\n", server.log()), 5, "the log line")
    assert logged == [reason]
