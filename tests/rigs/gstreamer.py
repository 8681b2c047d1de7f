"""A GStreamer webrtcbin listener for tests: another WebRTC stack than the server's own.

GStreamer runs in a process of its own under the system's python3 (Debian's bindings,
`tests/rigs/gstreamer_listener.py`); this side speaks the project's WebSocket protocol for it,
as a browser's page would, and reads what it decoded. Everything stays on 127.0.0.1.

    async with GStreamerListener(server.ws_url(slug), tmp_path) as listener:
        await listener.hear(2.0)
        listener.samples()      # int16, shape (n, channels), at listener.rate
"""
import asyncio
import json
import os
from pathlib import Path

import numpy as np
import websockets

from tests.listener import connect_like_a_browser
from tests.waiting import until

SYSTEM_PYTHON = "/usr/bin/python3"  # the python Debian's python3-gst-1.0 is built for
PROCESS = Path(__file__).with_name("gstreamer_listener.py")
ALL_CODECS = ("opus", "pcmu", "pcma", "g722")


class GStreamerListener:
    def __init__(self, ws_url, workdir, codecs=ALL_CODECS, mono=False, offer_edit=None):
        self.ws_url = ws_url
        self.workdir = Path(workdir)
        self.codecs = codecs
        self.mono = mono
        self.offer_edit = offer_edit or (lambda offer: offer)
        self.reports = []  # what the GStreamer process said, in order (JSON objects)
        self.messages = []  # what the server sent on the socket
        self.offer_sdp = self.answer_sdp = ""
        self.close_code = None
        self.process = None
        self._ws = None
        self._tasks = []
        self.name = f"gst-{id(self):x}"
        self.out_path = self.workdir / f"{self.name}.raw"
        self.stderr_path = self.workdir / f"{self.name}.stderr"

    async def connect(self, timeout=20):
        """Start GStreamer, send its offer, hand it the answer. Raises ConnectionError on an error reply."""
        with open(self.stderr_path, "wb") as stderr:
            self.process = await asyncio.create_subprocess_exec(
                SYSTEM_PYTHON, str(PROCESS), "--out", str(self.out_path), "--codecs", ",".join(self.codecs),
                *(["--mono"] if self.mono else []), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=stderr, env={**os.environ, "GST_DEBUG": os.environ.get("GST_DEBUG", "1")})
        self._tasks.append(asyncio.create_task(self._read_reports()))
        self.offer_sdp = self.offer_edit((await self.report("offer", timeout))["offer"])
        self._ws = await connect_like_a_browser(self.ws_url)
        await self._ws.send(json.dumps({"type": "offer", "sdp": self.offer_sdp}))
        async with asyncio.timeout(timeout):
            while True:
                message = json.loads(await self._ws.recv())
                self.messages.append(message)
                if message["type"] == "answer":
                    break
                if message["type"] == "error":
                    raise ConnectionError(f"{message['code']}: {message['message']}")
        self.answer_sdp = message["sdp"]
        self._tell(answer=self.answer_sdp)
        self._tasks.append(asyncio.create_task(self._collect_messages()))

    async def report(self, kind, timeout, after=0):
        """The first report of that kind (after the first `after` reports), waiting for it."""
        def found():
            if self.process.returncode is not None:
                raise RuntimeError(f"the GStreamer listener exited ({self.process.returncode}): {self.stderr()}")
            return next((r for r in self.reports[after:] if kind in r), None)

        return await until(found, timeout, f"the GStreamer listener's {kind!r} (stderr: {self.stderr_path})")

    @property
    def decoding(self):
        """What GStreamer decodes: {"rtp": its RTP caps, "rate": Hz, "channels": n}, or None yet."""
        return next((r["decoding"] for r in self.reports if "decoding" in r), None)

    def samples(self):
        """Everything decoded so far, int16, one column per channel."""
        decoding = self.decoding
        if decoding is None or not self.out_path.exists():
            return np.zeros((0, 1), dtype=np.int16)
        channels = decoding["channels"]
        data = np.frombuffer(self.out_path.read_bytes(), dtype="<i2")
        return data[: len(data) // channels * channels].reshape(-1, channels)

    def seconds(self):
        decoding = self.decoding
        return len(self.samples()) / decoding["rate"] if decoding else 0.0

    async def hear(self, seconds, timeout=20):
        """Wait until `seconds` of audio have been decoded; fail at once if the server gives up."""
        def heard():
            errors = [m for m in self.messages if m["type"] == "error"]
            if errors:
                raise ConnectionError(f"the server said {errors[-1]} (GStreamer: {self.problems()})")
            return self.seconds() >= seconds

        await until(heard, timeout, f"{seconds} s decoded by GStreamer ({self.stderr_path})")

    def problems(self):
        """The errors and warnings GStreamer reported."""
        return [r for r in self.reports if "error" in r or "warning" in r]

    async def stats(self, timeout=5):
        """webrtcbin's getStats(): {stats id: {field: value}}."""
        after = len(self.reports)
        self._tell(stats=True)
        return (await self.report("stats", timeout, after))["stats"]

    async def inbound_rtp(self):
        """The inbound RTP stream's stats (packets-received, packets-lost, jitter, ...)."""
        stats = await self.stats()
        return next(value for key, value in stats.items() if key.startswith("rtp-inbound-stream-stats"))

    async def closed(self, timeout):
        """Wait until the server closes the socket; its close code."""
        return await until(lambda: self.close_code, timeout, "the server to close the socket")

    def stderr(self):
        return self.stderr_path.read_text(errors="replace")[-2000:] if self.stderr_path.exists() else ""

    def _tell(self, **command):
        self.process.stdin.write((json.dumps(command) + "\n").encode())

    async def _read_reports(self):
        while line := await self.process.stdout.readline():
            self.reports.append(json.loads(line))

    async def _collect_messages(self):
        try:
            async for raw in self._ws:
                self.messages.append(json.loads(raw))
        except websockets.ConnectionClosed:
            pass
        self.close_code = self._ws.close_code

    async def close(self):
        for task in self._tasks:
            task.cancel()
        if self._ws is not None:
            await self._ws.close()
        if self.process is not None and self.process.returncode is None:
            try:
                self._tell(stop=True)
                await asyncio.wait_for(self.process.wait(), 10)
            except (TimeoutError, ConnectionError):
                self.process.kill()
                await self.process.wait()

    async def __aenter__(self):
        await self.connect()
        return self

    async def __aexit__(self, *exc_info):
        await self.close()
