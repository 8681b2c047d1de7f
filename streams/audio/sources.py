"""Audio sources behind one interface: read_frame() returns the next 20 ms as int16 samples.

A source's channel count may differ from the stream's; the encoder matches them.

A source never blocks and never paces itself: the broadcast hub that owns it asks
for one frame every 20 ms of real time.
"""
import math

import numpy as np

from .config import FRAME_SAMPLES, SAMPLE_RATE

SINE_AMPLITUDE = 0.5  # -6 dBFS: loud enough to hear, far from clipping


class SineSource:
    """A continuous-phase sine per channel (e.g. 440 Hz left, 660 Hz right)."""

    def __init__(self, frequencies, sample_rate=SAMPLE_RATE, amplitude=SINE_AMPLITUDE):
        self.channels = len(frequencies)
        self.sample_rate = sample_rate
        self._step = 2 * math.pi * np.asarray(frequencies, dtype=np.float64) / sample_rate
        self._phase = np.zeros(self.channels)
        self._scale = amplitude * 32767

    def read_frame(self, samples=FRAME_SAMPLES):
        """The next `samples` samples as an int16 array of shape (samples, channels)."""
        phases = self._phase + np.arange(samples)[:, None] * self._step
        self._phase = (self._phase + samples * self._step) % (2 * math.pi)
        return np.round(np.sin(phases) * self._scale).astype(np.int16)

    def close(self):
        pass


class DeviceSource:
    """Stereo frames from a shared device capture, with a small jitter buffer between its clock and ours.

    Reading starts once PRIME_SAMPLES are waiting; an underrun gives silence (never a stall)
    and primes again; a backlog beyond MAX_BACKLOG_SAMPLES is dropped to keep latency low.
    """

    PRIME_SAMPLES = FRAME_SAMPLES + FRAME_SAMPLES // 4  # 25 ms
    MAX_BACKLOG_SAMPLES = FRAME_SAMPLES * 3  # 60 ms

    def __init__(self, subscription):
        self.subscription = subscription
        self.backlog_ms = 0.0  # smoothed audio waiting in the ring when a frame is taken: latency we add
        self._primed = False
        self._silence = np.zeros((FRAME_SAMPLES, 2), dtype=np.int16)

    def read_frame(self):
        ring = self.subscription.ring
        ring.trim(self.MAX_BACKLOG_SAMPLES)
        if not self._primed and ring.available < self.PRIME_SAMPLES:
            return self._silence
        waiting = ring.available
        block = ring.read(FRAME_SAMPLES)
        self._primed = block is not None
        self.backlog_ms += 0.05 * (waiting * 1000 / SAMPLE_RATE - self.backlog_ms)
        if block is None:
            return self._silence
        return block

    def close(self):
        self.subscription.close()


def open_source(config, captures, on_device_state):
    """The source a stream config asks for; device sources join the device's shared capture."""
    if config.source == "sine":
        return SineSource(config.sine_frequencies, config.sample_rate)
    return DeviceSource(captures.subscribe(config.device_name, on_device_state))
