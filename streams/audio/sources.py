"""Audio sources behind one interface: `await next_frame()` gives the next SourceFrame, one
frame (20 ms, or 10 ms for a profile that asks for it) of int16 samples of shape
(frame_samples, channels) with its pts on the stream's clock.

One clock per stream. A generated source is paced by the event loop's clock and counts
its own frames; a device source is clocked by its device (streams/audio/deviceclock.py): a
frame leaves as soon as the capture has delivered it, and nothing is invented while the
device is merely late. A source's channel count may differ from the stream's; the encoder
matches them.
"""
import asyncio
import math
from dataclasses import dataclass

import numpy as np

from .config import FRAME_SAMPLES, SAMPLE_RATE
from .deviceclock import DeviceTimeline
from .pacing import RealTimePacer

SINE_AMPLITUDE = 0.5  # -6 dBFS: loud enough to hear, far from clipping


@dataclass(frozen=True)
class SourceFrame:
    pcm: np.ndarray  # int16, (frame_samples, channels)
    pts: int  # in samples at SAMPLE_RATE, on the stream's one clock
    jumped: bool = False  # the timeline does not run on from the previous frame (RTP marker)
    captured_at: float = None  # monotonic time its newest sample was read from the device
    silence: bool = False  # made up while the device was gone
    dropped_before: int = 0  # frames of captured sound dropped just before this one (backlog bound)


class SineSource:
    """A continuous-phase sine per channel (e.g. 440 Hz left, 660 Hz right)."""

    def __init__(self, frequencies, sample_rate=SAMPLE_RATE, amplitude=SINE_AMPLITUDE, frame_samples=FRAME_SAMPLES):
        self.channels = len(frequencies)
        self.sample_rate = sample_rate
        self.frame_samples = frame_samples
        self._step = 2 * math.pi * np.asarray(frequencies, dtype=np.float64) / sample_rate
        self._phase = np.zeros(self.channels)
        self._scale = amplitude * 32767
        self.pacer = RealTimePacer("sine", frame_samples / sample_rate)
        self._last_index = None

    async def next_frame(self):
        index = await self.pacer.wait()
        jumped = self._last_index is not None and index != self._last_index + 1
        self._last_index = index
        return SourceFrame(self.read_frame(self.frame_samples), index * self.frame_samples, jumped)

    def read_frame(self, samples=FRAME_SAMPLES):
        """The next `samples` samples as an int16 array of shape (samples, channels)."""
        phases = self._phase + np.arange(samples)[:, None] * self._step
        self._phase = (self._phase + samples * self._step) % (2 * math.pi)
        return np.round(np.sin(phases) * self._scale).astype(np.int16)

    def close(self):
        pass


class DeviceSource:
    """Stereo frames from a shared device capture, on the device's clock.

    `next_frame()` returns as soon as the capture has delivered a frame. A device that is late
    only delays frames. A device that delivers nothing for GONE_AFTER_SECONDS is gone: frames
    of silence then go out on the wall clock until it delivers again, when the timeline
    re-syncs to the wall clock (a timestamp jump, never a burst: what it holds when it comes
    back is dropped but for its newest frame). Audio waiting beyond MAX_BACKLOG_SAMPLES
    (200 ms, after the event loop was held up) is dropped, and counted; the pts moves on by
    what was dropped.
    """

    GONE_AFTER_SECONDS = 0.2
    # After the event loop was held up, the backlog goes out at once (a burst the receiver's jitter
    # buffer absorbs); only beyond this much is it dropped. As long as the "gone" bound: a hold-up
    # that long is a gap for every listener anyway.
    MAX_BACKLOG_SAMPLES = SAMPLE_RATE // 5  # 200 ms

    def __init__(self, subscription, frame_samples=FRAME_SAMPLES):
        self.subscription = subscription
        self.frame_samples = frame_samples
        self.timeline = DeviceTimeline(frame_samples)
        self.gone = False
        self._silence = np.zeros((frame_samples, 2), dtype=np.int16)
        self._waiter = None
        self._opened_at = None
        self._next_silence_at = None
        subscription.on_data = self._data_arrived

    def _data_arrived(self):
        if self._waiter is not None:
            _wake(self._waiter)

    async def next_frame(self):
        loop = asyncio.get_running_loop()  # its clock is time.monotonic(), as the capture's
        ring = self.subscription.ring
        if self._opened_at is None:
            self._opened_at = loop.time()
        while ring.available < self.frame_samples:
            if self.gone:
                due = self._next_silence_at
            else:
                # When the device last wrote, by the ring (a wake-up may still wait in the loop's queue).
                due = (ring.written_at or self._opened_at) + self.GONE_AFTER_SECONDS
            if loop.time() >= due:
                return self._silence_frame(loop.time())
            self._waiter = waiter = loop.create_future()
            timer = loop.call_at(due, _wake, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
        return self._device_frame(loop.time())

    def _device_frame(self, now):
        ring, frame = self.subscription.ring, self.frame_samples
        # Whole frames are dropped: the timeline stays frame-aligned.
        if self.gone:
            # Back from an outage, what the device holds is already late: the stream resumes on
            # its newest whole frame (a reopened PulseAudio monitor hands over 200 ms in one read).
            dropped = (ring.available - frame) // frame
        else:
            excess = ring.available - frame - self.MAX_BACKLOG_SAMPLES
            dropped = -(-excess // frame) if excess > 0 else 0
        ring.skip(dropped * frame)
        position, block, waiting, written_at = ring.read_with_position(frame)
        resync, self.gone = self.gone, False
        pts, jumped = self.timeline.device_frame(position, now, resync=resync)
        captured_at = written_at - waiting / SAMPLE_RATE
        return SourceFrame(block, pts, jumped, captured_at, dropped_before=dropped)

    def _silence_frame(self, now):
        if not self.gone:
            self.gone = True
            self._next_silence_at = now
        self._next_silence_at = max(self._next_silence_at + self.frame_samples / SAMPLE_RATE, now)
        pts, jumped = self.timeline.silence_frame(now)
        return SourceFrame(self._silence, pts, jumped, silence=True)

    def close(self):
        self.subscription.close()


def _wake(waiter):
    if not waiter.done():
        waiter.set_result(None)


def open_source(config, captures, on_device_state):
    """The source a stream config asks for; device sources join the device's shared capture."""
    if config.source == "sine":
        return SineSource(config.sine_frequencies, config.sample_rate, frame_samples=config.frame_samples)
    return DeviceSource(captures.subscribe(config.device_name, on_device_state), config.frame_samples)
