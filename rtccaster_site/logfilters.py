"""Log lines that clients can provoke must not flood the log: at most a few of a kind a minute.

`RepeatLimit` lets through at most `per_minute` records of one kind (logger, level and message
template, whatever the arguments) in each minute; the first one let through after a quiet
spell says how many were held back before it. Together with size rotation (settings.LOGGING)
the log stays bounded whatever clients send.
"""
import logging
import time

WINDOW_SECONDS = 60


class RepeatLimit(logging.Filter):
    def __init__(self, per_minute=20, clock=time.monotonic):
        super().__init__()
        self.per_minute = per_minute
        self._clock = clock
        self._kinds = {}  # (logger, level, template) -> [window start, let through, held back]

    def filter(self, record):
        now = self._clock()
        kind = (record.name, record.levelno, str(record.msg))
        window = self._kinds.get(kind)
        if window is None or now - window[0] >= WINDOW_SECONDS:
            held_back = window[2] if window else 0
            self._kinds[kind] = [now, 1, 0]
            if held_back:
                record.msg = f"[{held_back} more like this held back in the last minute] {record.msg}"
            if len(self._kinds) > 10_000:  # kinds are templates, so few; but never grow without bound
                self._kinds = {kind: self._kinds[kind]}
            return True
        if window[1] < self.per_minute:
            window[1] += 1
            return True
        window[2] += 1
        return False
