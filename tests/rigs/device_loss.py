"""A device stream from the PulseAudio rig (tests/rigs/pulseaudio.py) heard by an aiortc
listener: a profile on the null sink's monitor, whether the listener hears a tone, and the
device taken away and given back while it listens. (The `tone` fixture is in tests/conftest.py.)"""
import asyncio
import time

import numpy as np

from streams.models import StreamProfile
from tests.conftest import MONITOR
from tests.listener import dominant_frequency
from tests.rigs.rtptiming import busiest_window, timeline_steps
from tests.waiting import until

# A device that came back and sent what it held at once (ten frames) put the timeline 110 ms ahead
# of the wall clock. The busiest 100 ms is printed but not held to a bound: after a held-up event
# loop the design sends up to 200 ms of backlog at once (streams/audio/sources.py), and on a busy
# test machine that happens around an outage too (9 packets in one suite run).
MAX_TIMELINE_OFF_WALL_CLOCK_MS = 60


def device_profile(slug, channels=2, **fields):
    """A saved profile capturing the rig's null-sink monitor."""
    profile = StreamProfile(name=slug, slug=slug, source="device", device_name=MONITOR, channels=channels, **fields)
    profile.full_clean()
    profile.save()
    return profile


def latest(heard, seconds):
    samples = heard.samples()
    return samples[-int(seconds * heard.sample_rate):] if heard.sample_rate else samples


def rms(samples):
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) if len(samples) else 0.0


def hears(listener, hz, window=0.5):
    """Whether the last `window` seconds the listener decoded are a tone of `hz` (left channel)."""
    heard = listener.heard
    recent = latest(heard, window)
    if len(recent) < window * max(heard.sample_rate, 1) * 0.9:
        return False
    return rms(recent[:, 0]) > 1000 and abs(dominant_frequency(recent[:, 0], heard.sample_rate) - hz) <= 5


async def lose_and_restore_the_device(listener, pulse, tone, hz):
    """With `listener` hearing `hz`: unload the null sink, wait for `device-lost` and 1 s of what
    follows (capture retries in it, and fails), load it again and wait for the tone and the
    `playing` status. Returns the RMS heard while the device was gone, the connection state
    then, the seconds the tone took to return, the statuses since the device vanished, and the
    RTP packets from just before it vanished to a second after it came back."""
    await until(lambda: hears(listener, hz), 15, "the tone before the loss")
    # The packets from one before the loss: each later packet's marker is judged by the step into it.
    before, first_packet = len(listener.heard.messages), len(listener.heard.packets) - 1
    await asyncio.to_thread(pulse.unload_null_sink, "virt")
    statuses = lambda: [m for m in listener.heard.messages[before:] if m["type"] == "status"]  # noqa: E731
    await until(lambda: any(m["state"] == "device-lost" for m in statuses()), 5, "a device-lost status")
    lost_at = len(listener.heard.chunks)
    await until(lambda: len(listener.heard.chunks) > lost_at + 50, 5, "1 s of audio after the loss")
    silent = rms(latest(listener.heard, 0.5)[:, 0])
    connection = listener.pc.connectionState
    await asyncio.to_thread(pulse.load_null_sink, "virt")
    await asyncio.to_thread(tone, hz)  # it writes a minute of sine first: not on the listener's loop
    back = time.monotonic()
    await until(lambda: hears(listener, hz), 5, "the tone to return")
    seconds_to_return = time.monotonic() - back
    await until(lambda: statuses()[-1]["state"] == "playing", 5, "a playing status")
    returned_at = len(listener.heard.packets)
    await until(lambda: len(listener.heard.packets) >= returned_at + 50, 5, "a second of packets after the return")
    return silent, connection, seconds_to_return, statuses(), listener.heard.packets[first_packet:]


def assert_lost_then_back(silent, connection, seconds_to_return, statuses, packets):
    assert silent < 50, f"not silence after the device vanished (RMS {silent:.0f})"
    assert connection == "connected"
    assert seconds_to_return < 5
    # One status for the outage, however many retries failed in it, and one when the device is back.
    assert [m["state"] for m in statuses] == ["device-lost", "playing"]
    # Through the outage the timeline stays on the wall clock: silence on a 20 ms clock while the
    # device is gone, then a re-sync when it is back. Each place where it does not run on by one
    # frame is a jump forward that carries the RTP marker.
    steps = timeline_steps(packets)
    media_ms = (packets[-1][2] - packets[0][2]) % (1 << 32) / 48
    arrival_ms = packets[-1][0] - packets[0][0]
    print(f"outage: timeline steps {steps}, busiest 100 ms {busiest_window(packets)} packets, "
          f"timeline {media_ms:.0f} ms over {arrival_ms:.0f} ms of arrivals")
    # (None at all is right too: a device whose last audio came late ends with its backlog, and
    # the silence after it is already on the wall clock's time.)
    assert all(step > 0 and marked for step, marked in steps), steps
    marked_on = [(i, (packets[i][2] - packets[i - 1][2]) % (1 << 32), packets[i][1] - packets[i - 1][1])
                 for i in range(1, len(packets)) if packets[i][4]]
    assert len(marked_on) == len(steps), \
        f"a marker where the timeline ran on: (index, timestamp step, sequence step) {marked_on}; steps {steps}"
    assert abs(media_ms - arrival_ms) <= MAX_TIMELINE_OFF_WALL_CLOCK_MS
