"""How late the event loop runs: the server's own measure of whether it keeps up.

A task asks to wake every 100 ms and records how much later than asked it woke. Once a
minute the log gets the p50, p99 and max of that lag; /status.json shows the last minute's.
"""
import asyncio
import logging

import numpy as np

logger = logging.getLogger(__name__)

TICK_SECONDS = 0.1
REPORT_SECONDS = 60


def lag_summary(lags_ms):
    """p50, p99 and max of a list of lags in ms (zeros for an empty list)."""
    if not lags_ms:
        return {"p50": 0.0, "p99": 0.0, "max": 0.0, "samples": 0}
    values = np.asarray(lags_ms)
    return {
        "p50": round(float(np.percentile(values, 50)), 2),
        "p99": round(float(np.percentile(values, 99)), 2),
        "max": round(float(values.max()), 2),
        "samples": len(values),
    }


class LoopLagMonitor:
    """Measures the loop's lag; `every_minute()`, if given, runs after each minute's report."""

    def __init__(self, every_minute=None):
        self._every_minute = every_minute
        self.last_minute = lag_summary([])
        self._task = asyncio.get_running_loop().create_task(self._run(), name="loop-lag-monitor")

    async def _run(self):
        loop = asyncio.get_running_loop()
        lags = []
        report_at = loop.time() + REPORT_SECONDS
        while True:
            asked = loop.time() + TICK_SECONDS
            await asyncio.sleep(TICK_SECONDS)
            lags.append(max(0.0, loop.time() - asked) * 1000)
            if loop.time() >= report_at:
                self.last_minute = lag_summary(lags)
                logger.info("event loop lag, last minute: p50 %(p50).1f ms, p99 %(p99).1f ms, max %(max).1f ms",
                            self.last_minute)
                lags = []
                report_at += REPORT_SECONDS
                if self._every_minute:
                    self._every_minute()

    def stop(self):
        self._task.cancel()
