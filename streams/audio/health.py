"""Is the source sound healthy? Silence and clipping alarms, from the levels of each frame.

An operator whose desk fell silent (a muted channel, a cable out) or that drives the input
into clipping wants to know before the listeners complain. Per frame the hub measures the
level (`frame_level_dbfs`) and the share of samples at full scale (`clipped_fraction`);
`SourceHealth` turns those into alarms with hysteresis, one change at a time:
- "source-silent": every frame below the silence threshold for `silence_seconds`; it ends
  with the first frame above it;
- "source-clipping": more than `clipping_percent` % of the samples of the last second at full
  scale; it ends after a whole second at or below that.
Pure: the frames and their times come in as arguments.
"""
import collections
from dataclasses import dataclass

import numpy as np

FULL_SCALE = 32767
SILENT_DBFS = -120.0  # the level reported for digital silence (log of 0)
CLIPPING_WINDOW_SECONDS = 1.0

SILENT = "source-silent"
CLIPPING = "source-clipping"
MESSAGES = {
    SILENT: "The source is silent.",
    CLIPPING: "The source is clipping: its level is too high.",
}


def frame_level_dbfs(pcm):
    """RMS level of int16 samples in dB below full scale (a full-scale sine is -3 dBFS)."""
    if not len(pcm):
        return SILENT_DBFS
    rms = np.sqrt(np.mean(np.square(pcm, dtype=np.float64)))
    return SILENT_DBFS if rms == 0 else max(SILENT_DBFS, 20 * np.log10(rms / FULL_SCALE))


def clipped_samples(pcm):
    """Samples at full scale, either way."""
    return int(np.count_nonzero((pcm >= FULL_SCALE) | (pcm <= -FULL_SCALE)))


@dataclass(frozen=True)
class HealthLimits:
    silence_dbfs: float = -60.0
    silence_seconds: float = 10.0  # 0: no silence alarm
    clipping_percent: float = 0.1  # 0: no clipping alarm


class SourceHealth:
    """The alarm state of one stream's source (None: healthy). `observe` returns the new state
    when it changes, else None."""

    def __init__(self, limits=HealthLimits()):
        self.limits = limits
        self.state = None
        self.since = None  # when the current state began
        self._quiet_since = None
        self._window = collections.deque()  # (time, samples, clipped) of the last second
        self._window_samples = 0
        self._window_clipped = 0
        self._clean_since = None

    def observe(self, now, level_dbfs, samples, clipped):
        silent = self._silent(now, level_dbfs)
        clipping = self._clipping(now, samples, clipped)
        state = CLIPPING if clipping else SILENT if silent else None
        if state == self.state:
            return None
        self.state, self.since = state, now
        return state or "playing"

    def _silent(self, now, level_dbfs):
        if not self.limits.silence_seconds or level_dbfs >= self.limits.silence_dbfs:
            self._quiet_since = None
            return False
        if self._quiet_since is None:
            self._quiet_since = now
        return now - self._quiet_since >= self.limits.silence_seconds

    def _clipping(self, now, samples, clipped):
        if not self.limits.clipping_percent:
            return False
        self._window.append((now, samples, clipped))
        self._window_samples += samples
        self._window_clipped += clipped
        while self._window and now - self._window[0][0] >= CLIPPING_WINDOW_SECONDS:
            _, gone_samples, gone_clipped = self._window.popleft()
            self._window_samples -= gone_samples
            self._window_clipped -= gone_clipped
        over = self._window_clipped * 100 > self.limits.clipping_percent * self._window_samples
        if over:
            self._clean_since = None
            return True
        if self.state != CLIPPING:
            return False
        if self._clean_since is None:
            self._clean_since = now
        return now - self._clean_since < CLIPPING_WINDOW_SECONDS
