"""Signaling over WebSocket: parse, validate, delegate to peers, reply.

Protocol (also in the README):
  client -> {"type": "offer", "sdp": "..."}
  server -> {"type": "answer", "sdp": "..."}         once ICE gathering is complete
  server -> {"type": "error", "code": "...", "message": "..."}
  server -> {"type": "status", "state": "...", "message": "..."}
An unknown or disabled profile gets an error and close code 4404.
"""
import json
import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from . import sdp
from .models import StreamProfile
from .peers import ListenerPeer, OfferRejected
from .runtime import get_runtime, status_group

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 1024
CLOSE_PROFILE_NOT_FOUND = 4404


@database_sync_to_async
def load_enabled_profile(slug):
    return StreamProfile.objects.filter(slug=slug, enabled=True).first()


class SignalingError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


class ListenConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        self.slug = self.scope["url_route"]["kwargs"]["slug"]
        self.peer = None
        await self.accept()
        self.profile = await load_enabled_profile(self.slug)
        if self.profile is None:
            await self.send_error("profile-not-found", f"There is no enabled stream called {self.slug!r}.")
            await self.close(code=CLOSE_PROFILE_NOT_FOUND)

    async def receive(self, text_data=None, bytes_data=None):
        if self.profile is None:
            return
        try:
            message = self.parse(text_data, bytes_data)
            handler = self.handlers.get(message["type"])
            if handler is None:
                known = ", ".join(sorted(self.handlers))
                raise SignalingError("unknown-type", f"Unknown message type {message['type']!r}; expected one of: {known}.")
            await handler(self, message)
        except SignalingError as error:
            await self.send_error(error.code, error.message)

    async def disconnect(self, code):
        if self.peer is not None:
            await self.channel_layer.group_discard(status_group(self.slug), self.channel_name)
            await self.peer.close()

    @staticmethod
    def parse(text_data, bytes_data):
        if text_data is None:
            raise SignalingError("not-text", "Messages must be JSON text, not binary frames.")
        if len(text_data.encode()) > MAX_MESSAGE_BYTES:
            raise SignalingError("too-large", f"Messages may be at most {MAX_MESSAGE_BYTES // 1024} KiB.")
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
        profile = self.profile
        runtime = get_runtime()
        # The offer's Opus limits (mono, a lower bitrate) pick a variant shared by listeners alike.
        config = profile.stream_config().limited_by(sdp.opus_receiver_limits(offer))
        self.peer = ListenerPeer(profile.slug, runtime.hubs.subscribe(config), runtime.peers)
        logger.info("%r connecting from %s", self.peer, self.client_address())
        try:
            answer = await self.peer.answer(offer, config.codec, config.answer_fmtp(), profile.answer_bandwidth_kbps())
        except OfferRejected as rejected:
            await self.peer.close()
            self.peer = None  # the listener may send a corrected offer
            raise SignalingError(rejected.code, rejected.message) from None
        await self.send(text_data=json.dumps({"type": "answer", "sdp": answer}))
        await self.channel_layer.group_add(status_group(profile.slug), self.channel_name)
        state, text = self.peer.track.hub.status
        if state != "playing":
            await self.send_status(state, text)

    handlers = {"offer": handle_offer}

    async def stream_status(self, event):
        """A state change of this listener's stream (device lost or back, ...), from the channel layer."""
        if self.peer is not None:
            await self.send_status(event["state"], event["message"])

    async def stream_stopped(self, event):
        """The operator switched this stream off or deleted it: say so and close as "profile gone"."""
        await self.send_error("stream-stopped", event["message"])
        await self.close(code=CLOSE_PROFILE_NOT_FOUND)

    async def send_status(self, state, message):
        await self.send(text_data=json.dumps({"type": "status", "state": state, "message": message}))

    async def send_error(self, code, message):
        await self.send(text_data=json.dumps({"type": "error", "code": code, "message": message}))

    def client_address(self):
        client = self.scope.get("client") or ("?", 0)
        return client[0]
