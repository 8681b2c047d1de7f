"""Encode once, fan out: what listeners receive over daphne, compared packet by packet."""
import asyncio

import pytest

from streams.webrtc import sdp
from tests import signals
from tests.conftest import MONITOR
from tests.helpers import assert_same_packets, make_profile, run
from tests.listener import Listener
from tests.opus_bitstream import toc
from tests.waiting import until

pytestmark = pytest.mark.django_db(transaction=True)


def received_bitrate(packets, skip_seconds=0.5):
    """Payload bit/s of the packets (20 ms each: no DTX here), after the first skip_seconds. Per
    packet rather than over the RTP span: a device stream's timeline may jump over frames dropped
    when the server was held up, and those are not the encoder's doing."""
    steady = packets[int(skip_seconds * 50):]
    return sum(len(p[3]) for p in steady) * 8 / (len(steady) * 0.02)


async def until_packets(listeners, count, timeout=20):
    await until(lambda: min(len(listener.heard.packets) for listener in listeners) >= count, timeout,
                f"{count} packets at every listener")


def test_two_listeners_of_one_profile_receive_the_same_packet_bytes(server):
    make_profile("shared", sine_frequency=440)

    async def scenario():
        first = Listener(server.ws_url("shared"))
        await first.connect()
        await until_packets([first], 25)
        second = Listener(server.ws_url("shared"))
        await second.connect()
        await until_packets([second], 100)
        await asyncio.gather(first.close(), second.close())
        return first.heard.packets, second.heard.packets

    assert_same_packets(*run(scenario()), at_least=90)


def limit_offer(max_average_bitrate):
    """An offer like a phone's that wants mono at a lower bitrate (no stereo=1)."""
    return lambda offer: sdp.set_codec_fmtp(offer, "opus", {"maxaveragebitrate": str(max_average_bitrate)})


def test_a_listener_asking_for_32_kbps_mono_gets_a_shared_variant(server):
    make_profile("variants", sine_frequency=440, audio_bitrate=96_000)

    async def scenario():
        stereo = Listener(server.ws_url("variants"))
        phones = [Listener(server.ws_url("variants"), offer_edit=limit_offer(32_000)) for _ in range(2)]
        for listener in [stereo, *phones]:
            await listener.connect()
        await until_packets([stereo, *phones], 150)
        status = await asyncio.to_thread(server.status)
        await asyncio.gather(*(listener.close() for listener in [stereo, *phones]))
        return stereo, phones, status

    stereo, phones, status = run(scenario())
    assert sorted(hub["listeners"] for hub in status["hubs"] if hub["slug"] == "variants") == [1, 2]
    for phone in phones:
        fmtp = sdp.codec_fmtp(phone.heard.answer_sdp, "opus")
        assert (fmtp["maxaveragebitrate"], fmtp["stereo"]) == ("32000", "0")
        assert not any(toc(p[3])[1] for p in phone.heard.packets)  # mono Opus
        assert received_bitrate(phone.heard.packets) == pytest.approx(32_000, rel=0.15)
    assert_same_packets(phones[0].heard.packets, phones[1].heard.packets, at_least=100)
    assert sdp.codec_fmtp(stereo.heard.answer_sdp, "opus")["stereo"] == "1"
    assert all(toc(p[3])[1] for p in stereo.heard.packets)  # stereo Opus


BITRATE_CASES = {
    "vbr-32k": dict(audio_bitrate=32_000),
    "vbr-64k": dict(audio_bitrate=64_000),
    "vbr-96k": dict(audio_bitrate=96_000),
    "vbr-128k": dict(audio_bitrate=128_000),
    "cbr-64k": dict(audio_bitrate=64_000, opus_cbr=True),
}


def test_received_opus_bitrate_follows_each_profile_on_music(capture_server, pulse):
    for slug, fields in BITRATE_CASES.items():
        make_profile(slug, source="device", device_name=MONITOR, opus_dtx=False, **fields)
    player = pulse.play_samples(signals.music_like(30))

    async def scenario():
        listeners = {slug: Listener(capture_server.ws_url(slug)) for slug in BITRATE_CASES}
        await asyncio.gather(*(listener.connect() for listener in listeners.values()))
        await until_packets(list(listeners.values()), 250)
        await asyncio.gather(*(listener.close() for listener in listeners.values()))
        return {slug: listener.heard.packets for slug, listener in listeners.items()}

    try:
        received = run(scenario())
    finally:
        player.terminate()
    for slug, fields in BITRATE_CASES.items():
        tolerance = 0.05 if fields.get("opus_cbr") else 0.15
        measured = received_bitrate(received[slug])
        assert measured == pytest.approx(fields["audio_bitrate"], rel=tolerance), f"{slug}: {measured:.0f} bit/s"
    assert len({len(p[3]) for p in received["cbr-64k"][25:]}) == 1
