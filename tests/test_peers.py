"""peers.py and dtls.py in one process: a ListenerPeer answering a real aiortc offerer on 127.0.0.1.

A listener with an RSA certificate (as GStreamer's webrtcbin before 1.28 has) is an aiortc
offerer whose certificate is RSA: aiortc's DTLS offers only ECDHE-ECDSA suites, so whichever
side is the DTLS client decides whether they share a cipher. These tests also fail when an
aiortc upgrade moves the internals that streams/webrtc/dtls.py uses.
"""
import datetime
import logging

import pytest
from aiortc import RTCCertificate, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack
from aiortc.rtcdtlstransport import RTCDtlsTransport
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from streams.webrtc import dtls
from streams.webrtc.peers import ListenerPeer, connection_failure
from tests.helpers import run
from tests.waiting import until


def rsa_certificate():
    """A self-signed RSA certificate like the ones GStreamer's DTLS agent makes."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gstreamer-like")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30)).sign(key, hashes.SHA256()))
    return RTCCertificate(key=key, cert=cert)


@pytest.fixture
def rsa_listener_pc(monkeypatch):
    """Makes aiortc offerers whose DTLS certificate is RSA (aiortc itself always makes ECDSA)."""
    def make():
        with monkeypatch.context() as patch:
            certificate = rsa_certificate()
            patch.setattr(RTCCertificate, "generateCertificate", classmethod(lambda cls: certificate))
            return RTCPeerConnection()
    return make


class Closed:
    """Records what a ListenerPeer tells its signaling side when it closes itself."""

    def __init__(self):
        self.calls = []

    async def __call__(self, code, message):
        self.calls.append((code, message))


async def negotiate(listener_pc, offer_edit=lambda offer: offer):
    """A ListenerPeer answering listener_pc's recvonly audio offer; returns (peer, answer SDP, closed)."""
    closed = Closed()
    peer = ListenerPeer("peer-test", "127.0.0.1", AudioStreamTrack(), set(), on_closed=closed)
    listener_pc.addTransceiver("audio", direction="recvonly")
    await listener_pc.setLocalDescription(await listener_pc.createOffer())
    answer = await peer.answer(offer_edit(listener_pc.localDescription.sdp), "opus", {}, 96)
    await listener_pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    return peer, answer, closed


def setup_of(answer):
    return [line for line in answer.splitlines() if line.startswith("a=setup:")]


def as_passive(offer):
    """An offer that insists the server be the DTLS client (RFC 5763 lets an offerer say so)."""
    return offer.replace("a=setup:actpass", "a=setup:passive")


def test_it_answers_an_actpass_offer_as_the_dtls_server_and_connects():
    async def scenario():
        listener_pc = RTCPeerConnection()
        peer, answer, _ = await negotiate(listener_pc)
        try:
            await until(lambda: peer.pc.connectionState == listener_pc.connectionState == "connected", 15, "connected")
            return answer, {t._role for t in dtls.dtls_transports(peer.pc)}
        finally:
            await peer.close()
            await listener_pc.close()

    answer, roles = run(scenario())
    assert setup_of(answer) == ["a=setup:passive"]
    assert roles == {"server"}


def test_a_listener_with_an_rsa_certificate_connects(rsa_listener_pc):
    async def scenario():
        listener_pc = rsa_listener_pc()
        peer, _, closed = await negotiate(listener_pc)
        try:
            await until(lambda: peer.pc.connectionState == listener_pc.connectionState == "connected", 15, "connected")
            return closed.calls
        finally:
            await peer.close()
            await listener_pc.close()

    assert run(scenario()) == []


def test_it_stays_the_dtls_client_when_the_offer_asks_it_to():
    async def scenario():
        listener_pc = RTCPeerConnection()
        peer, answer, _ = await negotiate(listener_pc, as_passive)
        try:
            await until(lambda: peer.pc.connectionState == listener_pc.connectionState == "connected", 15, "connected")
            return answer
        finally:
            await peer.close()
            await listener_pc.close()

    assert setup_of(run(scenario())) == ["a=setup:active"]


