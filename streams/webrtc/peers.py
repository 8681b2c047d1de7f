"""One listener's RTCPeerConnection: create it from a profile, answer the offer, close it."""
import asyncio
import contextlib
import logging
import secrets

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.exceptions import OperationError
from django.conf import settings

from . import dtls, rtcinternals, sdp
from .fanout import IdleTrack, ListenerSender

logger = logging.getLogger(__name__)

# A browser offers a handful of candidates (one or two per interface and family); each one is
# a connectivity check the server sends, retried, so an offer may not name more than this.
MAX_REMOTE_CANDIDATES = 20
# What a listener's socket may hold unsent before the hub drops its packets (streams/webrtc/fanout.py):
# about 20 packets of 96 kb/s Opus, 400 ms of sound; a listener that slow hears gaps, not delay.
MAX_UNSENT_BYTES = 6000


class OfferRejected(Exception):
    """The offer cannot be answered; code and message go back to the listener as-is."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


def ice_configuration():
    servers = [RTCIceServer(**server) for server in settings.RTC_ICE_SERVERS]
    return RTCConfiguration(iceServers=servers)


def codec_capability(codec):
    name = sdp.ENCODING_NAMES[codec].lower()
    return next(c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType.lower() == f"audio/{name}")


def connection_failure(ice_states, dtls_states, remote_candidates):
    """Why a connection failed, from the ICE connection states it went through, its DTLS
    transports' states now, and how many remote candidates ICE had."""
    if "failed" in ice_states or "closed" in ice_states:
        if "completed" in ice_states:
            return "ICE consent expired: the listener stopped answering consent checks"
        if not remote_candidates:
            return "ICE failed: the offer left no candidate to check"
        return f"ICE failed: no connectivity check to the listener's {remote_candidates} candidate(s) succeeded"
    if "failed" in dtls_states:
        return "DTLS failed (no reason given)"
    return f"ICE {'/'.join(ice_states) or 'new'}, DTLS {'/'.join(dtls_states) or 'gone'}"


