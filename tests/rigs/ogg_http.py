"""An HTTP client of `/stream/<slug>.ogg` for tests and benchmarks: plain asyncio over TCP, HTTP/1.1
with chunked bodies as daphne sends them, the Ogg pages read as they arrive (with the time)."""
import asyncio
import contextlib
import socket
import ssl

from streams.audio.oggopus import read_pages
from tests.listener import Listener
from tests.waiting import until


def ogg_client(server, slug, query="", **client_options):
    """A client, not yet open, of the Ogg stream of `slug` on `server` (a DaphneServer)."""
    return OggHttpClient(server.port, f"/stream/{slug}.ogg{query}", **client_options)


async def until_audio_pages(clients, count, timeout=20):
    """Wait until every client has had `count` audio pages."""
    await until(lambda: all(len(client.audio_pages) >= count for client in clients), timeout,
                f"{count} audio pages at every client")


@contextlib.asynccontextmanager
async def webrtc_then_ogg(webrtc_server, ogg_server, slug):
    """A WebRTC listener of `slug` on `webrtc_server` that has had 25 packets, then an Ogg client of
    it on `ogg_server` that has had 100 audio pages: yields (listener, client), both still
    connected; on leaving, closes the client, then the listener."""
    webrtc = Listener(webrtc_server.ws_url(slug))
    await webrtc.connect()
    try:
        await until(lambda: len(webrtc.heard.packets) >= 25, 20, f"WebRTC packets from port {webrtc_server.port}")
        http = await ogg_client(ogg_server, slug).open()
        try:
            await until_audio_pages([http], 100)
            yield webrtc, http
        finally:
            await http.close()
            await asyncio.sleep(0)  # (not a wait: lets the close go out before the listener stops)
    finally:
        await webrtc.close()


class OggHttpClient:
    def __init__(self, port, path, headers=None, receive_buffer=None, host="127.0.0.1", ssl_context=None):
        """`receive_buffer`: SO_RCVBUF for the socket, to make a client whose buffers fill fast;
        `ssl_context`: an SSLContext for HTTPS."""
        self.host, self.port, self.path = host, port, path
        self.ssl = ssl_context
        self.extra_headers = headers or {}
        self.receive_buffer = receive_buffer
        self.status = None
        self.headers = {}
        self.body = b""  # a response that is not a stream (404, 429)
        self.pages = []  # (loop time of arrival, oggopus.Page)
        self.ended = False  # the response finished (its last chunk came)
        self.closed_by_server = False
        self._pending = b""
        self._reader = self._writer = None
        self._task = None

    async def open(self, timeout=10):
        """Connect, send the request, read the status and headers; a stream then reads on by itself."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if self.receive_buffer:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.receive_buffer)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            await loop.sock_connect(sock, (self.host, self.port))
            self._reader, self._writer = await asyncio.open_connection(
                sock=sock, ssl=self.ssl, server_hostname=self.host if self.ssl else None)
            lines = [f"GET {self.path} HTTP/1.1", f"Host: {self.host}:{self.port}", "User-Agent: rtc-caster-tests",
                     *(f"{name}: {value}" for name, value in self.extra_headers.items()), "", ""]
            self._writer.write("\r\n".join(lines).encode())
            status_line = await self._reader.readline()
            self.status = int(status_line.split()[1])
            while (line := await self._reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                self.headers[name.strip().lower()] = value.strip()
            if self.headers.get("transfer-encoding") != "chunked":
                self.body = await self._reader.readexactly(int(self.headers.get("content-length", 0)))
                self.ended = True
        if not self.ended:
            self._task = asyncio.create_task(self._read_stream())
        return self

    async def _read_stream(self):
        loop = asyncio.get_running_loop()
        try:
            while True:
                size = int((await self._reader.readline()).split(b";")[0], 16)
                if size == 0:
                    self.ended = True
                    return
                data = await self._reader.readexactly(size)
                await self._reader.readexactly(2)
                pages, self._pending = read_pages(self._pending + data)
                now = loop.time()
                self.pages += [(now, page) for page in pages]
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            self.closed_by_server = True

    def stop_reading(self):
        """Take nothing more from the socket (a client that stalls), keeping it open."""
        if self._task:
            self._task.cancel()
        self._writer.transport.pause_reading()

    async def closed_by_the_server(self, timeout):
        """After stop_reading(): read on, discarding, until the server ends the connection (True),
        or `timeout` seconds pass (False)."""
        self._writer.transport.resume_reading()
        try:
            async with asyncio.timeout(timeout):
                while await self._reader.read(65536):
                    pass
        except TimeoutError:
            return False
        except ConnectionError:
            pass
        return True

    @property
    def audio_pages(self):
        return [page for _, page in self.pages[2:]]

    def audio_packets(self):
        return [packet for page in self.audio_pages for packet in page.packets]

    async def close(self):
        if self._task:
            self._task.cancel()
        if self._writer:
            self._writer.close()
            try:
                await self._writer.wait_closed()
            except (ConnectionError, ssl.SSLError):  # the server still sending as we hang up
                pass
