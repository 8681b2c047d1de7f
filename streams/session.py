"""One listener's session, whatever brought its offer (the signaling WebSocket or WHEP): its
place in the listener limits, its peer and track, the stream's news it follows (status, profile
changes, stop), and giving all of it back.

A session is used once: `start(offer)` admits the listener and returns the answer, or raises
`SessionRefused` holding nothing. From then on it follows its stream by itself, through its own
channel in the Channels layer (a WHEP listener has no socket to be told through), and calls
back its owner:

    on_status(state, message)   news about the stream (device lost, playing again, ...)
    on_end(code, message)       the session ended for a reason of its own: "ice-timeout",
                                "connection-failed", "stream-stopped", "forbidden",
                                "renegotiate" (the codec changed) or "internal-error"

`end()` gives everything back; every path out comes there, and it may come twice.
"""
import asyncio
import contextvars
import logging

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from . import groups
from .webrtc import sdp
from .ops.limits import Seat
from .models import StreamProfile
from .webrtc.peers import MAX_REMOTE_CANDIDATES, ListenerPeer, OfferRejected
from .runtime import get_runtime, status_group

logger = logging.getLogger(__name__)

# A listener's offer needs one audio section; browsers add a few more at most (video, data).
MAX_MEDIA_SECTIONS = 4
RECEIVE_RETRY_SECONDS = 1.0  # the channel layer did not answer: listen again after this


@database_sync_to_async
def load_enabled_profile(slug):
    return StreamProfile.objects.filter(slug=slug, enabled=True).first()


@database_sync_to_async
def load_enabled_profile_by_id(profile_id):
    """The profile as it is now, whatever its slug became since the listener came (a rename)."""
    return StreamProfile.objects.filter(pk=profile_id, enabled=True).first()