class ListenerPeer:
    """A listener's connection. `registry` is the set of live peers; a closed peer leaves it.

    `on_closed(code, message)` runs once when the peer closes for a reason of its own (ICE
    never connected, connection failed or consent expired), so the signaling side can say so.
    """

    def __init__(self, slug, address, track, registry, on_closed=None):
        self.id = secrets.token_hex(3)
        self.slug = slug
        self.address = address
        # What the hub feeds: a ListenerSender (the hub sends; aiortc gets an IdleTrack and sends
        # no RTP itself), or, when each listener encodes for itself (the benchmark's baseline),
        # a ListenerTrack of raw frames that aiortc's sender encodes and sends.
        self.track = track
        self._aiortc_track = IdleTrack() if isinstance(track, ListenerSender) else track
        self._transceiver = None
        self._payload_type = None
        self.pc = RTCPeerConnection(ice_configuration())
        self._registry = registry
        self._registry.add(self)
        self._on_closed = on_closed
        self._ice_timer = None
        self._ice_states = []  # every ICE connection state, in order, to tell consent expiry from ICE failure
        self._handshakes = []  # a dtls.HandshakeWatch per DTLS transport
        self.pc.on("iceconnectionstatechange", lambda: self._ice_states.append(self.pc.iceConnectionState))
        self.pc.on("connectionstatechange", self._on_connection_state)

    def __repr__(self):
        return f"<listener {self.slug}/{self.id}>"

    async def answer(self, offer_sdp, codec, fmtp, bandwidth_kbps):
        """Negotiate `codec` (sendonly) against the offer and return the answer SDP with the profile in it."""
        if sdp.only_loopback(settings.RTC_ICE_ADDRESSES):
            offer_sdp = sdp.keep_candidates(offer_sdp, settings.RTC_ICE_ADDRESSES)
        offer_sdp = sdp.limit_candidates(offer_sdp, MAX_REMOTE_CANDIDATES)
        transceiver = self._transceiver = self.pc.addTransceiver(self._aiortc_track, direction="sendonly")
        transceiver.setCodecPreferences([codec_capability(codec)])
        with self._unusable_offer(codec):
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        # Outside the offer's errors: if an aiortc upgrade moved what dtls.py uses, every answer
        # fails loudly (internal-error, a warning in the log), not as the listener's bad SDP.
        if sdp.dtls_setup(offer_sdp) == "actpass":  # the listener lets us choose: see dtls.py
            dtls.take_server_role(self.pc)
        self._handshakes = [dtls.HandshakeWatch(transport) for transport in dtls.dtls_transports(self.pc)]
        with self._unusable_offer(codec):
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        self._ice_timer = asyncio.get_running_loop().call_later(
            settings.RTC_ICE_TIMEOUT_SECONDS, lambda: asyncio.ensure_future(self._ice_timed_out())
        )
        answer = self.pc.localDescription.sdp
        self._payload_type = sdp.audio_payload_type(answer, sdp.ENCODING_NAMES[codec])
        if fmtp:
            answer = sdp.set_codec_fmtp(answer, sdp.ENCODING_NAMES[codec], fmtp)
        return sdp.set_audio_bandwidth(answer, bandwidth_kbps)

    @contextlib.contextmanager
    def _unusable_offer(self, codec):
        """aiortc's errors on an offer, as the OfferRejected the listener is told."""
        try:
            yield
        except OperationError:  # aiortc's word for "no codec in common"
            raise OfferRejected(
                "codec-not-offered",
                f"This stream uses {sdp.ENCODING_NAMES[codec]}, which the offer does not include.",
            ) from None
        except Exception as error:  # aiortc raises many kinds on malformed SDP, while parsing or answering
            logger.info("%r: unusable offer (%s: %s)", self, type(error).__name__, error)
            raise OfferRejected("invalid-sdp", "The offer's SDP could not be used; is it a WebRTC offer?") from None

    def switch_track(self, track):
        """Play `track` from now on (the stream's settings changed; same codec): see
        ListenerSender.handover and ListenerTrack.handover."""
        if self.track.readyState != "live":  # closed meanwhile: do not keep the new stream running
            track.stop()
            return
        previous, self.track = self.track, track
        previous.handover(track)

    async def _ice_timed_out(self):
        if self in self._registry and self.pc.connectionState != "connected":
            seconds = settings.RTC_ICE_TIMEOUT_SECONDS
            logger.info("%r: ICE did not connect within %d s; closing (check RTC_ICE_SERVERS / firewall)", self, seconds)
            await self.close("ice-timeout", f"The audio connection did not come up within {seconds} s.")

    async def _on_connection_state(self):
        state = self.pc.connectionState
        logger.info("%r connection %s", self, state)
        if state == "connected" and self._ice_timer:
            self._ice_timer.cancel()
        if state == "connected" and isinstance(self.track, ListenerSender):
            self.track.connect(rtcinternals.SendPath(self._transceiver.sender, self._payload_type, MAX_UNSENT_BYTES))
        if state == "failed":
            reason = self.failure_reason()
            logger.info("%r: connection failed or consent expired; closing (%s)", self, reason)
            await self.close("connection-failed", f"The audio connection failed ({reason}).")
        elif state == "closed" and self in self._registry:
            # Not closed by us: aiortc closed it because DTLS ended, which is what a listener that
            # stops answering ICE consent checks (or hangs up without a WebSocket close) leads to.
            reason = self.failure_reason()
            logger.info("%r: connection ended (the listener hung up, or stopped answering consent checks); closing (%s)",
                        self, reason)
            await self.close("connection-failed", "The audio connection ended: the listener stopped answering.")

    def failure_reason(self):
        """Why the connection failed or ended, in words for the log: which of ICE, DTLS or consent."""
        transports = dtls.dtls_transports(self.pc)
        for watch in self._handshakes:
            if watch.reason:
                return f"DTLS handshake failed: {watch.reason}"
        if any(watch.remote_shutdown for watch in self._handshakes):
            return "the listener closed DTLS"
        return connection_failure(self._ice_states, [t.state for t in transports],
                                  sum(len(t.transport.getRemoteCandidates()) for t in transports))

    async def close(self, code=None, message=None):
        """Close the peer; with a code, tell the signaling side why (once)."""
        if self not in self._registry:
            return
        self._registry.discard(self)
        if self._ice_timer:
            self._ice_timer.cancel()
        self.track.stop()
        self._aiortc_track.stop()
        await self.pc.close()
        logger.info("%r closed", self)
        if code and self._on_closed:
            await self._on_closed(code, message)
