"""How late the event loop runs: the server's own measure of whether it keeps up.

A task asks to wake every 100 ms and records how much later than asked it woke. Once a
minute the log gets the p50, p99 and max of that lag; /status.json shows the last minute's.
"""
import asyncio
import gc
import logging
import time

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


class GcPauses:
    """How long Python's garbage collector stops the process: the usual cause of a lag spike."""

    def __init__(self):
        self.pauses_ms = []
        self.full_collections = 0
        self._started = None
        gc.callbacks.append(self._callback)

    def _callback(self, phase, info):
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started is not None:
            self.pauses_ms.append((time.perf_counter() - self._started) * 1000)
            self.full_collections += info["generation"] == 2
            self._started = None

    def take(self):
        pauses, self.pauses_ms = self.pauses_ms, []
        full, self.full_collections = self.full_collections, 0
        return {"count": len(pauses), "full": full, "total": round(sum(pauses), 1),
                "max": round(max(pauses, default=0.0), 1)}

    def close(self):
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)


class LoopLagMonitor:
    """Measures the loop's lag (and the GC's pauses); `every_minute()`, if given, runs after each
    minute's report."""

    def __init__(self, every_minute=None):
        self._every_minute = every_minute
        self.last_minute = lag_summary([])
        self.gc_last_minute = {"count": 0, "full": 0, "total": 0.0, "max": 0.0}
        self._gc = GcPauses()
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
                self.gc_last_minute = self._gc.take()
                logger.info("event loop lag, last minute: p50 %(p50).1f ms, p99 %(p99).1f ms, max %(max).1f ms",
                            self.last_minute)
                logger.info("garbage collector, last minute: %(count)d runs (%(full)d full), %(total).1f ms in all, "
                            "longest %(max).1f ms", self.gc_last_minute)
                lags = []
                report_at += REPORT_SECONDS
                if self._every_minute:
                    self._every_minute()

    def stop(self):
        """Stop measuring. On its loop, while the loop is open."""
        self._task.cancel()
        self._gc.close()

    def abandon(self):
        """Stop, once its loop has ended without stopping it: its task ended with the loop (a closed
        loop refuses to cancel it), and the garbage-collector hook, which would outlive the loop,
        is removed. From any thread."""
        self._gc.close()
