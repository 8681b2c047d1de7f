"""The process's long-lived media state, with one owner: captures, broadcast hubs and peers.

Everything here is bound to the event loop that first used it. Daphne runs one
loop for the life of the process; a test that starts a new loop gets a fresh
runtime instead of one whose tasks belong to a closed loop.
"""
import asyncio
import logging

from channels.layers import get_channel_layer
from django.conf import settings

from .audio import sources
from .audio.broadcast import HubRegistry
from .audio.capture import AudioCaptureManager
from .loopwatch import LoopLagMonitor
from .memory import release_free_memory

logger = logging.getLogger(__name__)


def status_group(slug):
    """The channel-layer group of a stream's listeners (control messages only, never audio)."""
    return f"stream.{slug}"


class StreamRuntime:
    def __init__(self):
        self.captures = AudioCaptureManager(settings.RTC_CAPTURE_LINGER_SECONDS)
        self.hubs = HubRegistry(
            settings.RTC_LISTENER_QUEUE_PACKETS, self.open_source, self.announce, settings.RTC_ENCODE_PER_LISTENER,
            on_empty=release_free_memory,  # the last stream went idle: give churned memory back
        )
        self.peers = set()
        self.loop_lag = LoopLagMonitor(every_minute=release_free_memory)
        self._pending = set()

    def open_source(self, config, on_device_state):
        return sources.open_source(config, self.captures, on_device_state)

    def announce(self, slug, state, message):
        """Tell every listener of `slug` (in any process sharing the channel layer) about a state change."""
        event = {"type": "stream.status", "state": state, "message": message}
        task = asyncio.get_running_loop().create_task(get_channel_layer().group_send(status_group(slug), event))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def close(self):
        """Close every peer, stop every hub and capture (server shutdown)."""
        peers = list(self.peers)
        await asyncio.gather(*(peer.close() for peer in peers), return_exceptions=True)
        self.hubs.stop_all()
        await self.captures.close()
        self.loop_lag.stop()
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
