"""The signaling consumer without a server: Channels' WebsocketCommunicator on the app's own
WebSocket routes, in the test's process (so its runtime's peers, seats and hubs can be counted)."""
import json

from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from streams.routing import websocket_urlpatterns
from tests.helpers import AIORTC_OFFER

APP = URLRouter(websocket_urlpatterns)
# Where a browser on this machine would connect from: the per-address limits count this address.
BROWSER_HERE = ("127.0.0.1", 40000)


async def connected(slug="hall", query="", client=BROWSER_HERE, user=None):
    """A communicator on /ws/listen/<slug>/<query> whose socket the consumer accepted.
    `user`: the scope's user (what AuthMiddlewareStack would have put there), if any."""
    communicator = WebsocketCommunicator(APP, f"/ws/listen/{slug}/{query}")
    communicator.scope["client"] = client
    if user is not None:
        communicator.scope["user"] = user
    accepted, _ = await communicator.connect()
    assert accepted
    return communicator


async def send_and_receive(communicator, text=None, binary=None):
    """Send one message; the consumer's JSON reply."""
    await communicator.send_to(text_data=text, bytes_data=binary)
    return await communicator.receive_json_from(timeout=10)


async def offer(communicator, sdp=AIORTC_OFFER):
    """Send an offer (aiortc's, by default); the reply: an answer or an error."""
    return await send_and_receive(communicator, json.dumps({"type": "offer", "sdp": sdp}))


async def answer_to_offer(communicator, sdp=AIORTC_OFFER):
    """Send an offer that must be answered; the answer's SDP."""
    reply = await offer(communicator, sdp)
    assert reply["type"] == "answer", reply
    return reply["sdp"]
