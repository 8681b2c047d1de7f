"""Real-time pacing for generated sources: one 20 ms frame per 20 ms of the event loop's clock."""
import asyncio
import logging

from .config import FRAME_MS

logger = logging.getLogger(__name__)

FRAME_SECONDS = FRAME_MS / 1000
# If the event loop was held up for longer than this, skip ahead instead of sending a burst.
MAX_CATCH_UP_SECONDS = 0.2


class RealTimePacer:
    def __init__(self, name):
        self.name = name
        self.late_frames = 0  # frames due more than one frame period before they could be made
        self._deadline = None

    async def wait(self):
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._deadline is None:
            self._deadline = now
            return
        self._deadline += FRAME_SECONDS
        lag = now - self._deadline
        if lag > MAX_CATCH_UP_SECONDS:
            logger.warning("%s: event loop held up for %.0f ms; skipping ahead", self.name, lag * 1000)
            self._deadline = now
        elif lag > FRAME_SECONDS:
            self.late_frames += 1
        if self._deadline > now:
            await asyncio.sleep(self._deadline - now)
