"""A WHEP player for tests: tests/listener.py's decoding aiortc listener, signaling over WHEP
(POST its offer, DELETE to leave) through an HTTP function `http(method, path, body, headers)`
-> (status, headers, text): Django's AsyncClient in tests/test_whep.py, urllib over daphne in
tests/test_whep_end_to_end.py."""
import asyncio

from aiortc import RTCSessionDescription

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
