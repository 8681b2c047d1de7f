"""Signaling over WebSocket: parse, validate, delegate to peers, reply.

Protocol (also in the README):
  client -> {"type": "offer", "sdp": "..."}
  server -> {"type": "answer", "sdp": "..."}         once ICE gathering is complete
  server -> {"type": "error", "code": "...", "message": "..."}
  server -> {"type": "status", "state": "...", "message": "..."}
  server -> {"type": "renegotiate", "message": "..."}  then close 4426: connect again at once
An unknown or disabled profile gets an error and close code 4404.
"""
import asyncio
import json
import logging
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from . import sdp
from .limits import MessageRate, Seat
from .models import StreamProfile, not_found_message
from .peers import ListenerPeer, OfferRejected
from .runtime import get_runtime, status_group

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 1024
# Daphne closes a socket whose message is over RTC_MAX_MESSAGE_BYTES itself, with 1009; an
# application may only use 1000 and 3000-4999, so the consumer's own checks use 40xx codes.
CLOSE_TOO_LARGE = 4009  # only reached behind a server without daphne's limit
CLOSE_TOO_MANY_MESSAGES = 4008
CLOSE_FORBIDDEN = 4403
CLOSE_PROFILE_NOT_FOUND = 4404
CLOSE_TIMEOUT = 4408  # no offer in time, or ICE never connected
CLOSE_CONNECTION_FAILED = 4410
CLOSE_TOO_MANY_LISTENERS = 4429
CLOSE_RENEGOTIATE = 4426  # the stream's codec changed: the page connects again at once, with a new offer
CLOSE_INTERNAL_ERROR = 4500  # something unexpected went wrong with this socket (1011 is the server's own)
# A listener's offer needs one audio section; browsers add a few more at most (video, data).
MAX_MEDIA_SECTIONS = 4


@database_sync_to_async
def load_enabled_profile(slug):
    return StreamProfile.objects.filter(slug=slug, enabled=True).first()


