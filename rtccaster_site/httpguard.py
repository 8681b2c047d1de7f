"""Limits at the HTTP server, before Django sees a request: the one place that reaches into
daphne's and Twisted's HTTP classes (their names and hooks are checked by tests/test_httpguard.py).

- A request must finish its headers within HEADER_SECONDS of its first byte (or of the
  connection, for the first one): a client trickling headers (slowloris) gets 408 and is
  disconnected, however slowly it keeps sending.
- Headers over MAX_HEADER_BYTES (a line, or all together) get 431 at once (Twisted would
  answer 400, or, for one long line, nothing at all).
- A body over MAX_BODY_BYTES gets 413 without being read: by its Content-Length before any
  of it arrives, or as soon as a chunked body passes the limit.
- An idle keep-alive connection is closed after IDLE_SECONDS (Twisted's default is 12 hours).
- No `Server:` banner.
"""
from daphne.http_protocol import HTTPFactory, WebRequest
from daphne.server import Server
from twisted.web import http

HEADER_SECONDS = 10
IDLE_SECONDS = 60
MAX_HEADER_BYTES = 16 * 1024
MAX_BODY_BYTES = 1024 * 1024  # forms and signaling are small; this app takes no uploads

REASONS = {408: b"Request Timeout", 413: b"Content Too Large", 431: b"Request Header Fields Too Large"}


def refuse(channel, status):
    """Answer `status` and close: the request is not read any further, nor handed to the app."""
    if channel.transport is None or getattr(channel, "_refused", False):
        return
    channel._refused = True
    body = REASONS[status] + b"\r\n"
    channel.transport.write(b"HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                            b"Connection: close\r\n\r\n%s" % (status, REASONS[status], len(body), body))
    channel.dataReceived = lambda data: None  # whatever else comes is dropped unread
    channel.loseConnection()


class GuardedRequest(WebRequest):
    def gotLength(self, length):
        if length is not None and length > MAX_BODY_BYTES:
            refuse(self.channel, 413)
            return
        self._body_bytes = 0
        super().gotLength(length)

    def handleContentChunk(self, data):
        if getattr(self.channel, "_refused", False):
            return
        self._body_bytes += len(data)
        if self._body_bytes > MAX_BODY_BYTES:  # chunked: no length was given
            refuse(self.channel, 413)
            return
        super().handleContentChunk(data)

    def requestReceived(self, command, path, version):
        if not getattr(self.channel, "_refused", False):
            super().requestReceived(command, path, version)


class GuardedChannel(http.HTTPChannel):
    MAX_LENGTH = MAX_HEADER_BYTES  # one line
    totalHeadersSize = MAX_HEADER_BYTES

    _header_timer = None
    _header_bytes = 0

    def connectionMade(self):
        super().connectionMade()
        self._start_header_clock()

    def lineReceived(self, line):
        if self._header_timer is None:
            self._start_header_clock()  # the next request on a kept-alive connection has begun
        self._header_bytes += len(line) + 2
        if self._header_bytes > MAX_HEADER_BYTES:
            refuse(self, 431)
            return
        if line == b"":
            self._stop_header_clock()  # headers complete (the body has its own limit)
        super().lineReceived(line)

    def lineLengthExceeded(self, line):
        refuse(self, 431)

    def connectionLost(self, reason):
        self._stop_header_clock()
        super().connectionLost(reason)

    def _start_header_clock(self):
        self._header_bytes = 0
        self._header_timer = self.callLater(HEADER_SECONDS, self._headers_too_slow)

    def _stop_header_clock(self):
        if self._header_timer is not None and self._header_timer.active():
            self._header_timer.cancel()
        self._header_timer = None

    def _headers_too_slow(self):
        self._header_timer = None
        refuse(self, 408)


class GuardedHTTPFactory(HTTPFactory):
    protocol = GuardedChannel

    def __init__(self, server):
        super().__init__(server)
        self.timeOut = IDLE_SECONDS

    def buildProtocol(self, addr):
        channel = super().buildProtocol(addr)
        channel.requestFactory = GuardedRequest
        return channel


class GuardedServer(Server):
    """Daphne with the limits above; and a WebSocket that breaks a limit gets a close frame
    (e.g. 1009) before the connection ends (autobahn's default drops TCP: the browser sees 1006)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, server_name="", **kwargs)

    @property
    def http_factory(self):
        return self._http_factory

    @http_factory.setter
    def http_factory(self, factory):
        # daphne makes its HTTPFactory in run(): take the guarded one instead.
        self._http_factory = GuardedHTTPFactory(self) if type(factory) is HTTPFactory else factory

    @property
    def ws_factory(self):
        return self._ws_factory

    @ws_factory.setter
    def ws_factory(self, factory):
        factory.setProtocolOptions(failByDrop=False)
        self._ws_factory = factory
