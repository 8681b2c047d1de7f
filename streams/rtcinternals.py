"""aiortc's and aioice's internals that RTC Caster relies on, behind one door.

aiortc has no public API for sending RTP that a peer did not produce itself. The hub's send
loop (streams/fanout.py) needs, per connected listener:
- its SRTP session: `RTCDtlsTransport._tx_srtp` (a pylibsrtp Session);
- its socket: the aioice `Connection` behind `RTCIceTransport._connection`, whose nominated
  candidate pair (`_nominated[1]`) holds the datagram transport and the listener's address;
- its SSRC: `RTCRtpSender._ssrc`;
- the figures its RTCP sender reports quote: the name-mangled `RTCRtpSender.__ntp_timestamp`,
  `__rtp_timestamp`, `__packet_count` and `__octet_count`, which aiortc's own RTP loop would
  have set.
`check()` runs at start-up and fails loudly if an aiortc or aioice upgrade moved any of them;
tests/test_rtcinternals.py sends through them between two real peers.
"""
import aioice
import aioice.ice
import aiortc
from aiortc import RTCRtpSender
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcicetransport import RTCIceTransport

from .rtpclock import current_ntp_time

TESTED_WITH = {"aiortc": "1.16.", "aioice": "0.13."}
_SENDER = "_RTCRtpSender__"
SENDER_REPORT_FIELDS = ("ntp_timestamp", "rtp_timestamp", "packet_count", "octet_count")


class MovedInternals(RuntimeError):
    pass


def check(aiortc_version=aiortc.__version__, aioice_version=aioice.__version__):
    """Raise MovedInternals naming what changed, if this aiortc/aioice is not the one these
    internals were read from, or a class no longer has what is used here."""
    for name, version in (("aiortc", aiortc_version), ("aioice", aioice_version)):
        if not version.startswith(TESTED_WITH[name]):
            raise MovedInternals(
                f"{name} {version} is installed, but streams/rtcinternals.py was written against "
                f"{TESTED_WITH[name]}x: check its internals (tests/test_rtcinternals.py) and update TESTED_WITH."
            )
    for cls, names in ((RTCRtpSender, ("_run_rtp", "_run_rtcp")), (RTCDtlsTransport, ("_send_rtp",)),
                       (aioice.ice.Connection, ("sendto",))):
        for name in names:
            if not hasattr(cls, name):
                raise MovedInternals(f"{cls.__module__}.{cls.__name__} has no {name} any more: see streams/rtcinternals.py")
    _ = RTCIceTransport  # its `_connection` is set per instance: checked by SendPath


def unsent_bytes(transport):
    """Bytes a datagram transport holds unsent; a TURN relay's transport keeps none of its own."""
    size = getattr(transport, "get_write_buffer_size", None)
    return size() if size else 0


class SendPath:
    """Where one connected listener's RTP goes, taken from its aiortc sender once."""

    def __init__(self, sender, payload_type, max_unsent_bytes):
        dtls = sender.transport
        if dtls.state != "connected":
            raise ConnectionError(f"the listener's DTLS transport is {dtls.state}, not connected")
        self._sender = sender
        self.ssrc = sender._ssrc
        self.payload_type = payload_type
        self._protect = dtls._tx_srtp.protect
        self._connection = dtls.transport._connection
        self._max_unsent_bytes = max_unsent_bytes
        for field in SENDER_REPORT_FIELDS:
            if not hasattr(sender, _SENDER + field):
                raise MovedInternals(f"RTCRtpSender has no {field} for its sender reports any more")

    def send(self, packet):
        """Protect and send one RTP packet; False when it was dropped (connection gone, or the
        listener's socket still holds `max_unsent_bytes` it could not send)."""
        pair = self._connection._nominated.get(1)
        if pair is None:
            return False
        transport = pair.protocol.transport
        if transport is None or unsent_bytes(transport) > self._max_unsent_bytes:
            return False
        transport.sendto(self._protect(packet), pair.remote_addr)
        return True

    def report_sent(self, timestamp, payload_bytes):
        """What aiortc's RTP loop would note for the next RTCP sender report."""
        sender = self._sender
        sender._RTCRtpSender__ntp_timestamp = current_ntp_time()
        sender._RTCRtpSender__rtp_timestamp = timestamp
        sender._RTCRtpSender__packet_count += 1
        sender._RTCRtpSender__octet_count += payload_bytes