class SignalingError(Exception):
    """Answered with an error message; with close_code, the socket is then closed."""

    def __init__(self, code, message, close_code=None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.close_code = close_code


class ListenConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        self.slug = self.scope["url_route"]["kwargs"]["slug"]
        self.peer = None
        self.seat = None  # its place in the listener limits, once admitted
        self.socket_seat = None  # its place among its address's open sockets
        self.offer_timer = None
        self.joined_groups = []
        self.closing = False
        self.rate = MessageRate(settings.RTC_MAX_MESSAGES_PER_SECOND)
        await self.accept()
        self.profile = None
        socket_seat = Seat("*", self.client_address())
        if await get_runtime().sockets.admit(socket_seat, 0, settings.RTC_MAX_SOCKETS_PER_ADDRESS):
            limit = settings.RTC_MAX_SOCKETS_PER_ADDRESS
            logger.info("%s: refused a socket, %d open from that address already", socket_seat.address, limit)
            await self.fail(SignalingError("too-many-connections",
                                           f"Too many connections from your address ({limit} at most).",
                                           CLOSE_TOO_MANY_LISTENERS))
            return
        self.socket_seat = socket_seat
        profile = await load_enabled_profile(self.slug)
        if profile is None or profile.refusal(self.scope.get("user"), self.query_key()):
            # Unknown, switched off or not for this listener: all alike, nothing revealed.
            await self.send_error("profile-not-found", not_found_message(self.slug))
            await self.close(code=CLOSE_PROFILE_NOT_FOUND)
            return
        self.profile = profile
        self.offer_timer = asyncio.get_running_loop().call_later(
            settings.RTC_OFFER_TIMEOUT_SECONDS, lambda: asyncio.ensure_future(self.offer_timed_out())
        )

    async def offer_timed_out(self):
        if self.peer is None and not self.closing:
            seconds = settings.RTC_OFFER_TIMEOUT_SECONDS
            logger.info("%s: no usable offer within %d s; closing the socket", self.client_address(), seconds)
            await self.fail(SignalingError("offer-timeout", f"No usable offer arrived within {seconds} s.", CLOSE_TIMEOUT))

    async def fail(self, error):
        await self.send_error(error.code, error.message)
        if error.close_code:
            self.closing = True
            await self.close(code=error.close_code)

    async def dispatch(self, message):
        """Every message and event passes here. Whatever goes wrong unexpectedly (a bug, a library
        refusing what passed the checks) closes this socket with a clear error and one log line,
        and gives back what it took; the server goes on serving everyone else."""
        try:
            await super().dispatch(message)
        except StopConsumer:
            raise
        except Exception as error:
            logger.warning("%s on %s: unexpected %s (%s) handling %s; closing the socket", self.client_address(),
                           getattr(self, "slug", "?"), type(error).__name__, str(error)[:200], message.get("type"))
            await self.release()
            try:
                await self.fail(SignalingError("internal-error", "The server could not handle this; connect again.",
                                               CLOSE_INTERNAL_ERROR))
            except Exception:  # the socket may be beyond sending (it is closing anyway)
                pass

    async def receive(self, text_data=None, bytes_data=None):
        if self.profile is None or self.closing:
            return
        try:
            if not self.rate.allow():
                limit = settings.RTC_MAX_MESSAGES_PER_SECOND
                raise SignalingError("too-many-messages", f"At most {limit} messages a second.", CLOSE_TOO_MANY_MESSAGES)
            message = self.parse(text_data, bytes_data)
            handler = self.handlers.get(message["type"])
            if handler is None:
                known = ", ".join(sorted(self.handlers))
                raise SignalingError("unknown-type", f"Unknown message type {message['type']!r}; expected one of: {known}.")
            await handler(self, message)
        except SignalingError as error:
            await self.fail(error)

    async def disconnect(self, code):
        self.closing = True
        await self.release()

    async def release(self):
        """Give back what this connection took: its timer, its groups, its peer and its place in
        the listener limits. Every path out of a connection comes here; it may come twice."""
        if self.offer_timer is not None:
            self.offer_timer.cancel()
        groups, self.joined_groups = self.joined_groups, []
        peer, self.peer = self.peer, None
        try:
            for group in groups:
                await self.channel_layer.group_discard(group, self.channel_name)
            if peer is not None:
                await peer.close()
        finally:
            self.give_back_seat()
            self.give_back_socket_seat()

    def give_back_seat(self):
        """The listener's place in the stream's and its address's limits is free again."""
        if self.seat is not None:
            get_runtime().admission.left(self.seat)
            self.seat = None

    def give_back_socket_seat(self):
        if self.socket_seat is not None:
            get_runtime().sockets.left(self.socket_seat)
            self.socket_seat = None

    @staticmethod
    def parse(text_data, bytes_data):
        if text_data is None:
            raise SignalingError("not-text", "Messages must be JSON text, not binary frames.")
        if len(text_data.encode()) > MAX_MESSAGE_BYTES:
            raise SignalingError(
                "too-large", f"Messages may be at most {MAX_MESSAGE_BYTES // 1024} KiB.", CLOSE_TOO_LARGE
            )
        try:
            message = json.loads(text_data)
        except json.JSONDecodeError as error:
            raise SignalingError("invalid-json", f"The message is not valid JSON ({error.msg}).") from None
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            raise SignalingError("missing-type", 'A message must be a JSON object with a string "type".')
        return message

    async def handle_offer(self, message):
        if self.peer is not None:
            raise SignalingError("second-offer", "This connection already has a stream; open a new one to renegotiate.")
        offer = message.get("sdp")
        if not isinstance(offer, str) or not offer.strip():
            raise SignalingError("invalid-sdp", 'An offer needs its SDP as a string in "sdp".')
        if not sdp.has_audio_section(offer):
            raise SignalingError("no-audio", "The offer has no audio section; add a recvonly audio transceiver.")
        if sdp.media_section_count(offer) > MAX_MEDIA_SECTIONS:
            raise SignalingError("invalid-sdp", f"An offer may have at most {MAX_MEDIA_SECTIONS} media sections.")
        missing = sdp.missing_transport_attributes(offer)
        if missing:
            raise SignalingError(
                "invalid-sdp", "The offer lacks " + ", ".join(f"a={name}" for name in missing) + ": it cannot connect."
            )
        profile = self.profile
        runtime = get_runtime()
        seat = Seat(profile.slug, self.client_address())
        refusal = await runtime.admission.admit(seat, profile.max_listeners, settings.RTC_MAX_LISTENERS_PER_ADDRESS)
        if refusal:
            logger.info("%s refused on %s: %s", seat.address, profile.slug, refusal)
            raise SignalingError("too-many-listeners", refusal, CLOSE_TOO_MANY_LISTENERS)
        self.seat = seat
        # The offer's Opus limits (mono, a lower bitrate) pick a variant shared by listeners alike.
        self.limits = sdp.opus_receiver_limits(offer)
        self.wanted = profile.stream_config().limited_by(self.limits)
        track = runtime.hubs.subscribe(self.wanted)
        config = track.hub.config  # the variant it joined: the same, unless the stream runs its most
        self.peer = ListenerPeer(profile.slug, seat.address, track, runtime.peers, on_closed=self.peer_closed)
        logger.info("%r connecting from %s", self.peer, seat.address)
        try:
            answer = await self.peer.answer(offer, config.codec, config.answer_fmtp(), profile.answer_bandwidth_kbps())
        except OfferRejected as rejected:
            # The listener may send a corrected offer, within the same offer deadline.
            await self.release_peer()
            raise SignalingError(rejected.code, rejected.message) from None
        await self.send(text_data=json.dumps({"type": "answer", "sdp": answer}))
        self.offer_timer.cancel()  # from here on the peer's ICE deadline holds
        for group in self.status_groups():
            self.joined_groups.append(group)
            await self.channel_layer.group_add(group, self.channel_name)
        state, text = self.peer.track.hub.status
        if state != "playing":
            await self.send_status(state, text)

    async def release_peer(self):
        peer, self.peer = self.peer, None
        try:
            await peer.close()
        finally:
            self.give_back_seat()

    handlers = {"offer": handle_offer}

    def status_groups(self):
        """The stream's status for every process, and this worker's own (its relay's state)."""
        return [status_group(self.slug), status_group(self.slug, get_runtime().worker_id)]

    async def peer_closed(self, code, message):
        """The peer closed itself (ICE timeout, failure): tell the listener and close the socket."""
        if not self.closing:
            close_code = CLOSE_TIMEOUT if code == "ice-timeout" else CLOSE_CONNECTION_FAILED
            await self.fail(SignalingError(code, message, close_code))

    async def stream_status(self, event):
        """A state change of this listener's stream (device lost or back, ...), from the channel layer.
        A relay's news is about one variant of the stream: only its own listeners get it."""
        if self.peer is None:
            return
        if event.get("stream") and event["stream"] != getattr(self.peer.track.hub, "key", None):
            return
        await self.send_status(event["state"], event["message"])

    async def stream_changed(self, event):
        """The operator saved this stream's profile: apply it to this listener within the second.

        Same codec: move to the new settings' hub without renegotiating (the sound changes, the
        connection stays). Another codec: ask the page to connect again with a new offer.
        Access rules that now exclude this listener close it as forbidden."""
        if self.peer is None or self.closing:
            return
        profile = await load_enabled_profile(self.slug)
        if profile is None:
            return  # disabled or deleted: stream_stopped says so
        if self.closing or self.peer is None or self.peer not in get_runtime().peers:
            return  # the listener left while the profile loaded
        refusal = profile.refusal(self.scope.get("user"), self.query_key())
        if refusal:
            await self.fail(SignalingError("forbidden", refusal, CLOSE_FORBIDDEN))
            return
        wanted = profile.stream_config().limited_by(self.limits)
        if wanted == self.wanted:
            return
        if wanted.codec != self.wanted.codec:
            logger.info("%r: codec now %s; asking the listener to renegotiate", self.peer, wanted.codec)
            self.closing = True
            message = f"The stream changed to {sdp.ENCODING_NAMES[wanted.codec]}; reconnecting."
            await self.send(text_data=json.dumps({"type": "renegotiate", "message": message}))
            await self.close(code=CLOSE_RENEGOTIATE)
            return
        logger.info("%r: settings changed; switching to the new stream", self.peer)
        self.wanted = wanted
        self.peer.switch_track(get_runtime().hubs.subscribe(wanted))

    async def stream_stopped(self, event):
        """The operator switched this stream off or deleted it: say so and close as "profile gone"."""
        await self.send_error("stream-stopped", event["message"])
        await self.close(code=CLOSE_PROFILE_NOT_FOUND)

    async def send_status(self, state, message):
        await self.send(text_data=json.dumps({"type": "status", "state": state, "message": message}))

    async def send_error(self, code, message):
        await self.send(text_data=json.dumps({"type": "error", "code": code, "message": message}))

    def query_key(self):
        return parse_qs(self.scope.get("query_string", b"").decode("latin-1")).get("key", [""])[0]

    def client_address(self):
        client = self.scope.get("client") or ("?", 0)
        return client[0]


class NoSuchSocket(AsyncWebsocketConsumer):
    """A WebSocket to any other path: its handshake is refused (HTTP 403), without a log line."""

    async def connect(self):
        await self.close()
