"""A hub's send loop: each encoded packet goes once over the stream's listeners, and for each
one only what must be its own is done: its RTP header, its SRTP protection, one send.

aiortc still brings each listener's connection up (ICE, DTLS, SRTP keys) and keeps it (RTCP
sender and receiver reports, ICE consent); it only stops sending RTP itself: the track it is
given (`IdleTrack`) never yields a frame. Once the connection is up, `ListenerSender.connect`
takes the listener's SRTP session and socket from the peer (streams/webrtc/rtcinternals.py, the one
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
    socket. It is a hub's sink (`push`) from subscription on, and sends once connected.

    When the operator changes the stream's settings (same codec), the listener moves to the
    new settings' hub: after `handover(successor)` this sender goes on with its hub's packets
    until the successor's hub has its first one; the successor then takes over the path, the
    sequence numbers and the RTP clock (re-based to run on from the last timestamp sent), so
    the listener hears one continuous stream, with no gap while the new hub starts.
    """

    def __init__(self, hub):
        self.hub = hub
        self._path = None  # rtcinternals.SendPath, once the connection is up
        self._sequence = secrets.randbits(16)
        self._offset = secrets.randbits(32)
        self._marker_next = True  # the listener's first packet starts its talkspurt
        self._successor = None
        self._predecessor = None
        self._retired = False  # handed over: the successor sends now
        self._last_packet = None
        self.last_timestamp = None
        self.sent = 0
        self.dropped = 0
        self.readyState = "live"

    def connect(self, path):
        """Start sending on `path` (rtcinternals.SendPath of the connected peer), from the next
        packet on: a listener starts at the live edge."""
        self._path = path

    def push(self, packet):
        if self._retired or self.readyState != "live":
            return
        if self._predecessor is not None and self._take_over(packet):
            return
        self._last_packet = packet
        if self._path is None:
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

    def handover(self, successor):
        """Move to `successor`'s hub as soon as it has sound (see the class notes)."""
        successor._predecessor = self
        self._successor = successor

    def _take_over(self, packet):
        """Carry on from the predecessor; True when it has already sent `packet` (both listened
        to the same hub: a stream at its most variants gives the closest one)."""
        before, self._predecessor = self._predecessor, None
        before._retired = True
        before.hub.unsubscribe(before)
        if before._path is None:  # it never connected: this sender waits for its own connect
            return False
        self._path, self._sequence, self._marker_next = before._path, before._sequence, before._marker_next
        if before.hub is self.hub:
            self._offset, self.last_timestamp = before._offset, before.last_timestamp
            return before._last_packet is packet
        if before.last_timestamp is not None:  # its last packet lasts a frame of its own hub (10 or 20 ms)
            self._offset = continuing_offset(before.last_timestamp, before.hub.frame_samples, packet.pts)
        return False

    def stop(self):
        if self.readyState != "live":
            return
        self.readyState = "ended"
        self.hub.unsubscribe(self)
        for neighbour in (self._successor, self._predecessor):  # the peer closed mid-handover
            if neighbour is not None:
                neighbour.stop()
