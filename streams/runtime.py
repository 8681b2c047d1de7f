"""The process's long-lived media state, with one owner: captures, broadcast hubs and peers.

One runtime at a time, bound to the event loop that serves. Its lifetime:

- it is made by the first get_runtime() on that loop (daphne's loop under `manage.py serve`);
- it is closed once, on that loop: by close_runtime() when serving ends (serve's shutdown
  trigger), or by itself when whoever runs the loop cancels what is left on it on the way out
  (asyncio.run and asgiref's async_to_sync do: each test scenario, each request of Django's
  sync test client); a closed runtime stays its loop's, closed, so that code still finishing
  on that loop never starts another;
- a loop that asks while another loop's runtime is still open meets one of two mistakes. The
  other loop ended without closing it: what outlives a loop is released at once (capture
  threads, the garbage-collector hook), a warning says so, and the asking loop gets a new
  runtime. Or the other loop still runs, in another thread: the asking loop gets a
  RuntimeError, since two loops would serve one process's media and closing a runtime in use
  would end its listeners.

What lives and dies with the runtime but belongs to another module (WHEP sessions, the WHEP
forwarding desk, the group keeper) is one of its parts: `runtime.part(Kind)` is its one `Kind`,
made on first use as `Kind(runtime)` and closed with it (see part()). Messages on their way out
that nobody waits for go through `runtime.send_soon(coroutine)`. Nothing else keeps media state
in a module global.

Other threads (admin, /metrics) only read current_runtime().snapshot.
"""
import asyncio
import logging
import secrets
import threading

from channels.layers import get_channel_layer
from django.conf import settings

from .ops import livestats, redispools
from .audio import frametiming, sources
from .audio.broadcast import BroadcastHub, HubRegistry
from .audio.capture import AudioCaptureManager
from .ops.loopwatch import LoopLagMonitor
from .ops.limits import LocalAdmission
from .ops.memory import release_free_memory

logger = logging.getLogger(__name__)

IDLE_RELEASE_SECONDS = 2
SEND_GRACE_SECONDS = 1  # what close() gives messages still on their way out


def status_group(profile_id, worker_id=None):
    """The channel-layer group of the listeners of a profile's stream (control messages only, never
    audio); with `worker_id`, only those connected to that worker process. Keyed by the profile's
    primary key, not its slug: an operator may rename the slug, and the listeners who came by the
    old one must still hear of the stream. (Members are kept joined by streams/groups.py.)"""
    return f"stream.{profile_id}" if worker_id is None else f"stream.{profile_id}.{worker_id}"


