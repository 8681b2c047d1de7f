"""The process's long-lived media state, with one owner: broadcast hubs and listener peers.

Everything here is bound to the event loop that first used it. Daphne runs one
loop for the life of the process; a test that starts a new loop gets a fresh
runtime instead of one whose tasks belong to a closed loop.
"""
import asyncio
import logging

from django.conf import settings

from .audio.broadcast import HubRegistry

logger = logging.getLogger(__name__)


class StreamRuntime:
    def __init__(self):
        self.hubs = HubRegistry(settings.RTC_LISTENER_QUEUE_PACKETS)
        self.peers = set()

    async def close(self):
        """Close every peer and stop every hub (server shutdown)."""
        peers = list(self.peers)
        await asyncio.gather(*(peer.close() for peer in peers), return_exceptions=True)
        self.hubs.stop_all()
        if peers:
            logger.info("closed %d listener(s) on shutdown", len(peers))


_runtime = None
_runtime_loop = None


def get_runtime():
    global _runtime, _runtime_loop
    loop = asyncio.get_running_loop()
    if _runtime is None or _runtime_loop is not loop:
        _runtime, _runtime_loop = StreamRuntime(), loop
    return _runtime
