"""Audio sources behind one interface: read_frame() returns the next 20 ms as int16 samples.

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


def open_source(config):
    if config.source == "sine":
        return SineSource(config.sine_frequencies, config.sample_rate)
    raise ValueError(f"source {config.source!r} is not available yet")