class StreamRuntime:
    def __init__(self):
        self.loop = asyncio.get_running_loop()
        self.closed = False
        self.worker_id = secrets.token_hex(4)
        self.captures = AudioCaptureManager(settings.RTC_CAPTURE_LINGER_SECONDS)
        self.hubs = HubRegistry(self.make_hub, on_empty=self._went_idle)
        self.peers = set()
        self.loop_lag = LoopLagMonitor(every_minute=self._every_minute)
        self._pending = set()
        self._parts = {}  # class -> the runtime's one instance of it, in the order they were made
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
        self._lifetime = self.loop.create_task(self._live(), name="runtime-lifetime")

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
        if self._idle():  # two commands that happened to overlap meanwhile opened one more
            self.send_soon(self._close_idle_connections(first=False))

    def _idle(self):
        return not self.closed and not self.peers and not self.hubs.running()

    def _went_idle(self):
        """The last stream stopped. Once its peers have finished closing, and if nobody came
        back meanwhile, give the memory and the Redis connections the listeners used back."""
        def release_if_still_idle():
            if self._idle():
                release_free_memory(collect_garbage=True)
                self.send_soon(self._close_idle_connections(first=True))

        asyncio.get_running_loop().call_later(IDLE_RELEASE_SECONDS, release_if_still_idle)

    async def _close_idle_connections(self, first):
        """Close the connections to Redis that the listeners made this process's channel layer open
        and nothing uses now (streams/ops/redispools.py). Said in the log the `first` time in a
        spell of idleness, and whenever it closed any."""
        try:
            closed = await redispools.close_idle(*redispools.channel_layer_clients(get_channel_layer()))
        except Exception:  # a bug: say so; the process serves on with the connections open
            logger.exception("closing the unused connections to Redis failed")
            return
        if first or closed:
            logger.info("idle: memory given back, %d unused connection(s) to Redis closed", closed)
    def open_source(self, config, on_device_state):
        return sources.open_source(config, self.captures, on_device_state)

    def announce(self, profile_id, state, message, worker_id=None, stream_key=None):
        """Tell every listener of the profile `profile_id` (in any process sharing the channel layer),
        or only those of one worker, or of one stream variant (`stream_key`), about a state change."""
        self.snapshots.changed()
        event = {"type": "stream.status", "state": state, "message": message, "stream": stream_key}
        self.send_soon(get_channel_layer().group_send(status_group(profile_id, worker_id), event))

    def send_soon(self, coroutine):
        """Run `coroutine` (a message on its way out, or other short work) on this runtime's loop without waiting for it.
        The task is kept until it is done (asyncio keeps only a weak reference) and close() gives it
        SEND_GRACE_SECONDS to finish. A send that fails (the channel layer's Redis restarting, say)
        is logged as a warning, once. Call on the runtime's loop."""
        task = self.loop.create_task(coroutine)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        task.add_done_callback(_log_failed_send)
        return task

    def part(self, kind):
        """The runtime's one `kind` (a class), made on first use as `kind(self)`. When the runtime
        closes, its parts are closed first (each one's `async close()`, if it has one), the newest
        first, as a `with` stack unwinds: while the peers, hubs and listener limits they use still
        work, so that a part ends what it holds by its usual path. A closed runtime makes no new
        part (RuntimeError); those it has stay, closed, for code still finishing on its loop.
        Looked up by class, so that this module imports none of theirs. Call on the runtime's loop."""
        found = self._parts.get(kind)
        if found is None:
            if self.closed:
                raise RuntimeError(f"the media runtime is closed: it makes no new {kind.__name__}")
            found = self._parts[kind] = kind(self)
        return found

    async def _live(self):
        """Waits for as long as the loop runs: cancelled by whoever ends the loop (asyncio.run,
        async_to_sync), it closes the runtime while the loop can still run its closing."""
        try:
            await self.loop.create_future()
        except asyncio.CancelledError:
            await self.close()
            raise

    async def close(self):
        """Close every peer, stop every hub, capture and task of the runtime (serving ends, or its
        loop does). Once: a later call returns at once."""
        if self.closed:
            return
        self.closed = True
        if asyncio.current_task() is not self._lifetime:
            self._lifetime.cancel()
        await self._close_parts()
        peers = list(self.peers)
        await asyncio.gather(*(peer.close() for peer in peers), return_exceptions=True)
        self.hubs.stop_all()
        await self.captures.close()
        self.loop_lag.stop()
        await self.snapshots.close()
        await self.admission.close()
        await self.sockets.close()
        await self._finish_sends()
        if peers:
            logger.info("closed %d listener(s) on shutdown", len(peers))

    async def _close_parts(self):
        for part in reversed(list(self._parts.values())):
            close = getattr(part, "close", None)
            if close is None:
                continue
            try:
                await close()
            except Exception:  # the rest of the runtime must close all the same
                logger.exception("closing the media runtime's %s failed", type(part).__name__)

    async def _finish_sends(self):
        """Give the messages on their way out, those sent while closing included, SEND_GRACE_SECONDS
        in all; cancel the rest and let them end, so that none is left pending on the loop."""
        deadline = self.loop.time() + SEND_GRACE_SECONDS
        while self._pending:
            _, late = await asyncio.wait(list(self._pending), timeout=max(0.0, deadline - self.loop.time()))
            if late and self.loop.time() >= deadline:
                for task in late:
                    task.cancel()
                await asyncio.wait(late)
                return

    def abandon(self):
        """Release what outlives the event loop, without it: for a runtime whose loop ended without
        closing it. Capture threads are stopped and the garbage-collector hook removed; its tasks
        (its parts' too) ended with the loop, and its sockets (peers, Redis) are left to the garbage
        collector."""
        self.closed = True
        for capture in self.captures.captures():
            capture.stop()
        self.loop_lag.abandon()


def _log_failed_send(task):
    if not task.cancelled() and task.exception() is not None:
        logger.warning("a message could not be sent: %s", task.exception() or type(task.exception()).__name__)


_runtime = None  # the one runtime (see the module's docstring), open or closed with its loop
_runtime_lock = threading.Lock()  # loops in two threads asking at once make one runtime, not two


def current_runtime():
    """This process's runtime if it has one, from any thread (which may read its `snapshot`, never
    its hubs, peers or captures: those belong to the event loop)."""
    return _runtime


def get_runtime():
    """The runtime of the running loop: made on the first call, closed for the rest of the loop
    once it was closed."""
    global _runtime
    loop = asyncio.get_running_loop()
    with _runtime_lock:
        if _runtime is None or _runtime.loop is not loop:
            if _runtime is not None and not _runtime.closed:
                _retire(_runtime)
            _runtime = StreamRuntime()
        return _runtime


async def close_runtime():
    """Close the runtime, if there is one (serving ends). On its loop."""
    if _runtime is not None:
        await _runtime.close()


def _retire(runtime):
    """`runtime` is still open and another loop asks for one (see the module's docstring)."""
    if runtime.loop.is_running():
        raise RuntimeError("the media runtime serves another running event loop: one loop serves at a time")
    logger.warning("the event loop of the last media runtime ended without closing it: its capture threads are "
                   "stopped, its peers' and Redis sockets left to the garbage collector")
    runtime.abandon()
