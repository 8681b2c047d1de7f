"""A WHEP player for tests: tests/listener.py's decoding aiortc listener, signaling over WHEP
(POST its offer, DELETE to leave) through an HTTP function `http(method, path, body, headers)`
-> (status, headers, text): Django's AsyncClient (async_http below), or urllib over daphne in
the end-to-end tests (http_over_socket below); and what the WHEP tests count and send."""
import asyncio
import urllib.error
import urllib.request

from aiortc import RTCSessionDescription
from django.test import AsyncClient

from streams import whep
from tests.listener import Listener, ask_for_stereo


class WhepListener(Listener):
    """tests/listener.py's decoding listener, signaling over WHEP: POST its offer, DELETE to leave."""

    def __init__(self, http, endpoint, token=None, offer_edit=ask_for_stereo):
        super().__init__(endpoint, offer_edit=offer_edit)
        self.http = http
        self.endpoint = endpoint
        self.auth = {"Authorization": f"Bearer {token}"} if token else {}
        self.location = None
        self.headers = {}

    async def connect(self, timeout=15):
        transceiver = self.pc.addTransceiver("audio", direction="recvonly")
        self._record_rtp(transceiver.receiver)
        self.pc.on("track", lambda track: self._start_receiving(track))
        await self.pc.setLocalDescription(await self.pc.createOffer())
        offer = self.offer_edit(self.pc.localDescription.sdp)
        status, self.headers, body = await asyncio.wait_for(
            self.http("POST", self.endpoint, offer, {"Content-Type": "application/sdp", **self.auth}), timeout)
        if status != 201:
            raise ConnectionError(f"{status}: {body}")
        self.location = self.headers["location"]
        self.heard.answer_sdp = body
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))

    async def delete(self):
        return await self.http("DELETE", self.location, "", self.auth)

    async def close(self):
        if self._receiving:
            self._receiving.cancel()
        await self.pc.close()


def http_over_socket(base):
    """WhepListener's `http` for a real server at `base` ("http://127.0.0.1:<port>"): urllib in a
    thread; (method, path or URL, body, headers) -> (status, lowercased headers, text)."""
    def call(method, path, body, headers):
        url = base + path if path.startswith("/") else path
        request = urllib.request.Request(url, data=body.encode() if body else None, method=method,
                                         headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read().decode()

    async def http(method, path, body="", headers=None):
        return await asyncio.to_thread(call, method, path, body, headers)

    return http


def async_http(client=None):
    """An HTTP function over Django's AsyncClient: (method, path, body, headers) -> (status, headers, text)."""
    client = client or AsyncClient()

    async def http(method, path, body="", headers=None):
        headers = dict(headers or {})
        content_type = headers.pop("Content-Type", "application/octet-stream")
        response = await client.generic(method, path, body.encode() if isinstance(body, str) else body,
                                        content_type=content_type, headers=headers)
        return response.status_code, {k.lower(): v for k, v in response.headers.items()}, response.content.decode()

    return http


def without_candidates(offer):
    return "".join(line for line in offer.splitlines(keepends=True)
                   if not line.startswith(("a=candidate:", "a=end-of-candidates")))


def session_tasks():
    return [task for task in asyncio.all_tasks() if task.get_name().startswith("session-events")]


def held(runtime):
    """What listeners hold on the server: peers, listener places, WHEP sessions, event tasks, hubs."""
    return {"peers": len(runtime.peers), "seats": runtime.admission.seats_held, "sessions": len(whep.resources()),
            "tasks": len(session_tasks()), "hubs": len(runtime.hubs.running())}


NOTHING = {"peers": 0, "seats": 0, "sessions": 0, "tasks": 0, "hubs": 0}


def fragment(ufrag, pwd, candidates, end=True):
    return (f"a=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n"
            + "".join(f"a={candidate}\r\n" for candidate in candidates) + ("a=end-of-candidates\r\n" if end else ""))
