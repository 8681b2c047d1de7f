"""Device capture: one thread per device, shared by every stream that uses the device.

A DeviceCapture opens its device off the event loop (opening may block for
seconds), reads 10 ms blocks, converts them once to 48 kHz stereo int16 and
writes each block into the ring buffer of every reader (one per broadcast hub).
A PulseAudio/PipeWire source is recorded natively through libpulse
(pulsecapture.py); any other device through PortAudio (PyAudio, or pyaudiowpatch
for WASAPI loopback on Windows).

If the device vanishes or errors, the thread reports it once ("lost", with a
message that stays the same for the whole outage), closes what it had and
retries with backoff (supervision.Backoff) until the device delivers again, which it
reports once ("capturing"), or until capture is stopped.

The AudioCaptureManager owns the captures of a process: it starts one with its
first reader and stops it a few seconds after its last reader leaves, so an
idle server does not hold the microphone.
"""
import asyncio
import contextlib
import logging
import threading
import time

import av
import numpy as np
from django.conf import settings

from . import devices as device_lookup
from . import priority
from .config import SAMPLE_RATE
from .pulsecapture import PulseRecordStream
from ..ops.supervision import MAX_RETRY_SECONDS, Backoff
from .ringbuffer import NumpyRingBuffer

logger = logging.getLogger(__name__)

BLOCK_SAMPLES = SAMPLE_RATE // 100  # 10 ms
CAPTURE_CHANNELS = 2
RING_SECONDS = 1


class DeviceLost(OSError):
    pass


class SystemClock:
    """The clock capture retries by; tests give DeviceCapture one of their own."""

    now = staticmethod(time.monotonic)

    @staticmethod
    def wait(stop, seconds):
        """Wait `seconds`, or until the `stop` event is set."""
        stop.wait(seconds)


def to_capture_format(samples, channels):
    """Interleaved int16 of `channels` channels -> (n, 2): mono is duplicated, extra channels dropped."""
    frames = samples.reshape(-1, channels)
    if channels == 1:
        return np.repeat(frames, 2, axis=1)
    return np.ascontiguousarray(frames[:, :CAPTURE_CHANNELS])


class OpenStream:
    """A PortAudio input stream at a device's rate, yielding 48 kHz stereo blocks."""

    def __init__(self, module, device):
        self.device = device
        self._resources = contextlib.ExitStack()
        self._pa = self._resources.enter_context(device_lookup.portaudio(module))
        try:
            self._open(module)
        except Exception:
            self._resources.close()
            raise

    def _open(self, module):
        # WASAPI loopback only opens at the device's own format; other APIs accept it too.
        device = self.device
        self.rate, self.channels = int(device.default_sample_rate), min(device.input_channels, CAPTURE_CHANNELS)
        self._stream = self._open_stream(module, device.index)
        self._frames_per_block = self.rate // 100
        self._resampler = None
        if self.rate != SAMPLE_RATE:
            self._resampler = av.AudioResampler(format="s16", layout="stereo", rate=SAMPLE_RATE)

    def _open_stream(self, module, index):
        return self._pa.open(
            format=module.paInt16,
            channels=self.channels,
            rate=self.rate,
            input=True,
            input_device_index=index,
            frames_per_buffer=self.rate // 100,
        )

    def read_block(self):
        raw = self._stream.read(self._frames_per_block, exception_on_overflow=False)
        block = to_capture_format(np.frombuffer(raw, dtype=np.int16), self.channels)
        if self._resampler is None:
            return block
        frame = av.AudioFrame.from_ndarray(block.reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate = self.rate
        out = [f.to_ndarray().reshape(-1, CAPTURE_CHANNELS) for f in self._resampler.resample(frame)]
        return np.concatenate(out) if out else np.zeros((0, CAPTURE_CHANNELS), dtype=np.int16)

    def close(self):
        try:
            self._stream.stop_stream()
            self._stream.close()
        except (OSError, IOError):
            pass  # a vanished device's stream may be closed already
        finally:
            self._resources.close()


class DeviceCapture:
    def __init__(self, device_name, on_state, module_factory=device_lookup.pyaudio_module, clock=SystemClock):
        self.device_name = device_name
        self._status = ("starting", f"Opening {device_name}…")
        self.priority = "normal priority (RTC_AUDIO_PRIORITY off)"
        self.attempts = 0  # times the device was opened or tried
        self._on_state = on_state
        self._module_factory = module_factory
        self._clock = clock
        self._readers = {}  # ring buffer -> notify()
        self._readers_lock = threading.Lock()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"capture:{device_name}", daemon=True)

    @property
    def status(self):
        """(state, message), read together: "starting", "capturing", "lost" or "stopped", and a sentence
        for listeners that stays the same as long as the state does."""
        return self._status

    @property
    def state(self):
        return self._status[0]

    @property
    def message(self):
        return self._status[1]

    @property
    def reader_count(self):
        with self._readers_lock:
            return len(self._readers)

    def add_reader(self, notify):
        """A new ring buffer that gets every block; notify() is called (on this thread) after each."""
        ring = NumpyRingBuffer(SAMPLE_RATE * RING_SECONDS, CAPTURE_CHANNELS)
        with self._readers_lock:
            self._readers[ring] = notify
        return ring

    def remove_reader(self, ring):
        with self._readers_lock:
            self._readers.pop(ring, None)

    def start(self):
        self.thread.start()

    def stop(self):
        self._stop.set()

    def _set_state(self, state, message):
        if (state, message) != self._status:
            self._status = (state, message)
            self._on_state(self)

    def _run(self):
        if settings.RTC_AUDIO_PRIORITY:
            self.priority = priority.make_capture_thread_real_time()
            logger.info("capture %s: %s", self.device_name, self.priority)
        backoff = Backoff()
        while not self._stop.is_set():
            self.attempts += 1
            try:
                stream = self._open()
                try:
                    self._pump(stream, backoff)
                finally:
                    stream.close()
            except Exception as error:  # PortAudio and libpulse report a missing device in many ways
                if self._stop.is_set():
                    break
                delay = backoff.failed(self._clock.now())
                self._lost(error, delay)
                self._clock.wait(self._stop, delay)
        self._status = ("stopped", f"Capture of {self.device_name} stopped.")
        logger.info("capture %s: stopped", self.device_name)

    def _lost(self, error, delay):
        """Once per outage a state change, with a message that does not change while it lasts
        (listeners are told each new message); the log gets each failure and the next try."""
        if self.state == "lost":
            logger.info("capture %s: still not available (%s); next try in %g s", self.device_name, error, delay)
            return
        logger.warning("capture %s: not available (%s); retrying in %g s, then less often, up to every %g s",
                       self.device_name, error, delay, MAX_RETRY_SECONDS)
        self._set_state("lost", f"{self.device_name} is not available; capture retries until it is back.")

    def _open(self):
        source = device_lookup.pulse_source_of(self.device_name)
        if source is None:
            module = self._module_factory()
            device = device_lookup.resolve(self.device_name, module)
            if device is None:
                raise DeviceLost("no such device now")
            if device.pulse_source is None:
                return OpenStream(module, device)
            source = device.pulse_source  # default:loopback on PulseAudio
        return PulseRecordStream(source)

    def _pump(self, stream, backoff):
        while not self._stop.is_set():
            block = stream.read_block()
            read_at = time.monotonic()
            with self._readers_lock:
                readers = list(self._readers.items())
            for ring, notify in readers:
                ring.write(block, read_at)
                notify()
            if self.state != "capturing" and len(block):  # the first sound since the device (re)opened
                backoff.running(self._clock.now())
                logger.info("capture %s: capturing", self.device_name)
                self._set_state("capturing", f"Capturing {self.device_name}.")


