"""A preallocated ring of audio samples between a capture thread (writer) and a hub (reader).

The writer never waits: when the reader falls behind by more than the capacity,
the oldest unread samples are overwritten and counted in `dropped`. The reader
asks for exact frame sizes and gets None while a whole frame is not there yet.
Positions count samples since the ring was made (read, skipped or overwritten alike),
so a reader's position is the device's sample clock.
"""
import threading
import time

import numpy as np


class NumpyRingBuffer:
    def __init__(self, capacity, channels, dtype=np.int16):
        self.capacity = capacity
        self.channels = channels
        self._data = np.zeros((capacity, channels), dtype=dtype)
        self._lock = threading.Lock()
        self._written = 0  # samples ever written
        self._read = 0  # samples ever read or dropped
        self.dropped = 0
        self.written_at = None  # time.monotonic() of the last write

    @property
    def available(self):
        with self._lock:
            return self._written - self._read

    def write(self, block, at=None):
        """Append samples of shape (n, channels), read from the device at monotonic time `at`
        (now by default); overwrite the oldest unread ones if full."""
        at = time.monotonic() if at is None else at
        block = np.asarray(block)
        if block.ndim != 2 or block.shape[1] != self.channels:
            raise ValueError(f"expected shape (n, {self.channels}), got {block.shape}")
        with self._lock:
            if len(block) > self.capacity:
                # Only the newest `capacity` samples can ever be read; the rest count as dropped.
                self._written += len(block) - self.capacity
                block = block[-self.capacity:]
            start = self._written % self.capacity
            first = min(len(block), self.capacity - start)
            self._data[start:start + first] = block[:first]
            self._data[: len(block) - first] = block[first:]
            self._written += len(block)
            self.written_at = at
            overflow = self._written - self._read - self.capacity
            if overflow > 0:
                self._read += overflow
                self.dropped += overflow

    def read(self, n):
        """The next n samples as a new (n, channels) array, or None if fewer than n are waiting."""
        taken = self.read_with_position(n)
        return None if taken is None else taken[1]

    def read_with_position(self, n):
        """(position of the first sample, the next n samples, samples still waiting after them,
        time of the last write), or None if fewer than n are waiting."""
        if n > self.capacity:
            raise ValueError(f"cannot read {n} samples from a ring of {self.capacity}")
        with self._lock:
            if self._written - self._read < n:
                return None
            position = self._read
            start = position % self.capacity
            first = min(n, self.capacity - start)
            out = np.empty((n, self.channels), dtype=self._data.dtype)
            out[:first] = self._data[start:start + first]
            out[first:] = self._data[: n - first]
            self._read += n
            return position, out, self._written - self._read, self.written_at

    def skip(self, n):
        """Drop up to n of the oldest unread samples (counted in `dropped`); returns how many."""
        with self._lock:
            skipped = min(n, self._written - self._read)
            self._read += skipped
            self.dropped += skipped
            return skipped
