"""Device capture end to end: PulseAudio null sink -> its monitor -> daphne -> aiortc listener (FFT)."""
import asyncio
import time

import pytest

from tests.helpers import make_profile, run
from tests.rigs.admin_http import operator
from tests.listener import Listener
from tests.conftest import MONITOR
from tests.rigs.device_loss import assert_lost_then_back, device_profile, hears, lose_and_restore_the_device
from tests.waiting import until, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


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
