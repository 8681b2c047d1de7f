"""Two real aiortc peers on 127.0.0.1, connected in one event loop: a server side whose sender
carries an IdleTrack (so that the hub's send loop, streams/webrtc/fanout.py, sends its RTP) and a
receiving client. For tests of the send path without signaling or daphne."""
import re

from aiortc import RTCPeerConnection

from streams.webrtc import rtcinternals
from streams.webrtc.fanout import IdleTrack
from tests.waiting import until

MAX_UNSENT_BYTES = 65536


async def connected_pair():
    """(server pc, client pc, the server's RTCRtpSender, the Opus payload type), DTLS connected."""
    server, client = RTCPeerConnection(), RTCPeerConnection()
    transceiver = server.addTransceiver(IdleTrack(), direction="sendonly")
    client.addTransceiver("audio", direction="recvonly")
    await client.setLocalDescription(await client.createOffer())
    await server.setRemoteDescription(client.localDescription)
    await server.setLocalDescription(await server.createAnswer())
    await client.setRemoteDescription(server.localDescription)
    await until(lambda: transceiver.sender.transport.state == "connected", 10, "DTLS connected")
    payload_type = int(re.search(r"a=rtpmap:(\d+) opus/48000", server.localDescription.sdp).group(1))
    return server, client, transceiver.sender, payload_type


def send_path(sender, payload_type, max_unsent_bytes=MAX_UNSENT_BYTES):
    return rtcinternals.SendPath(sender, payload_type, max_unsent_bytes)
