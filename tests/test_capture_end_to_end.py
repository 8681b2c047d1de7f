"""Device capture end to end: PulseAudio null sink -> its monitor -> daphne -> aiortc listener (FFT)."""
import asyncio
import time

import numpy as np
import pytest

from streams.models import StreamProfile
from tests.helpers import make_profile, run
from tests.rigs.admin_http import operator
from tests.listener import Listener, dominant_frequency
from tests.conftest import MONITOR
from tests.waiting import until, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def tone(pulse):
    """Start a tone into the null sink; stops the previous one."""
    players = []

    def play(hz):
        for player in players:
            player.terminate()
        players.append(pulse.play_tone(hz, seconds=60))

    yield play
    for player in players:
        player.terminate()


def device_profile(slug, channels=2, **fields):
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
    heard = listener.heard
    recent = latest(heard, window)
    if len(recent) < window * max(heard.sample_rate, 1) * 0.9:
        return False
    return rms(recent[:, 0]) > 1000 and abs(dominant_frequency(recent[:, 0], heard.sample_rate) - hz) <= 5


def test_listener_hears_what_is_played_into_the_sink_and_follows_a_change(capture_server, tone):
    device_profile("loopback")
    tone(1000)

    async def scenario():
        async with Listener(capture_server.ws_url("loopback")) as listener:
            await until(lambda: hears(listener, 1000), 15, "1 kHz from the monitor")
            tone(2000)
            await until(lambda: hears(listener, 2000), 10, "the change to 2 kHz")

    run(scenario())


def test_two_profiles_on_one_device_share_one_capture_that_stops_after_the_last_listener(capture_server, tone):
    device_profile("desk-stereo")
    device_profile("desk-mono", channels=1)
    tone(1000)

    async def scenario():
        listeners = [Listener(capture_server.ws_url(slug)) for slug in ("desk-stereo", "desk-mono")]
        await asyncio.gather(*(listener.connect() for listener in listeners))
        try:
            for listener in listeners:
                await until(lambda: hears(listener, 1000), 15, "1 kHz on both profiles")
            return await asyncio.to_thread(capture_server.status)
        finally:
            await asyncio.gather(*(listener.close() for listener in listeners))

    status = run(scenario())
    assert status["capture_threads"] == [f"capture:{MONITOR}"]
    assert [(c["device"], c["readers"]) for c in status["captures"]] == [(MONITOR, 2)]
    stopped = wait_for(lambda: (s := capture_server.status())["capture_threads"] == [] and s, 10, "capture to stop")
    assert stopped["captures"] == [] and stopped["peers"] == 0


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


def test_a_vanished_device_gives_silence_and_a_status_then_the_tone_returns(capture_server, pulse, tone):
    # DTX off: with DTX on, silence is not sent at all and there would be nothing to measure.
    device_profile("fragile", opus_dtx=False)
    tone(1000)

    async def scenario():
        async with Listener(capture_server.ws_url("fragile")) as listener:
            return await lose_and_restore_the_device(listener, pulse, tone, 1000)

    assert_lost_then_back(*run(scenario()))


def test_switching_a_live_stream_from_the_sine_to_the_device_in_admin_takes_under_2_s(own_server, pulse, tone):
    server = own_server(pulse.env)
    profile = make_profile("switch", sine_frequency=440)
    admin = operator(server)
    tone(1000)

    async def scenario():
        async with Listener(server.ws_url("switch")) as listener:
            await until(lambda: hears(listener, 440), 15, "the 440 Hz sine")
            saving = time.monotonic()
            await asyncio.to_thread(admin.save_profile, profile, source="device", device_name=MONITOR)
            await until(lambda: hears(listener, 1000, window=0.2), 10, "the device's 1 kHz")
            return time.monotonic() - saving, listener.heard.messages

    seconds, messages = run(scenario())
    assert seconds < 2, f"the device was heard {seconds:.2f} s after the save began"
    assert [m["type"] for m in messages].count("answer") == 1  # the same connection throughout
