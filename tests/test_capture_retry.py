"""A lost device is retried with backoff and reported once per outage: Backoff (pure), a
capture of a PulseAudio source that is not there (the real libpulse, on a clock of the test's),
and the statuses a broadcast hub announces while the rig's null sink vanishes and comes back."""
import asyncio
import os
import threading

import pytest

from streams.audio.broadcast import BroadcastHub
from streams.audio.capture import AudioCaptureManager, DeviceCapture
from streams.ops.supervision import Backoff
from streams.audio.config import StreamConfig
from streams.audio.sources import open_source
from tests.waiting import until, wait_for


# -- Backoff ----------------------------------------------------------------------------

def test_retries_wait_half_a_second_then_twice_as_long_each_time_up_to_10_s():
    backoff = Backoff()
    assert [backoff.failed(now=100.0 + i) for i in range(8)] == [0.5, 1, 2, 4, 8, 10, 10, 10]


def test_after_10_s_of_good_capture_the_next_failure_is_retried_after_half_a_second_again():
    backoff = Backoff()
    for i in range(5):
        backoff.failed(now=float(i))
    backoff.running(now=20.0)
    backoff.running(now=25.0)  # still the same stretch: it began at 20
    assert backoff.failed(now=30.0) == 0.5
    assert backoff.failed(now=30.5) == 1


def test_a_device_that_fails_soon_after_each_reopening_keeps_the_longer_waits():
    backoff = Backoff()
    delays = []
    for i in range(5):
        backoff.running(now=10.0 * i)
        delays.append(backoff.failed(now=10.0 * i + 3))  # 3 s of sound, then it fails again
    assert delays == [0.5, 1, 2, 4, 8]


# -- a capture of a source that is not there --------------------------------------------------

class SteppingClock:
    """Time that passes only when capture waits to retry: each wait moves it on at once and is
    recorded, with how many times capture had tried to open the device by then. After `steps`
    waits it really waits, for capture to be stopped (so the thread does not spin)."""

    def __init__(self, steps):
        self.time = 1000.0
        self.steps = steps
        self.waits = []  # (time the wait began, seconds, attempts so far)
        self.capture = None

    def now(self):
        return self.time

    def wait(self, stop, seconds):
        if len(self.waits) >= self.steps:
            stop.wait()
            return
        self.waits.append((self.time, seconds, self.capture.attempts))
        self.time += seconds


@pytest.fixture
def no_real_time(settings):
    settings.RTC_AUDIO_PRIORITY = False  # a capture thread that retries without real waits stays at normal priority


def test_a_missing_source_is_tried_again_at_growing_intervals_and_reported_lost_once(pulse, no_real_time):
    clock = SteppingClock(steps=8)
    states = []
    capture = DeviceCapture("PulseAudio: nowhere.monitor", lambda c: states.append(c.status), clock=clock)
    clock.capture = capture
    capture.start()
    try:
        wait_for(lambda: len(clock.waits) == 8, 30, "8 failed attempts to open a source that is not there")
    finally:
        capture.stop()
        capture.thread.join(5)
    # Each wait follows exactly one more attempt to open the source, and is twice the one before, up to 10 s.
    assert [attempts for _, _, attempts in clock.waits] == list(range(1, 9))
    assert [seconds for _, seconds, _ in clock.waits] == [0.5, 1, 2, 4, 8, 10, 10, 10]
    attempted_at = [at - clock.waits[0][0] for at, _, _ in clock.waits]
    assert attempted_at == [0, 0.5, 1.5, 3.5, 7.5, 15.5, 25.5, 35.5]
    assert states == [("lost", "PulseAudio: nowhere.monitor is not available; capture retries until it is back.")]
    assert not capture.thread.is_alive()


def test_capturing_a_pulseaudio_source_changes_no_environment_variable(pulse, monkeypatch, no_real_time):
    changed = []
    monkeypatch.setattr(os, "putenv", lambda name, value: changed.append((threading.current_thread().name, name)))
    monkeypatch.setattr(os, "unsetenv", lambda name: changed.append((threading.current_thread().name, name)))
    capture = DeviceCapture("PulseAudio: virt.monitor", lambda c: None)
    ring = capture.add_reader(lambda: None)
    capture.start()
    try:
        wait_for(lambda: ring.available >= 4800, 10, "100 ms from the monitor")
        # Recorded by libpulse itself (what pavucontrol would show), not by ALSA's "pulse" plug-in.
        recording = pulse.pactl("list", "source-outputs")
    finally:
        capture.stop()
        capture.thread.join(5)
    assert changed == []
    assert 'application.name = "RTC Caster"' in recording and 'media.name = "capture"' in recording


# -- what a hub announces ----------------------------------------------------------------------

def test_each_outage_reaches_the_hubs_announce_as_one_device_lost_and_one_playing(pulse, no_real_time):
    pulse.load_null_sink("spare")
    config = StreamConfig(slug="spare", source="device", channels=2, codec="opus",
                          device_name="PulseAudio: spare.monitor")
    announced = []

    def statuses():
        return [state for _, state, _ in announced]

    async def lose_and_restore(captures, failed_retries):
        capture = captures.captures()[0]
        before = len(announced)
        await asyncio.to_thread(pulse.unload_null_sink, "spare")
        await until(lambda: statuses()[before:] == ["device-lost"], 10, "device-lost")
        tried = capture.attempts
        await until(lambda: capture.attempts >= tried + failed_retries, 10, "retries while the source is gone")
        await asyncio.to_thread(pulse.load_null_sink, "spare")
        await until(lambda: len(announced) > before + 1, 20, "the status after device-lost")

    async def scenario():
        captures = AudioCaptureManager(linger_seconds=0)
        hub = BroadcastHub(config, 50, lambda config, on_state: open_source(config, captures, on_state),
                           announce=lambda *args: announced.append(args), on_idle=lambda hub: None)
        track = hub.subscribe()
        try:
            await until(lambda: statuses() == ["playing"], 10, "the hub to announce that it plays")
            await lose_and_restore(captures, failed_retries=1)  # a retry that fails changes nothing for listeners
            await lose_and_restore(captures, failed_retries=0)  # soon after the first: its retries start later
        finally:
            track.stop()
            await captures.close()

    try:
        asyncio.run(scenario())
    finally:
        if "spare" not in pulse.sinks():
            pulse.load_null_sink("spare")
        pulse.unload_null_sink("spare")
    assert statuses() == ["playing", "device-lost", "playing", "device-lost", "playing"]
    assert {slug for slug, _, _ in announced} == {"spare"}
    lost = [message for _, state, message in announced if state == "device-lost"]
    assert lost[0] == lost[1] == "PulseAudio: spare.monitor is not available; capture retries until it is back."
