"""One listener's RTCPeerConnection: create it from a profile, answer the offer, close it."""
import logging
import secrets

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.exceptions import OperationError
from django.conf import settings

from . import sdp

logger = logging.getLogger(__name__)


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


class ListenerPeer:
    """A listener's connection. `registry` is the set of live peers; a closed peer leaves it."""

    def __init__(self, slug, track, registry):
        self.id = secrets.token_hex(3)
        self.slug = slug
        self.track = track
        self.pc = RTCPeerConnection(ice_configuration())
        self._registry = registry
        self._registry.add(self)
        self.pc.on("connectionstatechange", self._on_connection_state)

    def __repr__(self):
        return f"<listener {self.slug}/{self.id}>"

    async def answer(self, offer_sdp, codec, fmtp, bandwidth_kbps):
        """Negotiate `codec` (sendonly) against the offer and return the answer SDP with the profile in it."""
        if sdp.only_loopback(settings.RTC_ICE_ADDRESSES):
            offer_sdp = sdp.keep_candidates(offer_sdp, settings.RTC_ICE_ADDRESSES)
        transceiver = self.pc.addTransceiver(self.track, direction="sendonly")
        transceiver.setCodecPreferences([codec_capability(codec)])
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        except OperationError:
            raise OfferRejected(
                "codec-not-offered",
                f"This stream uses {sdp.ENCODING_NAMES[codec]}, which the offer does not include.",
            ) from None
        except Exception as error:  # aiortc's parser raises many kinds on malformed SDP
            logger.info("%r: unusable offer (%s: %s)", self, type(error).__name__, error)
            raise OfferRejected("invalid-sdp", "The offer's SDP could not be used; is it a WebRTC offer?") from None
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        answer = self.pc.localDescription.sdp
        if fmtp:
            answer = sdp.set_codec_fmtp(answer, sdp.ENCODING_NAMES[codec], fmtp)
        return sdp.set_audio_bandwidth(answer, bandwidth_kbps)

    async def _on_connection_state(self):
        state = self.pc.connectionState
        logger.info("%r connection %s", self, state)
        if state in ("failed", "closed"):
            await self.close()

    async def close(self):
        if self not in self._registry:
            return
        self._registry.discard(self)
        self.track.stop()
        await self.pc.close()
        logger.info("%r closed", self)
