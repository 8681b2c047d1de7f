"""aiortc's and aioice's internals that RTC Caster relies on, behind one door: nothing else in
the project touches a private attribute or replaces a module global of theirs.

Process-wide, applied once at start-up (`apply`, from streams/apps.py):
- `aioice.ice.get_host_addresses`, looked up per gathering: replaced to gather only the
  addresses RTC_ICE_ADDRESSES names (the policy is streams/webrtc/ice.py's);
- `aioice.ice.CONSENT_FAILURES`: consent expiry like RFC 7675 (streams/webrtc/ice.py);
- `aiortc.clock.current_ntp_time`, looked up per call: a cheaper clock (streams/webrtc/rtpclock.py);
- `aiortc.rtcrtpsender.RTP_HISTORY_SIZE`: no retransmission history (streams/webrtc/rtphistory.py).

Per DTLS transport (streams/webrtc/dtls.py): its role (`_set_role`, `_role`), its pyOpenSSL
connection (`_ssl`) and its debug log (`__log_debug`), where aiortc says why a handshake failed.

Per received track, for the test and benchmark listeners: `RTCRtpReceiver._handle_rtp_packet`.

aiortc has no public API for sending RTP that a peer did not produce itself. The hub's send
loop (streams/webrtc/fanout.py) needs, per connected listener:
- its SRTP session: `RTCDtlsTransport._tx_srtp` (a pylibsrtp Session);
- its socket: the aioice `Connection` behind `RTCIceTransport._connection`, whose nominated
  candidate pair (`_nominated[1]`) holds the datagram transport and the listener's address;
- its SSRC: `RTCRtpSender._ssrc`;
- the figures its RTCP sender reports quote: the name-mangled `RTCRtpSender.__ntp_timestamp`,
  `__rtp_timestamp`, `__packet_count` and `__octet_count`, which aiortc's own RTP loop would
  have set.
`check()` runs at start-up and fails loudly if an aiortc or aioice upgrade moved any of them;
tests/test_rtcinternals.py checks that each still takes effect (two real peers where it can).
"""
import aioice
import aioice.ice
import aiortc
import aiortc.clock
import aiortc.rtcrtpsender
from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc.rtcdtlstransport import RTCDtlsTransport

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
                f"{name} {version} is installed, but streams/webrtc/rtcinternals.py was written against "
                f"{TESTED_WITH[name]}x: check its internals (tests/test_rtcinternals.py) and update TESTED_WITH."
            )
    for cls, names in ((RTCRtpSender, ("_run_rtp", "_run_rtcp")), (RTCDtlsTransport, ("_send_rtp", "_set_role")),
                       (aioice.ice.Connection, ("sendto",)), (RTCRtpReceiver, ("_handle_rtp_packet",))):
        for name in names:
            if not hasattr(cls, name):
                raise MovedInternals(f"{cls.__module__}.{cls.__name__} has no {name} any more: see streams/webrtc/rtcinternals.py")
    # The module globals replaced below only take effect where the library looks them up at call
    # time: the names its code object loads (bytecode, so this holds in the frozen release too).
    for function, names in ((aioice.ice.Connection.gather_candidates, ("get_host_addresses",)),
                            (aioice.ice.Connection.query_consent, ("CONSENT_FAILURES",)),
                            (RTCRtpSender._run_rtp, ("clock", "current_ntp_time", "RTP_HISTORY_SIZE"))):
        for name in names:
            if name not in function.__code__.co_names:
                raise MovedInternals(f"{function.__qualname__} no longer uses {name}: see streams/webrtc/rtcinternals.py")


# --- process-wide, applied once ---------------------------------------------------------------

_aioice_host_addresses = aioice.ice.get_host_addresses


def gather_host_addresses(lookup):
    """Make aioice gather host candidates on `lookup(use_ipv4, use_ipv6)`'s addresses;
    None gives it back its own lookup (every interface, no loopback)."""
    aioice.ice.get_host_addresses = lookup or _aioice_host_addresses


def set_consent_failures(count):
    """Unanswered consent checks (about 5 s apart) before aioice gives a listener up."""
    aioice.ice.CONSENT_FAILURES = count


def use_ntp_clock(current_ntp_time):
    """The clock aiortc stamps RTP header extensions and RTCP sender reports with."""
    aiortc.clock.current_ntp_time = current_ntp_time


def set_rtp_history_size(packets):
    """Sent packets each aiortc sender keeps for retransmission."""
    aiortc.rtcrtpsender.RTP_HISTORY_SIZE = packets


# --- per DTLS transport (streams/webrtc/dtls.py) --------------------------------------------------------

_DTLS_LOG_DEBUG = "_RTCDtlsTransport__log_debug"


def check_dtls_transport(transport):
    for name in ("_ssl", "_role", "encrypted", _DTLS_LOG_DEBUG):
        if not hasattr(transport, name):
            raise MovedInternals(f"aiortc's RTCDtlsTransport has no {name} any more: see streams/webrtc/rtcinternals.py")


def take_dtls_role(transport, role):
    """"server" or "client": what the coming answer's a=setup says (passive or active)."""
    transport._set_role(role)


def dtls_role(transport):
    return transport._role


def dtls_connection(transport):
    """The pyOpenSSL connection, made when the handshake starts (state "connecting"), or None."""
    return transport._ssl


def hear_dtls_debug_log(transport, listener):
    """Call `listener(msg, *args)` with each line aiortc logs at debug level for the transport:
    the only place it says that a handshake failed, and how."""
    check_dtls_transport(transport)
    log_debug = getattr(transport, _DTLS_LOG_DEBUG)

    def hearing(msg, *args):
        listener(msg, *args)
        log_debug(msg, *args)

    setattr(transport, _DTLS_LOG_DEBUG, hearing)


# --- per received track (test and benchmark listeners) -------------------------------------------

def on_received_rtp(receiver, record):
    """Call `await record(packet, arrival_time_ms)` for each RTP packet the receiver gets, before
    aiortc's jitter buffer; `record` returns True to pass the packet on to it (and the decoder)."""
    handle = receiver._handle_rtp_packet

    async def recording(packet, arrival_time_ms):
        if await record(packet, arrival_time_ms):
            await handle(packet, arrival_time_ms)

    receiver._handle_rtp_packet = recording


# --- per connected listener: the hub's send loop (streams/webrtc/fanout.py) -----------------------------


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
        sender._RTCRtpSender__ntp_timestamp = aiortc.clock.current_ntp_time()
        sender._RTCRtpSender__rtp_timestamp = timestamp
        sender._RTCRtpSender__packet_count += 1
        sender._RTCRtpSender__octet_count += payload_bytes