class CaptureSubscription:
    """A reader's handle on a shared capture: its ring buffer and the capture's state."""

    def __init__(self, manager, capture, on_state):
        self.manager = manager
        self.capture = capture
        self.on_state = on_state
        self.on_data = lambda: None  # set by the reader; runs on the event loop after each block
        self.ring = capture.add_reader(self._notify)
        self._loop = asyncio.get_running_loop()

    def _notify(self):
        """On the capture thread: wake the reader on its event loop."""
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.on_data)

    def close(self):
        self.manager.unsubscribe(self)


class AudioCaptureManager:
    def __init__(self, linger_seconds=3.0, module_factory=device_lookup.pyaudio_module):
        self.linger_seconds = linger_seconds
        self._module_factory = module_factory
        self._captures = {}
        self._watchers = {}  # device name -> set of callbacks(capture) run on the event loop
        self._stop_timers = {}
        self._loop = None

    def captures(self):
        return list(self._captures.values())

    def subscribe(self, device_name, on_state):
        """Join (or start) the capture of device_name; on_state(capture) runs on the loop at each change."""
        self._loop = asyncio.get_running_loop()
        timer = self._stop_timers.pop(device_name, None)
        if timer is not None:
            timer.cancel()
        capture = self._captures.get(device_name)
        if capture is None:
            capture = DeviceCapture(device_name, self._state_changed, self._module_factory)
            self._captures[device_name] = capture
            self._watchers[device_name] = set()
            capture.start()
        self._watchers[device_name].add(on_state)
        self._loop.call_soon(on_state, capture)  # the subscriber learns the current state too
        return CaptureSubscription(self, capture, on_state)

    def unsubscribe(self, subscription):
        capture = subscription.capture
        capture.remove_reader(subscription.ring)
        self._watchers.get(capture.device_name, set()).discard(subscription.on_state)
        if capture.reader_count == 0 and self._captures.get(capture.device_name) is capture:
            self._stop_timers[capture.device_name] = self._loop.call_later(self.linger_seconds, self._stop_idle, capture)

    def _stop_idle(self, capture):
        self._stop_timers.pop(capture.device_name, None)
        if capture.reader_count == 0 and self._captures.get(capture.device_name) is capture:
            del self._captures[capture.device_name]
            del self._watchers[capture.device_name]
            capture.stop()

    def _state_changed(self, capture):
        """Called on the capture thread: hand the news to the event loop."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._notify, capture)

    def _notify(self, capture):
        for callback in list(self._watchers.get(capture.device_name, ())):
            callback(capture)

    async def close(self):
        for timer in self._stop_timers.values():
            timer.cancel()
        self._stop_timers.clear()
        captures = list(self._captures.values())
        self._captures.clear()
        self._watchers.clear()
        for capture in captures:
            capture.stop()
        await asyncio.to_thread(lambda: [capture.thread.join(5) for capture in captures])
