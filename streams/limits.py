"""Limits on what one socket, one client address and one stream may take: pure rules, tested directly."""
import time
from collections import deque


class MessageRate:
    """At most `limit` messages in any `window` seconds (a sliding window over arrival times)."""

    def __init__(self, limit, window=1.0, clock=time.monotonic):
        self.limit = limit
        self.window = window
        self._clock = clock
        self._arrivals = deque()

    def allow(self):
        now = self._clock()
        while self._arrivals and now - self._arrivals[0] >= self.window:
            self._arrivals.popleft()
        if len(self._arrivals) >= self.limit:
            return False
        self._arrivals.append(now)
        return True


def listener_refusal(*, stream_listeners, stream_max, address_listeners, address_max):
    """Why a new listener may not join (a sentence), or None. A max of None or 0 means no limit."""
    if stream_max and stream_listeners >= stream_max:
        return f"This stream is full ({stream_max} listeners). Try again later."
    if address_max and address_listeners >= address_max:
        return f"Too many listeners from your address ({address_max} at most)."
    return None


def local_refusal(peer, peers, stream_max, address_max):
    """listener_refusal for `peer` (with .slug, .address) counting the other `peers` of this process."""
    others = [p for p in peers if p is not peer]
    return listener_refusal(
        stream_listeners=sum(1 for p in others if p.slug == peer.slug), stream_max=stream_max,
        address_listeners=sum(1 for p in others if p.address == peer.address), address_max=address_max,
    )
