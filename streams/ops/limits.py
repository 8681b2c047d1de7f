"""Limits on what one socket, one client address and one stream may take: pure rules, tested directly."""
import time
from collections import deque
from dataclasses import dataclass


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


@dataclass(eq=False)
class Seat:
    """A listener's place in a stream, taken before its peer is made and given back when it goes."""

    # What the place counts towards: the profile's primary key, not its slug, which an operator
    # may rename while the listener stays; "*" for a signaling socket (counted per address only).
    profile_id: int | str
    address: str


def local_refusal(seat, held, stream_max, address_max):
    """listener_refusal for a new `seat`, counting the seats already `held` in this process."""
    return listener_refusal(
        stream_listeners=sum(1 for s in held if s.profile_id == seat.profile_id), stream_max=stream_max,
        address_listeners=sum(1 for s in held if s.address == seat.address), address_max=address_max,
    )


class LocalAdmission:
    """The limits over this process's listeners (one process). ClusterAdmission's interface."""

    def __init__(self):
        self._counted = set()

    async def admit(self, seat, stream_max, address_max):
        """Why `seat`'s listener may not join (a sentence), or None: then it counts until left(seat)."""
        refusal = local_refusal(seat, self._counted, stream_max, address_max)
        if refusal is None:
            self._counted.add(seat)
        return refusal

    def left(self, seat):
        self._counted.discard(seat)

    @property
    def seats_held(self):
        return len(self._counted)

    async def close(self):
        self._counted.clear()
