"""A device stream runs on the device's clock: DeviceTimeline (pure) and DeviceSource against a
fake device with a clock of its own (tests/fake_clocked_device.py; real sound cards differ
from the system clock, PulseAudio's null sink here does not)."""
import asyncio
import time

import numpy as np
import pytest

from streams.audio.config import FRAME_SAMPLES, SAMPLE_RATE
from streams.audio.deviceclock import DeviceTimeline
from streams.audio.sources import DeviceSource
from tests.fake_clocked_device import FakeClockedDevice

pytestmark = pytest.mark.times_sound  # the fake device's frames are timed against the wall clock


# -- DeviceTimeline -------------------------------------------------------------------------

def test_device_frames_are_stamped_by_the_samples_the_device_delivered():
    timeline = DeviceTimeline()
    stamps = [timeline.device_frame(i * FRAME_SAMPLES, now=100 + i * 0.021) for i in range(5)]
    assert stamps == [(i * FRAME_SAMPLES, False) for i in range(5)]  # late frames are not made up for


def test_samples_dropped_from_the_backlog_move_the_timeline_on_by_their_count():
    timeline = DeviceTimeline()
    timeline.device_frame(0, now=0.0)
    assert timeline.device_frame(FRAME_SAMPLES + 3 * FRAME_SAMPLES, now=0.1) == (4 * FRAME_SAMPLES, True)
    assert timeline.device_frame(5 * FRAME_SAMPLES, now=0.1) == (5 * FRAME_SAMPLES, False)
    assert timeline.jumps == 1


def test_after_an_outage_the_timeline_resyncs_to_the_wall_clock_and_never_goes_back():
    timeline = DeviceTimeline()
    timeline.device_frame(0, now=10.0)
    # Gone for 0.2 s: silence then runs on the wall clock, one frame per 20 ms.
    assert timeline.silence_frame(now=10.2) == (10 * FRAME_SAMPLES, True)
    assert timeline.silence_frame(now=10.22) == (11 * FRAME_SAMPLES, False)
    # Back at 10.5 s; the reopened device's ring positions start anywhere.
    pts, jumped = timeline.device_frame(7, now=10.5, resync=True)
    assert (pts, jumped) == (25 * FRAME_SAMPLES, True)
    assert timeline.device_frame(7 + FRAME_SAMPLES, now=10.52) == (26 * FRAME_SAMPLES, False)


def test_a_stream_that_starts_without_sound_begins_at_zero_and_continues_from_its_silence():
    timeline = DeviceTimeline()
    assert timeline.silence_frame(now=5.0) == (0, False)
    assert timeline.silence_frame(now=5.02) == (FRAME_SAMPLES, False)
    assert timeline.device_frame(123, now=5.03, resync=True) == (2 * FRAME_SAMPLES, False)


# -- DeviceSource on a fake device with its own clock ----------------------------------------

class FakeSubscription:
    """What DeviceSource needs of a capture subscription, fed by the fake device."""

    def __init__(self, device):
        self.device = device
        self.ring = device.ring

    @property
    def on_data(self):
        return self.device.on_data

    @on_data.setter
    def on_data(self, callback):
        self.device.on_data = callback

    def close(self):
        self.device.close()


async def take_frames(seconds, rate, jitter, during=None, frame_samples=FRAME_SAMPLES):
    """Frames (and when each left) from a DeviceSource on a fake device running for `seconds`."""
    device = FakeClockedDevice(rate, jitter)
    source = DeviceSource(FakeSubscription(device), frame_samples)
    loop = asyncio.get_running_loop()
    frames, started = [], loop.time()
    try:
        while loop.time() - started < seconds:
            frame = await source.next_frame()
            frames.append((loop.time(), frame))
            if during:
                during(loop.time() - started, device)
    finally:
        source.close()
    return frames, device.delivered


