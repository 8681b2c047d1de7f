"""The aiortc/aioice internals behind streams/webrtc/rtcinternals.py, used between two real aiortc peers
on 127.0.0.1: if an upgrade moves or changes them, these tests fail, naming what moved."""
import asyncio
import re

import numpy as np
import pytest
from aiortc import RTCPeerConnection

from streams.webrtc import rtcinternals
from streams.audio.config import FRAME_SAMPLES, SAMPLE_RATE, StreamConfig
from streams.audio.encoders import create_encoder
from streams.audio.pacing import RealTimePacer
from streams.webrtc.fanout import EncodedPacket, ListenerSender
from tests.helpers import run
from tests.rigs.peer_pair import connected_pair
from tests.listener import dominant_frequency
from tests.waiting import until, until_awaited


class OneHub:
    """The least a ListenerSender needs of a hub."""

    frame_samples = FRAME_SAMPLES

    def unsubscribe(self, sink):
        pass


def tone_packets(count, frequency=440):
    encoder = create_encoder(StreamConfig(slug="internals", source="sine", codec="opus", channels=2))
    t = np.arange(count * FRAME_SAMPLES) / SAMPLE_RATE
    pcm = (np.sin(2 * np.pi * frequency * t) * 10000).astype(np.int16)
    pcm = np.repeat(pcm[:, None], 2, axis=1)
    packets = []
    for index in range(count):
        frame = pcm[index * FRAME_SAMPLES:(index + 1) * FRAME_SAMPLES]
        for encoded in encoder.encode(frame, index * FRAME_SAMPLES):
            packets.append(EncodedPacket(encoded.payload, encoded.timestamp))
    return packets


async def send_and_hear(count):
    server, client, sender, payload_type = await connected_pair()
    try:
        listener = ListenerSender(OneHub())
        listener.connect(rtcinternals.SendPath(sender, payload_type, max_unsent_bytes=65536))
        received = client.getTransceivers()[0].receiver
        frames = []

        async def receive():
            while True:
                frames.append(await received.track.recv())

        receiving = asyncio.ensure_future(receive())
        pacer = RealTimePacer("internals test")
        for packet in tone_packets(count):
            await pacer.wait()  # paced like a live stream, so the receiver's jitter buffer plays it all
            listener.push(packet)
        await until(lambda: len(frames) >= count * 0.9, 10, "frames decoded")
        reports = {}

        async def sender_report_arrived():
            reports.update({s.type: s for s in (await received.getStats()).values()})
            return "remote-outbound-rtp" in reports

        await until_awaited(sender_report_arrived, 5, "an RTCP sender report")
        receiving.cancel()
        return listener, frames, reports["remote-outbound-rtp"]
    finally:
        await client.close()
        await server.close()


def test_check_passes_on_the_installed_aiortc_and_names_a_version_it_was_not_written_for():
    rtcinternals.check()
    with pytest.raises(rtcinternals.MovedInternals, match="aiortc 2.0.0"):
        rtcinternals.check(aiortc_version="2.0.0")


def test_a_listener_sender_reaches_a_real_aiortc_receiver_and_its_sender_reports_count_it():
    listener, frames, report = run(send_and_hear(100))
    assert listener.sent == 100 and listener.dropped == 0
    pcm = np.concatenate([frame.to_ndarray().reshape(-1, 2) for frame in frames[10:]])
    assert abs(dominant_frequency(pcm[:, 0].astype(float), frames[0].sample_rate) - 440) <= 5
    # The RTCP sender report quotes the hub's packets, as aiortc's own RTP loop would have.
    # Without them it would quote 0 packets (aiortc's own RTP loop sends nothing here).
    assert 0 < report.packetsSent <= 100 and report.bytesSent > 0


def test_check_names_a_method_an_upgrade_removed(monkeypatch):
    from aiortc import RTCRtpSender

    monkeypatch.delattr(RTCRtpSender, "_run_rtcp")
    with pytest.raises(rtcinternals.MovedInternals, match="RTCRtpSender has no _run_rtcp"):
        rtcinternals.check()


def test_aioice_gathers_host_candidates_only_where_it_is_told():
    async def gathered(lookup):
        rtcinternals.gather_host_addresses(lookup)
        pc = RTCPeerConnection()
        try:
            pc.addTransceiver("audio")
            await pc.setLocalDescription(await pc.createOffer())
            return set(re.findall(r"a=candidate:\S+ 1 udp \d+ (\S+) ", pc.localDescription.sdp))
        finally:
            await pc.close()

    try:
        assert run(gathered(lambda use_ipv4, use_ipv6: ["127.0.0.1"])) == {"127.0.0.1"}
        assert "127.0.0.1" not in run(gathered(None))  # aioice's own lookup leaves loopback out
    finally:
        rtcinternals.gather_host_addresses(lambda use_ipv4, use_ipv6: ["127.0.0.1"])  # the suite's rule


def test_the_process_wide_settings_are_in_place_after_start_up():
    import aioice.ice
    import aiortc.clock
    import aiortc.rtcrtpsender

    from streams.webrtc import ice, rtpclock, rtphistory

    assert aioice.ice.CONSENT_FAILURES == ice.CONSENT_FAILURES
    assert aiortc.clock.current_ntp_time is rtpclock.current_ntp_time
    assert aiortc.rtcrtpsender.RTP_HISTORY_SIZE == rtphistory.AUDIO_RTP_HISTORY


def test_a_listener_whose_socket_holds_too_much_unsent_loses_packets_and_they_are_counted():
    """The kernel's buffer for a slow listener is full and asyncio holds what it could not send:
    past the bound the hub drops that listener's packets instead of queueing without end."""
    async def scenario():
        server, client, sender, payload_type = await connected_pair()
        try:
            path = rtcinternals.SendPath(sender, payload_type, max_unsent_bytes=1000)
            listener = ListenerSender(OneHub())
            listener.connect(path)
            transport = sender.transport.transport._connection._nominated[1].protocol.transport
            packets = tone_packets(4)
            listener.push(packets[0])
            transport.get_write_buffer_size = lambda: 5000  # as asyncio reports a socket it could not drain
            listener.push(packets[1])
            listener.push(packets[2])
            del transport.get_write_buffer_size
            listener.push(packets[3])
            return listener.sent, listener.dropped
        finally:
            await client.close()
            await server.close()

    assert run(scenario()) == (2, 2)


def test_check_names_a_global_the_library_no_longer_looks_up(monkeypatch):
    import aioice.ice

    def query_consent_without_the_global(self):
        return 6

    monkeypatch.setattr(aioice.ice.Connection, "query_consent", query_consent_without_the_global)
    with pytest.raises(rtcinternals.MovedInternals, match="no longer uses CONSENT_FAILURES"):
        rtcinternals.check()
