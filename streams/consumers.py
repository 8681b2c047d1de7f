"""Signaling over WebSocket: parse, validate, delegate to a ListenerSession (streams/session.py), reply.

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

from autobahn.exception import Disconnected  # what daphne raises on a send to a closed socket
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from .ops.limits import MessageRate, Seat
from .models import not_found_message
from .runtime import get_runtime
from .session import ListenerSession, SessionRefused, load_enabled_profile

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 1024
# Daphne closes a socket whose message is over MAX_MESSAGE_BYTES itself, with 1009; an
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
# How each way a session can be refused or end closes the socket (none: it stays open).
CLOSE_CODES = {
    "too-many-listeners": CLOSE_TOO_MANY_LISTENERS,
    "ice-timeout": CLOSE_TIMEOUT,
    "connection-failed": CLOSE_CONNECTION_FAILED,
    "forbidden": CLOSE_FORBIDDEN,
    "stream-stopped": CLOSE_PROFILE_NOT_FOUND,
    "internal-error": CLOSE_INTERNAL_ERROR,
}


class SignalingError(Exception):
    """Answered with an error message; with close_code, the socket is then closed."""

    def __init__(self, code, message, close_code=None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.close_code = close_code


class ListenConsumer(AsyncWebsocketConsumer):
    # No channel of its own in the Channels layer: the listener's session follows the stream with
    # its own (streams/session.py), so the socket neither waits on the layer nor dies with it
    # (Channels closes a consumer whose layer receive fails: a Redis restart would end every
    # socket with 1011). An alias that names no layer is how Channels is told so.
    channel_layer_alias = None

    async def connect(self):
        self.slug = self.scope["url_route"]["kwargs"]["slug"]
        self.session = None  # the listener's ListenerSession, from its offer on
        self.socket_seat = None  # its place among its address's open sockets
        self.offer_timer = None
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
        if self.session is None and not self.closing:
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
        """Give back what this connection took: its timer, its listener session and its place
        among its address's sockets. Every path out of a connection comes here; it may come twice."""
        if self.offer_timer is not None:
            self.offer_timer.cancel()
        session, self.session = self.session, None
        try:
            if session is not None:
                await session.end()
        finally:
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
        if self.session is not None:
            raise SignalingError("second-offer", "This connection already has a stream; open a new one to renegotiate.")
        offer = message.get("sdp")
        if not isinstance(offer, str) or not offer.strip():
            raise SignalingError("invalid-sdp", 'An offer needs its SDP as a string in "sdp".')
        self.session = ListenerSession(self.profile, self.client_address(), user=self.scope.get("user"),
                                       key=self.query_key(), on_status=self.send_status, on_end=self.session_ended)
        try:
            answer = await self.session.start(offer)
        except SessionRefused as refused:
            # Nothing is held; the listener may send a corrected offer, within the same offer deadline.
            self.session = None
            raise SignalingError(refused.code, refused.message, CLOSE_CODES.get(refused.code)) from None
        if self.session is None or self.session.ended:
            return  # it ended while answering (the stream stopped, say): session_ended said so
        await self.send(text_data=json.dumps({"type": "answer", "sdp": answer}))
        self.offer_timer.cancel()  # from here on the peer's ICE deadline holds
        state, text = self.session.stream_status()
        if state != "playing":
            await self.send_status(state, text)

    handlers = {"offer": handle_offer}

    async def session_ended(self, code, message):
        """The listener's session ended by itself (ICE timeout, failure, the operator's change):
        tell the listener and close the socket."""
        if self.closing:
            return
        if code == "renegotiate":
            self.closing = True
            await self.send(text_data=json.dumps({"type": "renegotiate", "message": message}))
            await self.close(code=CLOSE_RENEGOTIATE)
            return
        await self.fail(SignalingError(code, message, CLOSE_CODES[code]))

    async def send(self, text_data=None, bytes_data=None, close=False):
        """A message to the listener, unless its socket is already gone: a listener that hangs up
        may close DTLS a moment before its WebSocket, and the session ending on the first then
        finds daphne's protocol closed. There is nobody left to tell; its disconnect follows."""
        try:
            await super().send(text_data, bytes_data, close)
        except Disconnected:
            logger.info("%s: the socket closed before a message could reach it", self.client_address())

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
