"""A real WebRTC listener for tests and benchmarks: an aiortc peer that signals over the
project's WebSocket protocol, receives the audio, decodes it and keeps the samples."""
import asyncio
import json
from dataclasses import dataclass, field

import numpy as np
import websockets
from aiortc import RTCConfiguration, RTCIceTransportPolicy, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from streams.webrtc import rtcinternals, sdp
from tests.waiting import until


def connect_like_a_browser(ws_url, ssl=None):
    """Open a signaling socket with the Origin header a browser on that page would send."""
    origin = "http" + ws_url[2:].split("/ws/", 1)[0]
    return websockets.connect(ws_url, origin=origin, max_size=None, ssl=ssl)


@dataclass
class Heard:
    answer_sdp: str = ""
    messages: list = field(default_factory=list)
    chunks: list = field(default_factory=list)  # (arrival time, int16 array of shape (n, channels))
    packets: list = field(default_factory=list)  # (arrival ms, sequence number, RTP timestamp, payload, marker)
    sample_rate: int = 0
    channels: int = 0

    def samples(self):
        if not self.chunks:
            return np.zeros((0, max(self.channels, 1)), dtype=np.int16)
        return np.concatenate([chunk for _, chunk in self.chunks])

    def seconds(self):
        return len(self.samples()) / self.sample_rate if self.sample_rate else 0.0


def ask_for_stereo(offer):
    """What the listener page does to its offer: browsers decode stereo only when they asked for it."""
    return sdp.set_codec_fmtp(offer, "opus", {"stereo": "1"})


class Listener:
    """Connect, negotiate, collect decoded audio (and the RTP packets) until told to stop."""

    def __init__(self, ws_url, offer_edit=ask_for_stereo, ssl=None, ice_servers=(), relay_only=False):
        """`ice_servers`: RTCIceServer list; `relay_only`: gather and use TURN relay candidates
        only, like a listener that can reach the server only through its TURN relay."""
        self.ws_url = ws_url
        self.offer_edit = offer_edit
        self.ssl = ssl
        self.heard = Heard()
        policy = RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=list(ice_servers), iceTransportPolicy=policy))
        self._ws = None
        self._receiving = None
        self._messages_task = None

    async def connect(self, timeout=15):
        self._ws = await connect_like_a_browser(self.ws_url, self.ssl)
        transceiver = self.pc.addTransceiver("audio", direction="recvonly")
        self._record_rtp(transceiver.receiver)
        self.pc.on("track", lambda track: self._start_receiving(track))
        await self.pc.setLocalDescription(await self.pc.createOffer())
        await self._ws.send(json.dumps({"type": "offer", "sdp": self.offer_edit(self.pc.localDescription.sdp)}))
        async with asyncio.timeout(timeout):
            while True:
                message = json.loads(await self._ws.recv())
                self.heard.messages.append(message)
                if message["type"] == "answer":
                    break
                if message["type"] == "error":
                    raise ConnectionError(f"{message['code']}: {message['message']}")
        self.heard.answer_sdp = message["sdp"]
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=message["sdp"], type="answer"))
        self._messages_task = asyncio.create_task(self._collect_messages())

    def _record_rtp(self, receiver):
        async def recording(packet, arrival_time_ms):
            self.heard.packets.append((arrival_time_ms, packet.sequence_number, packet.timestamp, bytes(packet.payload),
                                       packet.marker))
            return True  # and on to the decoder

        rtcinternals.on_received_rtp(receiver, recording)  # aiortc has no public hook for received packets

    def _start_receiving(self, track):
        self._receiving = asyncio.create_task(self._receive(track))

    async def _receive(self, track):
        loop = asyncio.get_running_loop()
        try:
            while True:
                frame = await track.recv()
                channels = len(frame.layout.channels)
                self.heard.sample_rate, self.heard.channels = frame.sample_rate, channels
                self.heard.chunks.append((loop.time(), frame.to_ndarray().reshape(-1, channels)))
        except MediaStreamError:
            pass

    async def _collect_messages(self):
        try:
            async for raw in self._ws:
                self.heard.messages.append(json.loads(raw))
        except websockets.ConnectionClosed:
            pass

    async def listen_for(self, seconds, timeout=20):
        """Wait until `seconds` of audio have been decoded."""
        await until(lambda: self.heard.seconds() >= seconds, timeout, f"{seconds} s of decoded audio")
        return self.heard

    async def record(self, seconds, timeout=None):
        """The RTP packets and decoded samples of the next `seconds` (by this loop's clock)."""
        loop = asyncio.get_running_loop()
        heard, start = self.heard, loop.time()
        first_packet, first_chunk = len(heard.packets), len(heard.chunks)
        await until(lambda: loop.time() - start >= seconds, timeout or seconds + 10, f"{seconds} s of the stream")
        chunks = [chunk for _, chunk in heard.chunks[first_chunk:]]
        samples = np.concatenate(chunks) if chunks else np.zeros((0, max(heard.channels, 1)), dtype=np.int16)
        return heard.packets[first_packet:], samples

    async def __aenter__(self):
        await self.connect()
        return self

    async def __aexit__(self, *exc_info):
        await self.close()

    async def close(self):
        for task in (self._receiving, self._messages_task):
            if task:
                task.cancel()
        await self.pc.close()
        if self._ws is not None:
            await self._ws.close()


def dominant_frequency(samples, sample_rate):
    """The strongest frequency in a mono signal, by FFT with a Hann window (bin width = 1/duration)."""
    signal = samples.astype(np.float64)
    signal = signal - signal.mean()
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal))))
    return np.fft.rfftfreq(len(signal), 1 / sample_rate)[np.argmax(spectrum)]
