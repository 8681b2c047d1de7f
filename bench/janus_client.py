"""bench/swarm.py's counting listeners, speaking to Janus's streaming plugin instead, for bench/janus.py.

The same client processes and the same counting (bench.swarm.CountingListener: RTP packets,
sequence gaps, late packets; no jitter buffer, no decoding) and the same protocol with the
parent; only the signaling differs. Over the Janus WebSocket API ("janus-protocol"), one
socket and one session per listener:
  create -> attach janus.plugin.streaming -> message {"request": "watch"} -> Janus's offer
  -> aiortc's answer -> message {"request": "start"} with it; a keepalive every 25 s.
Janus's offer must name 127.0.0.0/8 candidates only: a listener refuses any other.

    python bench/janus_client.py --url ws://127.0.0.1:8188/ --count 50 --seconds 10   # as bench/swarm.py
"""
import argparse
import asyncio
import contextlib
import json
import os
import secrets
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import websockets  # noqa: E402
from aiortc import RTCSessionDescription  # noqa: E402

from bench import swarm  # noqa: E402
from streams.webrtc import rtcinternals  # noqa: E402

MOUNTPOINT_ID = 1  # the one mountpoint bench/janus.py configures
KEEPALIVE_SECONDS = 25  # Janus ends a session silent for session_timeout (60 s)


class JanusSwarms(swarm.Swarms):
    """bench.swarm.Swarms, its client processes running this file."""

    client = os.path.abspath(__file__)


def loopback_only(offer_sdp):
    """Janus's candidates, refused unless every one is on 127.0.0.0/8."""
    for line in offer_sdp.splitlines():
        if line.startswith("a=candidate:") and not line.split()[4].startswith("127."):
            raise ConnectionError(f"Janus offered a candidate off loopback: {line}")
    return offer_sdp


class JanusListener(swarm.CountingListener):
    """A CountingListener whose signaling is Janus's: Janus offers, aiortc answers."""

    def __init__(self, url):
        super().__init__(url)
        self.session_id = self.handle_id = None
        self._tasks = []

    async def connect(self):
        self.ws = await websockets.connect(self.url, subprotocols=["janus-protocol"], max_size=None)
        self.session_id = (await self.request({"janus": "create"}))["data"]["id"]
        self.handle_id = (await self.request({"janus": "attach", "plugin": "janus.plugin.streaming"}))["data"]["id"]
        watching = await self.request({"janus": "message", "body": {"request": "watch", "id": MOUNTPOINT_ID}}, "event")
        offer = loopback_only(watching["jsep"]["sdp"])
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        for transceiver in self.pc.getTransceivers():
            rtcinternals.on_received_rtp(transceiver.receiver, self.count)  # count only, as CountingListener does
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        answer = {"type": "answer", "sdp": self.pc.localDescription.sdp}  # Janus's offer asks for stereo itself
        await self.request({"janus": "message", "body": {"request": "start"}, "jsep": answer}, "event")
        self._tasks = [asyncio.create_task(self._drain_events()), asyncio.create_task(self._keep_alive())]

    async def request(self, message, reply="success"):
        """Send a Janus API request and return its `reply` ("success", or for a plugin message the
        "event" after Janus's "ack"); an error, Janus's or the plugin's, raises ConnectionError."""
        transaction = secrets.token_hex(8)
        ids = {"session_id": self.session_id, "handle_id": self.handle_id}
        await self.ws.send(json.dumps({**message, **{k: v for k, v in ids.items() if v}, "transaction": transaction}))
        while True:
            answer = json.loads(await self.ws.recv())
            if answer.get("transaction") != transaction:
                continue
            if answer["janus"] == "error":
                raise ConnectionError(f"Janus: {answer['error']}")
            if answer["janus"] == reply:
                error = answer.get("plugindata", {}).get("data", {}).get("error")
                if error:
                    raise ConnectionError(f"Janus streaming plugin: {error}")
                return answer

    async def _drain_events(self):
        """Read what Janus sends once connected (webrtcup, media, acks): nothing here needs it."""
        with contextlib.suppress(websockets.ConnectionClosed):
            async for _ in self.ws:
                pass

    async def _keep_alive(self):
        with contextlib.suppress(websockets.ConnectionClosed):
            while True:
                await asyncio.sleep(KEEPALIVE_SECONDS)
                await self.ws.send(json.dumps({"janus": "keepalive", "session_id": self.session_id,
                                               "transaction": secrets.token_hex(8)}))

    async def close(self):
        for task in self._tasks:
            task.cancel()
        await super().close()  # closing the socket ends its session in Janus


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True, help="Janus's WebSocket API, ws://127.0.0.1:<port>/")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    # bench.swarm's protocol and counting, Janus's signaling.
    asyncio.run(swarm.main(args.url, args.count, args.seconds, args.concurrency, JanusListener))
