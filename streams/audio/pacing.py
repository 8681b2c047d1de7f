"""Real-time pacing for generated sources: one frame per frame's length of the event loop's clock."""
import asyncio
import logging

from .config import FRAME_MS

logger = logging.getLogger(__name__)

FRAME_SECONDS = FRAME_MS / 1000
# If the event loop was held up for longer than this, skip ahead instead of sending a burst.
MAX_CATCH_UP_SECONDS = 0.2


class RealTimePacer:
    """`await wait()` returns when the next frame is due, with that frame's index on the clock
    (0, 1, 2, ...). After a hold-up longer than MAX_CATCH_UP_SECONDS the frames that were
    missed are skipped, and the index jumps by as many: the stream's time stays the wall
    clock's."""

    def __init__(self, name, frame_seconds=FRAME_SECONDS):
        self.name = name
        self.frame_seconds = frame_seconds
        self.late_frames = 0  # frames due more than one frame period before they could be made
        self.skipped_frames = 0
        self._start = None
        self._index = -1

    async def wait(self):
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._start is None:
            self._start = now
        self._index += 1
        deadline = self._start + self._index * self.frame_seconds
        lag = now - deadline
        if lag > MAX_CATCH_UP_SECONDS:
            skipped = int(lag / self.frame_seconds)
            logger.warning("%s: event loop held up for %.0f ms; skipping %d frames", self.name, lag * 1000, skipped)
            self._index += skipped
            self.skipped_frames += skipped
            deadline = self._start + self._index * self.frame_seconds
        elif lag > self.frame_seconds:
            self.late_frames += 1
        if deadline > now:
            await asyncio.sleep(deadline - now)
        return self._index
