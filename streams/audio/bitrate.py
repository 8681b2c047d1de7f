"""The bitrate an encoder really produces, measured over the last seconds (for admin and stats)."""
import collections
import time

WINDOW_SECONDS = 2.0


class BitrateMeter:
    """Count payload bytes as they are sent; `bits_per_second()` over the last WINDOW_SECONDS."""

    def __init__(self, clock=time.monotonic, window=WINDOW_SECONDS):
        self._clock = clock
        self._window = window
        self._sent = collections.deque()  # (time, bytes)
        self._total = 0

    def add(self, nbytes):
        now = self._clock()
        self._sent.append((now, nbytes))
        self._total += nbytes
        self._forget_before(now - self._window)

    def bits_per_second(self):
        now = self._clock()
        self._forget_before(now - self._window)
        if not self._sent:
            return 0
        span = max(now - self._sent[0][0], self._window / 2)  # a stream that just started is not inflated
        return round(8 * self._total / span)

    def _forget_before(self, moment):
        while self._sent and self._sent[0][0] < moment:
            self._total -= self._sent.popleft()[1]
