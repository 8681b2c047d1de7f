"""End to end with the real parts: daphne in a subprocess, aiortc listeners that decode and FFT."""
import asyncio
import json

import numpy as np
import pytest
import websockets

from streams.webrtc import sdp
from tests.helpers import make_profile, run
from tests.listener import Listener, connect_like_a_browser, dominant_frequency
from tests.opus_bitstream import toc
from tests.waiting import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

CASES = {
    "opus-stereo": dict(codec="opus", channels=2, sine_frequency=440, sine_frequency_right=660),
    "opus-mono": dict(codec="opus", channels=1, sine_frequency=523, audio_bitrate=48000),
    "pcmu": dict(codec="pcmu", channels=1, sine_frequency=700, audio_bitrate=64000),
    "pcma": dict(codec="pcma", channels=1, sine_frequency=900, audio_bitrate=64000),
    "g722": dict(codec="g722", channels=1, sine_frequency=1200, audio_bitrate=64000),
}


# What aiortc decodes each encoding to. (G.722's RTP clock is 8000, its audio 16 kHz: RFC 3551.)
DECODED_RATES = {"opus": 48_000, "PCMU": 8_000, "PCMA": 8_000, "G722": 16_000}
SINE_RMS_DBFS = 20 * np.log10(0.5 / np.sqrt(2))  # the profile's sine is at half full scale: -9.03 dBFS


async def hear(server, slug, seconds=2.0):
    listener = Listener(server.ws_url(slug))
    try:
        await listener.connect()
        return await listener.listen_for(seconds)
    finally:
        await listener.close()


async def hear_and_look(server, slug, seconds):
    """What a listener hears, and the server's hubs of `slug` (status.json) while it listens."""
    listener = Listener(server.ws_url(slug))
    try:
        await listener.connect()
        heard = await listener.listen_for(seconds)
        status = await asyncio.to_thread(server.status)
        return heard, [hub for hub in status["hubs"] if hub["slug"] == slug]
    finally:
        await listener.close()


def steady_part(heard):
    """The decoded audio minus its first 200 ms (decoder start-up)."""
    return heard.samples()[int(0.2 * heard.sample_rate):]


def answered_format(answer_sdp):
    """(encoding name, channels) of the one codec the answer gives the listener. Opus's rtpmap is
    always opus/48000/2 (RFC 7587): its sprop-stereo says whether the server sends stereo."""
    rtpmaps = [line.split(" ", 1)[1].split("/") for line in answer_sdp.splitlines() if line.startswith("a=rtpmap:")]
    assert len(rtpmaps) == 1, f"the answer offers {len(rtpmaps)} codecs"
    name, *rest = rtpmaps[0]
    if name == "opus":
        return name, 2 if sdp.codec_fmtp(answer_sdp, "opus").get("sprop-stereo") == "1" else 1
    return name, int(rest[1]) if len(rest) > 1 else 1


def assert_a_clean_tone(samples, sample_rate, hz, what):
    """`samples` are the profile's sine of `hz`: that frequency, the sine's level, and nearly all
    the energy in it (a garbled decode, a wrong codec or a wrong rate spreads it elsewhere)."""
    signal = samples.astype(np.float64)
    found = dominant_frequency(signal, sample_rate)
    assert abs(found - hz) <= 5, f"{what}: heard {found:.1f} Hz, not {hz} Hz"
    level = 20 * np.log10(np.sqrt(np.mean(signal ** 2)) / 32768)
    assert abs(level - SINE_RMS_DBFS) <= 1, f"{what}: {level:.1f} dBFS RMS, not {SINE_RMS_DBFS:.1f}"
    power = np.abs(np.fft.rfft((signal - signal.mean()) * np.hanning(len(signal)))) ** 2
    near = np.abs(np.fft.rfftfreq(len(signal), 1 / sample_rate) - hz) <= 20
    share = power[near].sum() / power.sum()
    assert share >= 0.99, f"{what}: only {share:.1%} of the energy within 20 Hz of {hz} Hz"


@pytest.mark.parametrize("case", list(CASES))
def test_listener_hears_the_profiles_tone_on_every_channel_the_answer_gives(server, case):
    profile = make_profile(case, **CASES[case])
    heard = run(hear(server, case))
    encoding, channels = answered_format(heard.answer_sdp)
    # The listener asked for stereo (as the page does): nothing narrows the profile's own layout.
    assert (encoding, channels) == (sdp.ENCODING_NAMES[profile.codec], profile.channels)
    assert heard.sample_rate == DECODED_RATES[encoding]
    samples = steady_part(heard)
    assert len(samples) >= 1.5 * heard.sample_rate
    if channels == 1:  # aiortc decodes Opus to two channels: a mono stream's are identical
        assert all(np.array_equal(samples[:, 0], samples[:, c]) for c in range(heard.channels))
    else:
        assert heard.channels == 2
    tones = [profile.sine_frequency, profile.sine_frequency_right or profile.sine_frequency][:channels]
    for channel, hz in enumerate(tones):
        assert_a_clean_tone(samples[:, channel], heard.sample_rate, hz, f"channel {channel}")


