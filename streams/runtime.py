"""The process's long-lived media state, with one owner: captures, broadcast hubs and peers.

Everything here is bound to the event loop that first used it. Daphne runs one
loop for the life of the process; a test that starts a new loop gets a fresh
runtime instead of one whose tasks belong to a closed loop.
"""
import asyncio
import logging
import secrets

from channels.layers import get_channel_layer
from django.conf import settings

from .ops import livestats
from .audio import frametiming, sources
from .audio.broadcast import BroadcastHub, HubRegistry
from .audio.capture import AudioCaptureManager
from .ops.loopwatch import LoopLagMonitor
from .ops.limits import LocalAdmission
from .ops.memory import release_free_memory

logger = logging.getLogger(__name__)

IDLE_RELEASE_SECONDS = 2


def status_group(profile_id, worker_id=None):
    """The channel-layer group of the listeners of a profile's stream (control messages only, never
    audio); with `worker_id`, only those connected to that worker process. Keyed by the profile's
    primary key, not its slug: an operator may rename the slug, and the listeners who came by the
    old one must still hear of the stream. (Members are kept joined by streams/groups.py.)"""
    return f"stream.{profile_id}" if worker_id is None else f"stream.{profile_id}.{worker_id}"


class StreamRuntime:
    def __init__(self):
        self.worker_id = secrets.token_hex(4)
        self.captures = AudioCaptureManager(settings.RTC_CAPTURE_LINGER_SECONDS)
        self.hubs = HubRegistry(self.make_hub, on_empty=self._went_idle)
        self.peers = set()
        self.loop_lag = LoopLagMonitor(every_minute=self._every_minute)
        self._pending = set()
        # Listener limits, and open sockets per address: over this process, or over every worker
        # (counted in Redis).
        self.admission, self.sockets = LocalAdmission(), LocalAdmission()
        if settings.REDIS_URL:
            from .relay import wire
            from .relay.admission import ClusterAdmission

            self.admission = ClusterAdmission(settings.REDIS_URL, self.worker_id)
            self.sockets = ClusterAdmission(settings.REDIS_URL, self.worker_id, names=wire.SOCKET_COUNTS)
        # What other threads (admin, /metrics) may read: the loop's own snapshot of the above.
        process = livestats.process_name(self.worker_id)
        self.snapshots = livestats.SnapshotPublisher(lambda: livestats.take(self, process), process,
                                                     settings.REDIS_URL or None)

    @property
    def snapshot(self):
        """The live numbers the event loop published last (a frozen livestats.ProcessSnapshot, at
        most a second old; None before the first). Safe to read from any thread."""
        return self.snapshots.latest

    def publish_snapshot(self):
        """Publish this moment's numbers now (on the event loop) and return them."""
        return self.snapshots.publish()

    def make_hub(self, config, on_idle):
        def gone(hub):
            on_idle(hub)
            self.snapshots.changed()

        self.snapshots.changed()  # published once the loop is free: with the listener that started it
        return self._new_hub(config, gone)

    def _new_hub(self, config, on_idle):
        if settings.REDIS_URL:  # multi-process mode: the media owner encodes, this worker relays
            from .relay.worker import RelayHub

            def announce_here(slug, state, message, stream_key):
                self.announce(config.profile_id, state, message, worker_id=self.worker_id, stream_key=stream_key)

            return RelayHub(config, settings.RTC_LISTENER_QUEUE_PACKETS, settings.REDIS_URL, self.worker_id,
                            announce_here, on_idle)

        def announce(slug, state, message):  # a hub says its slug; its listeners are the profile's
            self.announce(config.profile_id, state, message)

        return BroadcastHub(config, settings.RTC_LISTENER_QUEUE_PACKETS, self.open_source, announce, on_idle,
                            per_listener=settings.RTC_ENCODE_PER_LISTENER)

    def _every_minute(self):
        frametiming.log_minute(self.hubs.running())
        release_free_memory()

    def _went_idle(self):
        """The last stream stopped. Once its peers have finished closing, and if nobody came
        back meanwhile, give the memory the listeners used back to the system."""
        def release_if_still_idle():
            if not self.peers and not self.hubs.running():
                release_free_memory(collect_garbage=True)

        asyncio.get_running_loop().call_later(IDLE_RELEASE_SECONDS, release_if_still_idle)

    def open_source(self, config, on_device_state):
        return sources.open_source(config, self.captures, on_device_state)

    def announce(self, profile_id, state, message, worker_id=None, stream_key=None):
        """Tell every listener of the profile `profile_id` (in any process sharing the channel layer),
        or only those of one worker, or of one stream variant (`stream_key`), about a state change."""
        self.snapshots.changed()
        event = {"type": "stream.status", "state": state, "message": message, "stream": stream_key}
        group = status_group(profile_id, worker_id)
        task = asyncio.get_running_loop().create_task(get_channel_layer().group_send(group, event))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def close(self):
        """Close every peer, stop every hub and capture (server shutdown)."""
        peers = list(self.peers)
        await asyncio.gather(*(peer.close() for peer in peers), return_exceptions=True)
        self.hubs.stop_all()
        await self.captures.close()
        self.loop_lag.stop()
        await self.snapshots.close()
        await self.admission.close()
        await self.sockets.close()
        if peers:
            logger.info("closed %d listener(s) on shutdown", len(peers))


_runtime = None
_runtime_loop = None


def current_runtime():
    """This process's runtime if it has one, from any thread (which may read its `snapshot`, never
    its hubs, peers or captures: those belong to the event loop)."""
    return _runtime


def get_runtime():
    global _runtime, _runtime_loop
    loop = asyncio.get_running_loop()
    if _runtime is None or _runtime_loop is not loop:
        _runtime, _runtime_loop = StreamRuntime(), loop
    return _runtime
