"""Source health alarms end to end: a device profile on the PulseAudio rig's monitor, captured by
daphne, told to an aiortc listener as statuses (source-silent, source-clipping, then playing),
and logged once when each starts and ends. The alarm logic itself: tests/test_health.py."""
import numpy as np
import pytest

from tests.helpers import run
from tests.listener import Listener
from tests.rigs.device_loss import device_profile
from tests.rigs.pulseaudio import playing
from tests.waiting import until

pytestmark = pytest.mark.django_db(transaction=True)


def statuses(listener):
    return [m["state"] for m in listener.heard.messages if m["type"] == "status"]


def test_a_silent_source_is_reported_after_its_time_and_cleared_by_sound(capture_server, pulse):
    device_profile("quiet-desk", silence_alarm_seconds=1)  # the null sink plays nothing: digital silence

    async def scenario():
        async with Listener(capture_server.ws_url("quiet-desk")) as listener:
            await until(lambda: "source-silent" in statuses(listener), 10, "a source-silent status")
            with playing(pulse.play_tone(700, seconds=30)):
                await until(lambda: statuses(listener)[-1] == "playing", 10, "playing once there is sound")
            return statuses(listener)

    seen = run(scenario())
    assert seen.count("source-silent") == 1
    assert "The source is silent." in capture_server.log() and "the source's source-silent ended" in capture_server.log()


def test_a_clipping_source_is_reported_and_cleared_when_the_level_comes_down(capture_server, pulse):
    device_profile("hot-desk", silence_alarm_seconds=0)
    square = np.where(np.sin(2 * np.pi * 500 * np.arange(48000 * 30) / 48000) >= 0, 32767, -32767).astype(np.int16)

    async def scenario():
        async with Listener(capture_server.ws_url("hot-desk")) as listener:
            with playing(pulse.play_samples(np.repeat(square[:, None], 2, axis=1))):
                await until(lambda: "source-clipping" in statuses(listener), 10, "a source-clipping status")
            with playing(pulse.play_tone(700, seconds=30)):
                await until(lambda: statuses(listener)[-1] == "playing", 10, "playing once the level is down")
            return statuses(listener)

    assert run(scenario()).count("source-clipping") == 1