@pytest.mark.parametrize("case", list(CASES))
def test_the_server_encodes_and_sends_what_the_answer_says(server, case):
    make_profile(case, **CASES[case])
    heard, hubs = run(hear_and_look(server, case, seconds=0.5))
    encoding, channels = answered_format(heard.answer_sdp)
    [hub] = hubs
    assert (sdp.ENCODING_NAMES[hub["codec"]], hub["channels"]) == (encoding, channels)
    payloads = [packet[3] for packet in heard.packets]
    assert len(payloads) >= 20
    if encoding == "opus":  # every packet's TOC byte says mono or stereo
        assert {toc(payload)[1] for payload in payloads} == {channels == 2}
    else:  # 20 ms: 160 bytes a channel (8 bits at 8 kHz; G.722: 4 bits at 16 kHz)
        assert {len(payload) for payload in payloads} == {160 * channels}


@pytest.mark.parametrize("case", list(CASES))
def test_answer_carries_the_profiles_fmtp_and_bandwidth(server, case):
    profile = make_profile(case, **CASES[case])
    heard = run(hear(server, case, seconds=0.2))
    name = sdp.ENCODING_NAMES[profile.codec]
    _, sections = sdp._split(heard.answer_sdp)
    assert f"b=AS:{profile.answer_bandwidth_kbps()}" in sections[0]
    assert sdp.payload_types(sections[0], name), f"answer does not use {name}"
    fmtp = sdp.codec_fmtp(heard.answer_sdp, name)
    assert fmtp == {**fmtp, **profile.answer_fmtp()}


def test_five_listeners_hear_the_tone_and_leave_no_peers(server):
    make_profile("five", sine_frequency=1000)

    async def scenario():
        listeners = [Listener(server.ws_url("five")) for _ in range(5)]
        await asyncio.gather(*(listener.connect() for listener in listeners))
        assert (await asyncio.to_thread(server.status))["peers"] == 5
        heard = await asyncio.gather(*(listener.listen_for(2.0) for listener in listeners))
        await asyncio.gather(*(listener.close() for listener in listeners))
        return heard

    for heard in run(scenario()):
        assert abs(dominant_frequency(steady_part(heard)[:, 0], heard.sample_rate) - 1000) <= 5
    status = wait_for(lambda: (s := server.status())["peers"] == 0 and not s["hubs"] and s, 10, "peers to close")
    assert (status["peers"], status["hubs"]) == (0, [])


async def send_garbage(server, slug):
    """Malformed, oversized, binary and out-of-order messages on other sockets."""
    replies = []
    messages = ["{nope", "[]", '{"type": "answer", "sdp": "v=0"}', json.dumps({"type": "offer", "sdp": "x" * 70_000}),
                b"\xff\x00", '{"type": "offer", "sdp": "v=0\\r\\nm=audio 9 RTP/AVP 0\\r\\n"}']
    for _ in range(3):
        for message in messages:  # a socket each: daphne closes a socket whose message is over 64 KiB
            async with connect_like_a_browser(server.ws_url(slug)) as ws:
                await ws.send(message)
                try:
                    replies.append(json.loads(await ws.recv()))
                except websockets.ConnectionClosed as closed:
                    replies.append({"type": "error", "code": f"closed-{closed.rcvd.code}"})
    async with connect_like_a_browser(server.ws_url("no-such-stream")) as ws:
        replies.append(json.loads(await ws.recv()))
    return replies


@pytest.mark.times_sound  # its listener may have no gap of 100 ms: run alone (180 ms seen beside other tests)
def test_bad_input_on_other_sockets_leaves_a_listener_without_gaps(server):
    make_profile("steady", sine_frequency=440)

    async def scenario():
        listener = Listener(server.ws_url("steady"))
        await listener.connect()
        await listener.listen_for(0.5)
        start = len(listener.heard.chunks)
        replies = await send_garbage(server, "steady")
        await listener.listen_for(listener.heard.seconds() + 1.0)
        await listener.close()
        return listener.heard, start, replies

    heard, start, replies = run(scenario())
    assert all(reply["type"] == "error" for reply in replies)
    assert {reply["code"] for reply in replies} >= {
        "invalid-json", "missing-type", "unknown-type", "closed-1009", "not-text", "profile-not-found"
    }
    arrivals = np.array([t for t, _ in heard.chunks[start:]])
    assert np.max(np.diff(arrivals)) < 0.100
    assert abs(dominant_frequency(steady_part(heard)[:, 0], heard.sample_rate) - 440) <= 5