@pytest.mark.parametrize(
    "rate, frame_samples", [(48_048, 960), (47_952, 960), (48_048, 480)],
    ids=["0.1% fast", "0.1% slow", "0.1% fast, 10 ms frames"],
)
def test_frames_follow_a_device_clock_that_differs_from_the_system_clock(rate, frame_samples):
    # Blocks reach the ring up to 15 ms late, like a real driver's: still nothing may be invented.
    frames, delivered = asyncio.run(take_frames(6, rate, jitter=0.015, frame_samples=frame_samples))
    pts = [frame.pts for _, frame in frames]
    assert not any(frame.silence for _, frame in frames), "silence invented while the device was only late"
    assert sum(frame.dropped_before for _, frame in frames) == 0
    assert {len(frame.pcm) for _, frame in frames} == {frame_samples}
    assert np.all(np.diff(pts) == frame_samples), "the timeline jumped"
    # Every frame the device completed went out, and no more: the stream runs at the device's rate.
    assert delivered // frame_samples - len(frames) in (0, 1)
    # Frames per second by a line through every frame's departure (the end points alone carry a
    # wake-up's jitter): 0.1 % is 0.05 frames/s of 20 ms frames.
    times = np.array([t for t, _ in frames])
    seconds_per_frame = np.polyfit(np.arange(len(times)), times, 1)[0]
    assert 1 / seconds_per_frame == pytest.approx(rate / frame_samples, rel=0.0005)


@pytest.mark.parametrize("frame_samples", [960, 480], ids=["20 ms frames", "10 ms frames"])
def test_a_device_that_stops_gets_silence_after_200_ms_and_a_wall_clock_resync_when_back(frame_samples):
    paused = []
    frame_seconds = frame_samples / SAMPLE_RATE

    def pause_once(elapsed, device):
        if elapsed > 1 and not paused:
            paused.append(time.monotonic())
            device.pause(0.6)

    frames, _ = asyncio.run(take_frames(3, 48_000, jitter=0.0, during=pause_once, frame_samples=frame_samples))
    silence = [(t, f) for t, f in frames if f.silence]
    first_silence = silence[0][0] - paused[0]
    assert 0.18 <= first_silence <= 0.3, f"silence began {first_silence:.3f} s after the device stopped"
    gaps = np.diff([t for t, _ in silence])
    assert np.all(gaps > frame_seconds / 2) and np.all(gaps < 2 * frame_seconds), "silence is paced, never a burst"
    assert silence[0][1].jumped  # over the 200 ms that nothing was sent: the timeline keeps the wall clock's time
    back = next(i for i, (_, f) in enumerate(frames) if f.silence and not frames[i + 1][1].silence) + 1
    t_back, resumed = frames[back]
    assert not resumed.silence
    # The timeline matches the wall clock through the outage (within two frames).
    t0, f0 = frames[0]
    wall = (t_back - t0) * SAMPLE_RATE
    assert abs((resumed.pts - f0.pts) - wall) <= 2 * frame_samples
    pts = [f.pts for _, f in frames]
    assert np.all(np.diff(pts) > 0)


def test_a_backlog_beyond_the_bound_is_dropped_counted_and_skipped_in_the_timeline():
    stalled = []

    def stall_once(elapsed, device):
        if elapsed > 0.5 and not stalled:
            stalled.append(True)
            time.sleep(0.4)  # the event loop held up for 400 ms: what the bound is for

    frames, _ = asyncio.run(take_frames(1.5, 48_000, jitter=0.0, during=stall_once))
    dropped = sum(f.dropped_before for _, f in frames)
    assert 8 <= dropped <= 10, f"{dropped} frames dropped; 400 ms of backlog less one frame and 200 ms kept is 9"
    pts = np.array([f.pts for _, f in frames])
    steps = np.diff(pts) // FRAME_SAMPLES
    assert sorted(set(steps.tolist())) == [1, 1 + dropped]  # one jump, by exactly what was dropped
    assert not any(f.silence for _, f in frames)


def test_a_device_that_comes_back_with_a_backlog_resumes_on_its_newest_frame_without_a_burst():
    paused = []

    def pause_once(elapsed, device):
        if elapsed > 1 and not paused:
            paused.append(True)
            device.pause(0.6, backlog=0.2)

    frames, _ = asyncio.run(take_frames(3, 48_000, jitter=0.0, during=pause_once))
    back = next(i for i, (_, f) in enumerate(frames) if f.silence and not frames[i + 1][1].silence) + 1
    resumed = frames[back:]
    # The 200 ms the device held were already late: dropped (and counted), not sent at once.
    assert resumed[0][1].dropped_before == 9  # ten frames waiting: the newest goes out
    times = np.array([t for t, _ in resumed])
    assert np.sum(np.diff(times) < 0.005) <= 1, "frames left in a burst after the device came back"
    # And the timeline matches the wall clock through the outage (within two frames).
    (t0, f0), (t_back, first) = frames[0], resumed[0]
    assert abs((first.pts - f0.pts) - (t_back - t0) * SAMPLE_RATE) <= 2 * FRAME_SAMPLES