class SessionRefused(Exception):
    """The offer or the listener was refused before anything was held; `code` names why, as in
    the signaling protocol: invalid-sdp, no-audio, codec-not-offered, too-many-listeners."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


def check_offer(offer):
    """Refuse an offer that cannot be answered, before it costs a place or a peer."""
    if not sdp.has_audio_section(offer):
        raise SessionRefused("no-audio", "The offer has no audio section; add a recvonly audio transceiver.")
    if sdp.media_section_count(offer) > MAX_MEDIA_SECTIONS:
        raise SessionRefused("invalid-sdp", f"An offer may have at most {MAX_MEDIA_SECTIONS} media sections.")
    missing = sdp.missing_transport_attributes(offer)
    if missing:
        raise SessionRefused(
            "invalid-sdp", "The offer lacks " + ", ".join(f"a={name}" for name in missing) + ": it cannot connect."
        )


def ice_credentials(text):
    """(ice-ufrag, ice-pwd) of an SDP or SDP fragment: the first of each, or None."""
    found = {}
    for line in text.splitlines():
        for name in ("ice-ufrag", "ice-pwd"):
            if line.startswith(f"a={name}:") and name not in found:
                found[name] = line.split(":", 1)[1].strip()
    return found.get("ice-ufrag"), found.get("ice-pwd")


class ListenerSession:
    def __init__(self, profile, address, *, user=None, key="", on_status=None, on_end=None):
        """`user` and `key` are who the listener is (a signed-in user, a secret link's key): a
        profile change that now refuses them ends the session as forbidden."""
        self.profile = profile
        self.profile_id = profile.pk  # what the stream's news is addressed by (its slug may be renamed)
        self.slug = profile.slug  # the slug the listener came by (its URLs and log lines)
        self.address = address
        self.user = user
        self.key = key
        self.peer = None
        self.ended = False
        self._on_status = on_status
        self._on_end = on_end
        self._seat = None
        self._limits = None
        self._wanted = None
        self._remote_ufrag = None
        self._candidates_left = 0
        self._channel = None
        self._events = None

    def __repr__(self):
        return repr(self.peer) if self.peer is not None else f"<session {self.slug} from {self.address}>"

    async def start(self, offer):
        """Admit the listener, make its peer and return the answer SDP. On any refusal or error
        everything taken is given back before the exception leaves."""
        if self.peer is not None or self.ended:
            raise RuntimeError("a session starts once")
        check_offer(offer)
        runtime = get_runtime()
        seat = Seat(self.profile_id, self.address)  # counted by the profile, whatever its slug becomes
        refusal = await runtime.admission.admit(seat, self.profile.max_listeners,
                                                settings.RTC_MAX_LISTENERS_PER_ADDRESS)
        if refusal:
            logger.info("%s refused on %s: %s", self.address, self.slug, refusal)
            raise SessionRefused("too-many-listeners", refusal)
        self._seat = seat
        try:
            return await self._connect(offer, runtime)
        except BaseException:  # refused, a bug, or cancelled (a WHEP client that hung up)
            await self.end()
            raise

    async def _connect(self, offer, runtime):
        # The offer's Opus limits (mono, a lower bitrate) pick a variant shared by listeners alike.
        self._limits = sdp.opus_receiver_limits(offer)
        self._wanted = self.profile.stream_config().limited_by(self._limits)
        track = runtime.hubs.subscribe(self._wanted)
        config = track.hub.config  # the variant it joined: the same, unless the stream runs its most
        self.peer = ListenerPeer(self.slug, self.address, track, runtime.peers, on_closed=self._peer_closed)
        logger.info("%r connecting from %s", self.peer, self.address)
        try:
            answer = await self.peer.answer(offer, config.codec, config.answer_fmtp(),
                                            self.profile.answer_bandwidth_kbps())
        except OfferRejected as rejected:
            raise SessionRefused(rejected.code, rejected.message) from None
        self._remote_ufrag, _ = ice_credentials(offer)
        self._candidates_left = max(0, MAX_REMOTE_CANDIDATES - offer.count("a=candidate:"))
        await self._follow_the_stream()
        return answer

    def stream_status(self):
        """(state, message) of the stream this listener plays: "playing", "device-lost", ..."""
        return self.peer.track.hub.status if self.peer is not None else ("stopped", "")

    async def end(self, code=None, message=None):
        """Give back what the session took: its subscription, its peer and its place in the
        listener limits. With a code (a reason of the session's own), tell the owner once."""
        if self.ended:
            return
        self.ended = True
        peer, self.peer = self.peer, None
        try:
            await self._stop_following()
            if peer is not None:
                await peer.close()
        finally:
            if self._seat is not None:
                get_runtime().admission.left(self._seat)
                self._seat = None
        if code and self._on_end is not None:
            await self._on_end(code, message)

    async def _peer_closed(self, code, message):
        """The peer closed itself (ICE never connected, connection failed or consent expired)."""
        await self.end(code, message)

    # Trickle ICE (WHEP's PATCH): candidates the listener found after its offer.

    def ice_restart(self, fragment):
        """True if this SDP fragment asks for an ICE restart (other ICE credentials than the offer's)."""
        ufrag, _ = ice_credentials(fragment)
        return ufrag is not None and ufrag != self._remote_ufrag

    async def add_candidates(self, fragment):
        """Add the a=candidate lines of a trickle-ice-sdpfrag (RFC 8840), under the same rules as
        an offer's: only on the allowed addresses, at most MAX_REMOTE_CANDIDATES in all.
        Candidates that cannot be used are dropped silently, as RFC 9725 asks. Returns how many
        were added."""
        from aiortc.sdp import candidate_from_sdp

        if self.peer is None:
            return 0
        if sdp.only_loopback(settings.RTC_ICE_ADDRESSES):
            fragment = sdp.keep_candidates(fragment, settings.RTC_ICE_ADDRESSES)
        mid, added = None, 0
        for line in fragment.splitlines():
            line = line.strip()
            if line.startswith("a=mid:"):
                mid = line.split(":", 1)[1]
            elif line.startswith("a=candidate:") and self._candidates_left > 0:
                try:
                    candidate = candidate_from_sdp(line.split(":", 1)[1])
                except (ValueError, IndexError):
                    continue
                candidate.sdpMid, candidate.sdpMLineIndex = mid, 0 if mid is None else None
                self._candidates_left -= 1
                await self.peer.pc.addIceCandidate(candidate)
                added += 1
            elif line == "a=end-of-candidates":
                await self.peer.pc.addIceCandidate(None)
        return added

    # Following the stream: its own channel, in the stream's groups (kept there by streams/groups.py).

    def _status_groups(self):
        """The stream's news for every process, and this worker's own (its relay's state)."""
        return [status_group(self.profile_id), status_group(self.profile_id, get_runtime().worker_id)]

    async def _follow_the_stream(self):
        self._channel = await get_channel_layer().new_channel()
        await groups.keeper().join(self._channel, self._status_groups())
        # In a context of its own: one inherited from a request would hold that request's
        # thread executor (asgiref), gone once the response is sent, and the task's database
        # reads would fail with it.
        self._events = asyncio.get_running_loop().create_task(
            self._receive_events(), name=f"session-events {self!r}", context=contextvars.Context())

    async def _stop_following(self):
        task, self._events = self._events, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.wait([task])  # gone when end() returns (a cancel of end() itself still propagates)
        channel, self._channel = self._channel, None
        if channel is not None:
            await groups.keeper().leave(channel)

    async def _receive_events(self):
        """The stream's news, until the session ends. A handler that fails ends the session
        with one log line, as the consumer's unexpected errors do. A layer that does not answer
        (Redis restarting) is listened to again until it does."""
        layer = get_channel_layer()
        failing = False
        while not self.ended:
            try:
                event = await layer.receive(self._channel)
            except groups.LAYER_ERRORS as error:
                if not failing:
                    logger.warning("%r: the channel layer does not answer (%s); listening again", self, error)
                failing = True
                await asyncio.sleep(RECEIVE_RETRY_SECONDS)
                continue
            failing = False
            handler = self._event_handlers.get(event.get("type"))
            if handler is None:
                continue
            try:
                await handler(self, event)
            except Exception as error:
                logger.warning("%r: unexpected %s (%s) handling %s; closing", self, type(error).__name__,
                               str(error)[:200], event.get("type"))
                await self.end("internal-error", "The server could not handle this; connect again.")

    async def _stream_status(self, event):
        """A state change of the stream (device lost or back, ...). A relay's news is about one
        variant of the stream: only its own listeners get it."""
        if self.peer is None:
            return
        if event.get("stream") and event["stream"] != getattr(self.peer.track.hub, "key", None):
            return
        if self._on_status is not None:
            await self._on_status(event["state"], event["message"])

    async def _stream_changed(self, event):
        """The operator saved this stream's profile: apply it within the second.

        Same codec: move to the new settings' hub without renegotiating (the sound changes, the
        connection stays). Another codec: end as "renegotiate", the listener connects again.
        Access rules that now exclude this listener end it as forbidden. A renamed slug is a
        change of settings too (the stream's name in the media path): the listener moves on."""
        profile = await load_enabled_profile_by_id(self.profile_id)
        if profile is None or self.ended or self.peer is None:
            return  # disabled or deleted (stream.stopped says so), or the listener left meanwhile
        refusal = profile.refusal(self.user, self.key)
        if refusal:
            await self.end("forbidden", refusal)
            return
        wanted = profile.stream_config().limited_by(self._limits)
        if wanted == self._wanted:
            return
        if wanted.codec != self._wanted.codec:
            logger.info("%r: codec now %s; the listener must connect again", self.peer, wanted.codec)
            await self.end("renegotiate", f"The stream changed to {sdp.ENCODING_NAMES[wanted.codec]}; reconnecting.")
            return
        logger.info("%r: settings changed; switching to the new stream", self.peer)
        self._wanted = wanted
        self.peer.switch_track(get_runtime().hubs.subscribe(wanted))

    async def _stream_stopped(self, event):
        """The operator switched this stream off or deleted it."""
        await self.end("stream-stopped", event["message"])

    _event_handlers = {
        "stream.status": _stream_status,
        "stream.changed": _stream_changed,
        "stream.stopped": _stream_stopped,
    }
