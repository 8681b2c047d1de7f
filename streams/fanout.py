"""A hub's send loop: each encoded packet goes once over the stream's listeners, and for each
one only what must be its own is done: its RTP header, its SRTP protection, one send.

aiortc still brings each listener's connection up (ICE, DTLS, SRTP keys) and keeps it (RTCP
sender and receiver reports, ICE consent); it only stops sending RTP itself: the track it is
given (`IdleTrack`) never yields a frame. Once the connection is up, `ListenerSender.connect`
takes the listener's SRTP session and socket from the peer (streams/rtcinternals.py, the one
place that knows aiortc's internals), and from then the hub's `push` sends to it directly:
no coroutine per listener wakes per packet, and nothing is allocated per listener that could
be shared.
"""
import asyncio
import secrets
import struct

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

RTP_VERSION_BYTE = 0x80  # version 2, no padding, no extension, no CSRC
RTP_HEADER = struct.Struct("!BBHII")
# Protected packets a listener's socket may hold unsent (the kernel's buffer is full: the
# listener's network is slower than the stream) before newer ones are dropped, as a bounded
# queue drops: 10 packets are 200 ms of sound.
MAX_UNSENT_PACKETS = 10


def rtp_header(payload_type, marker, sequence_number, timestamp, ssrc):
    """The 12-byte RTP header (RFC 3550, section 5.1) with no CSRC and no extension."""
    return RTP_HEADER.pack(RTP_VERSION_BYTE, (0x80 if marker else 0) | payload_type,
                           sequence_number & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc)


def continuing_offset(last_timestamp, frame_samples, next_pts):
    """The timestamp offset that makes a packet of pts `next_pts` follow `last_timestamp` by one
    frame: a listener moved to another hub hears one continuous RTP clock."""
    return (last_timestamp + frame_samples - next_pts) & 0xFFFFFFFF


class EncodedPacket:
    """One encoded frame as every listener of a hub gets it: `payload` bytes, its `pts` in the
    codec's clock, and `marker`: the first packet after a gap in the hub's timeline (a talkspurt
    after DTX silence, a device that came back), which RTP marks (RFC 3551, section 4.1)."""

    __slots__ = ("payload", "pts", "marker")

    def __init__(self, payload, pts, marker=False):
        self.payload = payload
        self.pts = pts
        self.marker = marker


class IdleTrack(MediaStreamTrack):
    """The track aiortc's sender is given: it never yields a frame, so aiortc sends no RTP of
    its own (the hub does) but runs the rest of the connection. Stopping it ends the sender."""

    kind = "audio"

    def __init__(self):
        super().__init__()
        self._stopped = asyncio.get_running_loop().create_future()

    async def recv(self):
        await asyncio.shield(self._stopped)
        raise MediaStreamError

    def stop(self):
        super().stop()
        if not self._stopped.done():
            self._stopped.set_result(None)


class ListenerSender:
    """One listener's RTP: its SSRC, sequence numbers and timestamps, its SRTP session, its
    socket. It is a hub's sink (`push`) from subscription on, and sends once connected."""

    def __init__(self, hub, on_switch=None):
        self.hub = hub
        self._on_switch = on_switch
        self._path = None  # rtcinternals.SendPath, once the connection is up
        self._sequence = secrets.randbits(16)
        self._offset = secrets.randbits(32)
        self._marker_next = True  # the listener's first packet starts its talkspurt
        self._successor = None  # the hub this listener moves to (the stream's settings changed)
        self.last_timestamp = None
        self.sent = 0
        self.dropped = 0
        self.stopped = False

    def connect(self, path):
        """Start sending on `path` (rtcinternals.send_path of the connected peer): from the next
        packet on, so the listener starts at the live edge."""
        self._path = path

    def push(self, packet):
        if self._path is None or self.stopped:
            return
        timestamp = (self._offset + packet.pts) & 0xFFFFFFFF
        marker = packet.marker or self._marker_next
        self._marker_next = False
        header = rtp_header(self._path.payload_type, marker, self._sequence, timestamp, self._path.ssrc)
        self._sequence = (self._sequence + 1) & 0xFFFF
        if self._path.send(header + packet.payload):
            self.sent += 1
            self.last_timestamp = timestamp
            self._path.report_sent(timestamp, len(packet.payload))
        else:
            self.dropped += 1

    def move_to(self, hub):
        """Go on with `hub`'s packets as soon as it has one; until then, with this hub's."""
        if self._successor is not None:
            self._successor.hub.unsubscribe(self._successor)
        self._successor = _Arrival(self, hub)
        hub.attach(self._successor)

    def _arrived(self, arrival, packet):
        """`arrival`'s hub has its first packet: leave the old hub and carry on from there."""
        self.hub.unsubscribe(self)
        self.hub, self._successor = arrival.hub, None
        arrival.hub.replace(arrival, self)
        if self.last_timestamp is not None:
            self._offset = continuing_offset(self.last_timestamp, arrival.hub.frame_samples, packet.pts)
        if self._on_switch:
            self._on_switch(arrival.hub)
        self.push(packet)

    def stop(self):
        if self.stopped:
            return
        self.stopped = True
        self.hub.unsubscribe(self)
        if self._successor is not None:
            self._successor.hub.unsubscribe(self._successor)
            self._successor = None


class _Arrival:
    """A listener's place in the hub it is moving to, until that hub's first packet."""

    def __init__(self, sender, hub):
        self.sender = sender
        self.hub = hub
        self.dropped = 0

    def push(self, packet):
        self.sender._arrived(self, packet)
