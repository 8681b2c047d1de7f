"""A device stream from the PulseAudio rig (tests/rigs/pulseaudio.py) heard by an aiortc
listener: a profile on the null sink's monitor, whether the listener hears a tone, and the
device taken away and given back while it listens. (The `tone` fixture is in tests/conftest.py.)"""
import asyncio
import time

import numpy as np

from streams.models import StreamProfile
from tests.conftest import MONITOR
from tests.listener import dominant_frequency
from tests.waiting import until


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
    then, the seconds the tone took to return, and the statuses since the device vanished."""
    await until(lambda: hears(listener, hz), 15, "the tone before the loss")
    before = len(listener.heard.messages)
    await asyncio.to_thread(pulse.unload_null_sink, "virt")
    statuses = lambda: [m for m in listener.heard.messages[before:] if m["type"] == "status"]  # noqa: E731
    await until(lambda: any(m["state"] == "device-lost" for m in statuses()), 5, "a device-lost status")
    lost_at = len(listener.heard.chunks)
    await until(lambda: len(listener.heard.chunks) > lost_at + 50, 5, "1 s of audio after the loss")
    silent = rms(latest(listener.heard, 0.5)[:, 0])
    connection = listener.pc.connectionState
    await asyncio.to_thread(pulse.load_null_sink, "virt")
    tone(hz)
    back = time.monotonic()
    await until(lambda: hears(listener, hz), 5, "the tone to return")
    seconds_to_return = time.monotonic() - back
    await until(lambda: statuses()[-1]["state"] == "playing", 5, "a playing status")
    return silent, connection, seconds_to_return, statuses()


def assert_lost_then_back(silent, connection, seconds_to_return, statuses):
    assert silent < 50, f"not silence after the device vanished (RMS {silent:.0f})"
    assert connection == "connected"
    assert seconds_to_return < 5
    # One status for the outage, however many retries failed in it, and one when the device is back.
    assert [m["state"] for m in statuses] == ["device-lost", "playing"]
