"""Is the client of a streamed HTTP response taking what it is sent? The one door to daphne's
and Twisted's internals for it.

ASGI gives no back-pressure under daphne: `send()` hands the bytes to Twisted, which keeps
whatever the client does not take, without limit. Twisted knows, though: a producer
registered on the request (`IRequest.registerProducer`, public) is paused when the
connection's write buffer is full and resumed when it has drained. What is not public is
finding daphne's request from the ASGI side; here it is found through
- the reactor's readers and writers (`IReactorFDSet`, public), each a TCP connection whose
  `protocol` is daphne's HTTP channel,
- the channel's `requests` (Twisted's HTTPChannel: the requests it is serving, in order),
- daphne's `WebRequest.client_addr`, the very list object daphne puts in the ASGI scope
  as "client" (compared by identity, so it holds behind a proxy too).
The connection's kernel send buffer is also made small (SO_SNDBUF), so that a client that
stops reading fills it within seconds rather than megabytes later.

tests/test_ogg_stream.py fails if any of this moves: a client that stops reading must be
found out and dropped. Elsewhere (the Django test client, another ASGI server) `watch`
returns None; a server whose `send()` waits (uvicorn) gives back-pressure by itself.
"""
import asyncio
import logging
import socket

logger = logging.getLogger(__name__)

SEND_BUFFER_BYTES = 64 * 1024  # asked of the kernel per streamed response (Linux gives twice that)


class ResponseFlow:
    """A push producer on one daphne request: `paused` while the client is not taking data."""

    def __init__(self, request):
        self._request = request
        self.paused = False
        self.lost = False
        self._resumed = asyncio.Event()
        self._resumed.set()
        request.registerProducer(self, True)
        self._registered = True

    # Twisted's IPushProducer, called on the reactor's thread (daphne's one event loop).
    def pauseProducing(self):
        self.paused = True
        self._resumed.clear()

    def resumeProducing(self):
        self.paused = False
        self._resumed.set()

    def stopProducing(self):
        self.lost = True
        self._resumed.set()

    async def resumed(self, timeout):
        """True once the client takes data again, False if it has not within `timeout` seconds."""
        try:
            await asyncio.wait_for(self._resumed.wait(), timeout)
        except TimeoutError:
            return False
        return not self.paused

    def close(self):
        """Let go of the request (before the response ends, or Twisted complains)."""
        if self._registered:
            self._registered = False
            try:
                if getattr(self._request, "channel", None) is not None:
                    self._request.unregisterProducer()
            except Exception as error:  # the connection went meanwhile: nothing left to unregister
                logger.debug("unregistering a response producer: %s", error)

    def abort(self):
        """Drop the connection now, with whatever it has not taken (a client that stopped reading)."""
        transport = getattr(self._request, "transport", None)
        if transport is not None:
            transport.abortConnection()


def watch(scope):
    """A ResponseFlow for the daphne request behind this ASGI `scope`, or None if there is none."""
    request = _daphne_request(scope)
    if request is None:
        return None
    _limit_send_buffer(request)
    return ResponseFlow(request)


def _daphne_request(scope):
    client = scope.get("client")
    if client is None:
        return None
    try:
        from twisted.internet import reactor

        connections = set(reactor.getReaders()) | set(reactor.getWriters())
    except Exception:  # no Twisted reactor here
        return None
    for connection in connections:
        for request in getattr(getattr(connection, "protocol", None), "requests", ()):
            if getattr(request, "client_addr", None) is client:
                return request
    return None


def _limit_send_buffer(request):
    try:
        handle = request.transport.getHandle()
        handle.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
    except (AttributeError, OSError) as error:  # not a TCP socket (a test transport): buffers stay as they are
        logger.debug("could not limit a response's send buffer: %s", error)
