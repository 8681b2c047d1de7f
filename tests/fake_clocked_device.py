"""FAKE: a capture device with a clock of its own, for what this machine cannot have.

The PulseAudio null sink of tests/rigs/pulseaudio.py runs on the system clock, exactly 48,000
samples a second. Real sound cards do not: one may run at 48,048 Hz, another at 47,952 Hz
(0.1 % either way). This fake stands where a device capture's subscription stands (a ring
buffer and an `on_data` callback, see streams/audio/capture.py) and writes 10 ms blocks of a
1 kHz tone from a thread, on its own clock: block k is complete at `k * 480 / rate` seconds
and reaches the ring a random 0-`jitter` seconds later, as blocks from a real driver do.
`pause(seconds)` makes it deliver nothing for a while (a device that is gone), after which it
starts afresh, with no backlog; `pause(seconds, backlog=0.2)` has it come back with 200 ms
written at once, as PulseAudio's monitor of a reloaded sink does (seen end to end: ten frames
in one read).
"""
import asyncio
import threading
import time

import numpy as np

from streams.audio.capture import BLOCK_SAMPLES, CAPTURE_CHANNELS, RING_SECONDS
from streams.audio.config import SAMPLE_RATE
from streams.audio.ringbuffer import NumpyRingBuffer

TONE_HZ = 1000


class FakeClockedDevice:
    def __init__(self, rate, jitter=0.0, seed=1):
        self.rate = rate
        self.jitter = jitter
        self.ring = NumpyRingBuffer(SAMPLE_RATE * RING_SECONDS, CAPTURE_CHANNELS)
        self.on_data = lambda: None
        self.delivered = 0  # samples written to the ring
        self._rng = np.random.default_rng(seed)
        self._loop = asyncio.get_running_loop()
        self._stop = threading.Event()
        self._pause_until = 0.0
        self._backlog_blocks = 0
        self._thread = threading.Thread(target=self._run, name="fake-clocked-device", daemon=True)
        self._thread.start()

    def pause(self, seconds, backlog=0.0):
        self._backlog_blocks = round(backlog * self.rate / BLOCK_SAMPLES)
        self._pause_until = time.monotonic() + seconds

    def _run(self):
        start, block = time.monotonic(), 0
        t = np.arange(BLOCK_SAMPLES)
        while not self._stop.is_set():
            complete = start + (block + 1) * BLOCK_SAMPLES / self.rate
            arrives = complete + self._rng.uniform(0, self.jitter)
            delay = arrives - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            if time.monotonic() < self._pause_until:
                self._stop.wait(self._pause_until - time.monotonic())
                # A device that comes back starts afresh, with its backlog (if any) already complete.
                start, block = time.monotonic() - self._backlog_blocks * BLOCK_SAMPLES / self.rate, 0
                if self._backlog_blocks:  # in one read, as the capture of a PulseAudio source takes it
                    self._write(0, np.arange(self._backlog_blocks * BLOCK_SAMPLES))
                    block = self._backlog_blocks
                continue
            self._write(block, t)
            block += 1

    def _write(self, block, t):
        """Samples `t` (indices) counted from the start of `block`, into the ring at once."""
        phase = 2 * np.pi * TONE_HZ * (block * BLOCK_SAMPLES + t) / SAMPLE_RATE
        samples = np.repeat((np.sin(phase) * 16000).astype(np.int16)[:, None], CAPTURE_CHANNELS, axis=1)
        self.ring.write(samples, at=time.monotonic())
        self.delivered += len(t)
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.on_data)

    def close(self):
        self._stop.set()
        self._thread.join(2)
