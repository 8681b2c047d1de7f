"""A preallocated ring of audio samples between a capture thread (writer) and a hub (reader).

The writer never waits: when the reader falls behind by more than the capacity,
the oldest unread samples are overwritten and counted in `dropped`. The reader
asks for exact frame sizes and gets None while a whole frame is not there yet,
so the hub can send silence instead of stalling.
"""
import threading

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

    @property
    def available(self):
        with self._lock:
            return self._written - self._read

    def write(self, block):
        """Append samples of shape (n, channels); overwrite the oldest unread ones if full."""
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
            overflow = self._written - self._read - self.capacity
            if overflow > 0:
                self._read += overflow
                self.dropped += overflow

    def read(self, n):
        """The next n samples as a new (n, channels) array, or None if fewer than n are waiting."""
        if n > self.capacity:
            raise ValueError(f"cannot read {n} samples from a ring of {self.capacity}")
        with self._lock:
            if self._written - self._read < n:
                return None
            start = self._read % self.capacity
            first = min(n, self.capacity - start)
            out = np.empty((n, self.channels), dtype=self._data.dtype)
            out[:first] = self._data[start:start + first]
            out[first:] = self._data[: n - first]
            self._read += n
            return out

    def trim(self, keep):
        """Drop the oldest unread samples so that at most `keep` wait (bounds latency); returns how many."""
        with self._lock:
            excess = max(0, self._written - self._read - keep)
            self._read += excess
            self.dropped += excess
            return excess
