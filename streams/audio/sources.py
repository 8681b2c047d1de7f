"""Audio sources behind one interface: `await wait_for_frame()`, then `read_frame()` returns
the next 20 ms as int16 samples of shape (960, channels).

A generated source is paced by the event loop's clock; a device source by its device: a
frame is due as soon as the capture has delivered it. A source's channel count may differ
from the stream's; the encoder matches them.
"""
import asyncio
import math

import numpy as np

from .config import FRAME_SAMPLES, SAMPLE_RATE
from .pacing import FRAME_SECONDS, RealTimePacer

SINE_AMPLITUDE = 0.5  # -6 dBFS: loud enough to hear, far from clipping


class SineSource:
    """A continuous-phase sine per channel (e.g. 440 Hz left, 660 Hz right)."""

    def __init__(self, frequencies, sample_rate=SAMPLE_RATE, amplitude=SINE_AMPLITUDE):
        self.channels = len(frequencies)
        self.sample_rate = sample_rate
        self._step = 2 * math.pi * np.asarray(frequencies, dtype=np.float64) / sample_rate
        self._phase = np.zeros(self.channels)
        self._scale = amplitude * 32767
        self.pacer = RealTimePacer("sine")

    async def wait_for_frame(self):
        await self.pacer.wait()

    def read_frame(self, samples=FRAME_SAMPLES):
        """The next `samples` samples as an int16 array of shape (samples, channels)."""
        phases = self._phase + np.arange(samples)[:, None] * self._step
        self._phase = (self._phase + samples * self._step) % (2 * math.pi)
        return np.round(np.sin(phases) * self._scale).astype(np.int16)

    def close(self):
        pass


class DeviceSource:
    """Stereo frames from a shared device capture, clocked by the device.

    A frame is taken as soon as the capture has delivered 20 ms, so audio waits in the ring
    for less than one capture block. If the device is late by half a frame, or gone, a frame
    of silence goes out instead (never a stall), on a 20 ms clock. A backlog beyond
    MAX_BACKLOG_SAMPLES (after a hiccup) is dropped to keep latency low.
    """

    MAX_BACKLOG_SAMPLES = FRAME_SAMPLES * 3  # 60 ms
    GRACE_SECONDS = FRAME_SECONDS / 2

    def __init__(self, subscription):
        self.subscription = subscription
        self.backlog_ms = 0.0  # smoothed audio left waiting in the ring after a frame is taken
        self._silence = np.zeros((FRAME_SAMPLES, 2), dtype=np.int16)
        self._data = asyncio.Event()
        self._last_frame_at = None
        subscription.on_data = self._data.set

    async def wait_for_frame(self):
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._last_frame_at is None:
            self._last_frame_at = now
        give_up = self._last_frame_at + FRAME_SECONDS + self.GRACE_SECONDS
        ring = self.subscription.ring
        while ring.available < FRAME_SAMPLES:
            self._data.clear()
            remaining = give_up - loop.time()
            if remaining <= 0:
                self._last_frame_at += FRAME_SECONDS  # keep silence on a 20 ms clock
                return
            try:
                await asyncio.wait_for(self._data.wait(), remaining)
            except TimeoutError:
                pass
        self._last_frame_at = loop.time()

    def read_frame(self):
        ring = self.subscription.ring
        ring.trim(self.MAX_BACKLOG_SAMPLES)
        block = ring.read(FRAME_SAMPLES)
        self.backlog_ms += 0.05 * (ring.available * 1000 / SAMPLE_RATE - self.backlog_ms)
        return self._silence if block is None else block

    def close(self):
        self.subscription.close()


def open_source(config, captures, on_device_state):
    """The source a stream config asks for; device sources join the device's shared capture."""
    if config.source == "sine":
        return SineSource(config.sine_frequencies, config.sample_rate)
    return DeviceSource(captures.subscribe(config.device_name, on_device_state))