def test_a_failed_dtls_handshake_is_logged_with_the_openssl_reason(rsa_listener_pc, caplog):
    """As the DTLS client against an RSA server, aiortc gets a handshake_failure alert ("no
    shared cipher" on the other side): the log and the listener are told so."""
    async def scenario():
        listener_pc = rsa_listener_pc()
        peer, _, closed = await negotiate(listener_pc, as_passive)
        try:
            await until(lambda: closed.calls, 15, "the peer to close itself")
            return closed.calls
        finally:
            await peer.close()
            await listener_pc.close()

    with caplog.at_level(logging.INFO, logger="streams.webrtc.peers"):
        calls = run(scenario())
    [line] = [r.getMessage() for r in caplog.records if "connection failed or consent expired; closing" in r.getMessage()]
    assert line.endswith("closing (DTLS handshake failed: tls alert handshake failure (this server was the DTLS client))")
    assert calls == [("connection-failed",
                      "The audio connection failed (DTLS handshake failed: tls alert handshake failure "
                      "(this server was the DTLS client)).")]


def test_a_fingerprint_that_does_not_match_is_logged(caplog):
    def wrong_fingerprint(offer):
        line = next(x for x in offer.splitlines() if x.startswith("a=fingerprint:sha-256 "))
        digits = line.split()[1]
        return offer.replace(line, f"a=fingerprint:sha-256 {'00' if digits[:2] != '00' else '11'}{digits[2:]}")

    async def scenario():
        listener_pc = RTCPeerConnection()
        peer, _, closed = await negotiate(listener_pc, wrong_fingerprint)
        try:
            await until(lambda: closed.calls, 15, "the peer to close itself")
        finally:
            await peer.close()
            await listener_pc.close()

    with caplog.at_level(logging.INFO, logger="streams.webrtc.peers"):
        run(scenario())
    assert any(r.getMessage().endswith(
        "closing (DTLS handshake failed: the listener's certificate does not match the fingerprint in its offer "
        "(this server was the DTLS server))") for r in caplog.records)


def test_the_aiortc_internals_dtls_py_uses_are_where_it_expects_them():
    """If this fails after an aiortc upgrade, read streams/webrtc/dtls.py's docstring and redo what it says."""
    async def scenario():
        pc = RTCPeerConnection()
        try:
            transport = pc.addTransceiver("audio").receiver.transport
            assert isinstance(transport, RTCDtlsTransport)
            assert transport._role == "auto"
            transport._set_role("server")
            assert transport._role == "server"
            assert transport._ssl is None  # made when the handshake starts
            assert transport.encrypted is False
            assert callable(transport._RTCDtlsTransport__log_debug)
            dtls.HandshakeWatch(transport)  # checks the same names itself
        finally:
            await pc.close()

    run(scenario())


def test_connection_failure_tells_ice_failure_from_consent_expiry():
    assert connection_failure(["checking", "failed"], ["new"], 2) == (
        "ICE failed: no connectivity check to the listener's 2 candidate(s) succeeded")
    assert connection_failure(["checking", "failed"], ["new"], 0) == "ICE failed: the offer left no candidate to check"
    assert connection_failure(["checking", "completed", "failed"], ["connected"], 1) == (
        "ICE consent expired: the listener stopped answering consent checks")
    assert connection_failure(["checking", "completed", "closed"], ["closed"], 1) == (
        "ICE consent expired: the listener stopped answering consent checks")
    assert connection_failure(["checking", "completed"], ["failed"], 1) == "DTLS failed (no reason given)"


def test_describe_ssl_error_gives_openssl_reasons():
    from OpenSSL import SSL

    error = SSL.Error([("SSL routines", "", "no shared cipher")])
    assert dtls.describe_ssl_error(error) == "no shared cipher"
    assert dtls.describe_ssl_error(SSL.Error([])) == ""

