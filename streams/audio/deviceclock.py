"""The timeline of a device stream: one clock, the device's own.

A device stream's RTP time counts the samples the device delivered, nothing else. Frame
`n` of the device (its first sample at ring position `p`) has pts `p + offset`; the offset
only changes when the device was gone and the stream filled the gap with silence on the
wall clock. So:

- a device that is merely late makes no frame at all (the timeline waits for it);
- samples dropped from the backlog (or overwritten in the ring) move the pts on by
  exactly their count: the timeline stays on the device's clock, the receiver sees a
  timestamp jump, not audio arriving later and later;
- a device 0.1 % fast or slow makes packets 0.1 % more or less often, as it should;
- after an outage the first frame re-syncs to the wall clock: its pts jumps to where the
  time that passed puts it (never back, never a burst).

Pure: times come in as arguments (seconds of a monotonic clock).
"""
from .config import FRAME_SAMPLES, SAMPLE_RATE


class DeviceTimeline:
    def __init__(self, frame_samples=FRAME_SAMPLES, rate=SAMPLE_RATE):
        self.frame_samples = frame_samples
        self.rate = rate
        self.offset = None  # pts - ring position of device frames
        self.last_pts = None
        self._anchor = None  # (time, pts) of the last frame the device delivered
        self.jumps = 0  # frames whose pts is not the previous one's plus a frame

    def device_frame(self, position, now, resync=False):
        """(pts, jumped) of the device frame starting at ring `position`, taken at `now`.
        `resync`: the device is back after an outage filled with silence."""
        if self.offset is None:
            self.offset = -position if self.last_pts is None else self.last_pts + self.frame_samples - position
        pts = position + self.offset
        if resync or (self.last_pts is not None and pts <= self.last_pts):
            target = max(self.last_pts + self.frame_samples, self.wall_clock_pts(now))
            self.offset += target - pts
            pts = target
        jumped = self._advance(pts)
        self._anchor = (now, pts)
        return pts, jumped

    def silence_frame(self, now):
        """(pts, jumped) of a silence frame sent at `now` while the device is gone: on the wall clock."""
        if self.last_pts is None:
            pts = 0
        else:
            pts = max(self.last_pts + self.frame_samples, self.wall_clock_pts(now))
        return pts, self._advance(pts)

    def wall_clock_pts(self, now):
        """Where the wall clock puts a frame taken at `now`, counted from the last device frame,
        in whole frames."""
        if self._anchor is None:
            return self.last_pts + self.frame_samples
        at, pts = self._anchor
        frames = round((now - at) * self.rate / self.frame_samples)
        return pts + max(1, frames) * self.frame_samples

    def _advance(self, pts):
        jumped = self.last_pts is not None and pts != self.last_pts + self.frame_samples
        self.jumps += jumped
        self.last_pts = pts
        return jumped
