"""How DTLS behaves here: the server takes the DTLS server role when the listener lets it
choose, and a failed handshake says why.

Why the server role: aiortc's DTLS client offers only ECDHE-ECDSA cipher suites, so a listener
whose certificate is RSA (GStreamer's webrtcbin before 1.28, among others) can accept none of
them and the handshake ends in "no shared cipher". As the DTLS server aiortc picks the suite
for its own ECDSA certificate from what the client offers, and the client's RSA certificate
only signs its CertificateVerify. RFC 5763 lets the answerer choose either role; Chromium
(tested) is then the DTLS client.

aiortc has no API for either thing, so this module uses its internals, through
streams/webrtc/rtcinternals.py (the one door to them); tests/test_peers.py fails if an upgrade moves
or changes them:

- `RTCDtlsTransport._set_role("server")` and `._role`: `createAnswer()` writes
  `a=setup:passive` for a transport whose role is "server" rather than "auto", and the
  handshake then waits for the client's hello.
- `RTCDtlsTransport.__log_debug` (name-mangled `_RTCDtlsTransport__log_debug`): the only place
  aiortc says that a handshake failed and how (an OpenSSL error, a fingerprint mismatch, ...).
  It logs that at DEBUG on its own logger and drops it; `HandshakeWatch` keeps it for the log.
- `RTCDtlsTransport._ssl`, the pyOpenSSL connection, made when the handshake starts (state
  "connecting"): aiortc feeds every datagram to its `recv()`, which runs the handshake and
  raises the OpenSSL error (a received alert, "no shared cipher") that aiortc swallows; its
  `do_handshake()` then fails with an empty error. The watch wraps that `recv()` to keep it.
"""
from OpenSSL import SSL

from . import rtcinternals

SERVER = "server"
_HANDSHAKE_FAILED = "x DTLS handshake failed"
_REMOTE_SHUTDOWN = "- DTLS shutdown by remote party"

# aiortc's words for a handshake that failed without an OpenSSL error, in the operator's words.
_FAILURES = {
    "connection error": "the connection closed during the handshake",
    "fingerprint mismatch": "the listener's certificate does not match the fingerprint in its offer",
    "no SRTP profile negotiated": "no SRTP protection profile in common",
}


def dtls_transports(pc):
    """The DTLS transports of a peer connection once its remote description is set (one, bundled)."""
    transports = {transceiver.receiver.transport for transceiver in pc.getTransceivers()}
    if pc.sctp is not None:
        transports.add(pc.sctp.transport)
    return transports


def take_server_role(pc):
    """Make the coming answer say a=setup:passive: call between setRemoteDescription(offer) and
    createAnswer(), and only for an offer that said a=setup:actpass."""
    for transport in dtls_transports(pc):
        rtcinternals.take_dtls_role(transport, SERVER)


def describe_ssl_error(error):
    """An OpenSSL error as its reason strings ("no shared cipher"), or "" when it has none."""
    details = error.args[0] if error.args else None
    if isinstance(details, list):
        return "; ".join(str(item[2]) for item in details if isinstance(item, tuple) and len(item) == 3)
    return str(error)


class HandshakeWatch:
    """Keeps why a DTLS transport's handshake failed (`reason`), and whether the listener shut
    DTLS down itself (`remote_shutdown`). Watch a transport before its handshake starts."""

    def __init__(self, transport):
        self.reason = None
        self.remote_shutdown = False
        self._ssl_error = ""  # the first OpenSSL error of the handshake, from recv()
        self._transport = transport
        self._watching_recv = False
        rtcinternals.check_dtls_transport(transport)

        def hearing(msg, *args):
            if msg.startswith(_HANDSHAKE_FAILED):
                self.reason = self._reason(msg, args)
            elif msg.startswith(_REMOTE_SHUTDOWN):
                self.remote_shutdown = True

        rtcinternals.hear_dtls_debug_log(transport, hearing)
        transport.on("statechange", self._on_state)

    def _on_state(self):
        transport = self._transport
        connection = rtcinternals.dtls_connection(transport)
        if transport.state == "connecting" and connection is not None and not self._watching_recv:
            self._watching_recv = True
            self._watch_recv(connection)

    def _watch_recv(self, connection):
        recv = connection.recv

        def watching(*args, **kwargs):
            try:
                return recv(*args, **kwargs)
            except (SSL.WantReadError, SSL.WantWriteError, SSL.ZeroReturnError):
                raise
            except SSL.Error as error:
                if not self._transport.encrypted and not self._ssl_error:
                    self._ssl_error = describe_ssl_error(error)
                raise

        connection.recv = watching

    def _reason(self, msg, args):
        role = rtcinternals.dtls_role(self._transport)
        error = next((arg for arg in args if isinstance(arg, SSL.Error)), None)
        if error is not None:
            why = describe_ssl_error(error) or self._ssl_error or "an OpenSSL error without a reason"
        else:
            detail = msg[len(_HANDSHAKE_FAILED):].strip(" ()")
            why = _FAILURES.get(detail, " ".join([detail, *map(str, args)]))
        return f"{why} (this server was the DTLS {role})"
