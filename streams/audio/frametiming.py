"""How a stream's frames fare between the device and the listeners, per stream.

Counted by the hub that sends them: the time from capture (the capture thread's read of
the frame's newest sample) to the hand-off to the listeners, the frames of captured sound
dropped to bound the backlog, the frames of silence sent while the device was gone, and the
timeline's jumps. `/status.json` shows the last minute; the log gets one line a minute.
"""
import collections
import logging

import numpy as np

logger = logging.getLogger(__name__)

WINDOW_FRAMES = 3000  # one minute of 20 ms frames (a hub of 10 ms frames keeps 6000)


class FrameTiming:
    def __init__(self, window=WINDOW_FRAMES):
        self._delays_ms = collections.deque(maxlen=window)
        self.frames = 0
        self.dropped_frames = 0
        self.silence_frames = 0
        self.timeline_jumps = 0

    def sent(self, delay_ms=None, silence=False, jumped=False, dropped_before=0):
        """One frame handed to the listeners: `delay_ms` from capture (captured frames), whether
        it is made-up silence, whether its timeline jumped, and how many frames were dropped
        just before it."""
        self.frames += 1
        if delay_ms is not None:
            self._delays_ms.append(delay_ms)
        self.silence_frames += silence
        self.timeline_jumps += jumped
        self.dropped_frames += dropped_before

    def summary(self):
        """Capture-to-send p50/p99/max over the last minute's captured frames, and the counts so far."""
        delays = np.asarray(self._delays_ms)
        percentiles = (
            {"p50": round(float(np.percentile(delays, 50)), 1), "p99": round(float(np.percentile(delays, 99)), 1),
             "max": round(float(delays.max()), 1)}
            if len(delays) else None
        )
        return {"capture_to_send_ms": percentiles, "frames": self.frames, "dropped_frames": self.dropped_frames,
                "silence_frames": self.silence_frames, "timeline_jumps": self.timeline_jumps}


def log_minute(hubs):
    """The log's minute line for each stream whose frames come from a device (or that lost some)."""
    for hub in hubs:
        summary = hub.timing.summary()
        delays = summary["capture_to_send_ms"]
        if delays is None and not (summary["dropped_frames"] or summary["silence_frames"]):
            continue  # a generated source: nothing to say
        timing = "no captured frames" if delays is None else (
            "capture to send p50 %(p50).1f ms, p99 %(p99).1f ms, max %(max).1f ms" % delays)
        logger.info("stream %s, last minute: %s; since start: %d frames, %d dropped (backlog), %d of silence "
                    "(device gone), %d timeline jumps", hub.config.slug, timing, summary["frames"],
                    summary["dropped_frames"], summary["silence_frames"], summary["timeline_jumps"])
