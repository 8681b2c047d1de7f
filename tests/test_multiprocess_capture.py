"""Multi-process mode with a real device: the media owner captures the PulseAudio rig's
null-sink monitor, a worker relays it; the device's loss and return reach the worker's
listener from the owner through the Channels layer on Redis (database 14)."""
import asyncio

import pytest
from django.conf import settings

from tests.helpers import run
from tests.listener import Listener
from tests.rigs.daphne import DaphneServer
from tests.rigs.rtptiming import dropouts, rtp_timing
from tests.rigs.owner import MediaOwnerProcess
from tests.rigs.device_loss import assert_lost_then_back, device_profile, hears, lose_and_restore_the_device
from tests.waiting import until

pytestmark = pytest.mark.django_db(transaction=True)

REDIS_URL = "redis://127.0.0.1:6379/14"


@pytest.fixture(scope="module")
def owner_and_worker(pulse, django_db_setup, tmp_path_factory):
    directory = tmp_path_factory.mktemp("capture-cluster")
    db = settings.DATABASES["default"]["NAME"]
    env = {**pulse.env, "RTC_CAPTURE_LINGER_SECONDS": "1"}
    owner = MediaOwnerProcess(db, directory / "owner.log", REDIS_URL, extra_env=env).start()
    worker = DaphneServer(db, directory / "worker.log", extra_env={"REDIS_URL": REDIS_URL}).start()
    yield owner, worker
    worker.stop()
    owner.stop()


def test_the_owner_captures_the_device_and_its_loss_reaches_a_workers_listener(owner_and_worker, pulse, tone):
    owner, worker = owner_and_worker
    device_profile("desk", opus_dtx=False)
    tone(2000)

    async def scenario():
        async with Listener(worker.ws_url("desk")) as listener:
            await until(lambda: hears(listener, 2000), 15, "the tone through owner and worker")
            worker_status = await asyncio.to_thread(worker.status)
            tone(1000)
            return await lose_and_restore_the_device(listener, pulse, tone, 1000), worker_status

    lost_then_back, worker_status = run(scenario())
    assert_lost_then_back(*lost_then_back)  # device-lost came from the owner, through Redis
    assert worker_status["captures"] == [] and worker_status["capture_threads"] == []  # the worker opens no device
    assert [hub["mode"] for hub in worker_status["hubs"]] == ["relay"]
    assert "starting desk" in owner.log()


def test_a_relayed_device_stream_keeps_the_device_clock(owner_and_worker, pulse, tone):
    """Owner (capture, encode) -> Redis -> worker (re-stamp, send): the listener's timeline still
    follows the device, 50 packets/s, no drift, no jumps."""
    owner, worker = owner_and_worker
    device_profile("relayed", opus_dtx=False)
    tone(1000)

    async def scenario():
        async with Listener(worker.ws_url("relayed")) as listener:
            await until(lambda: hears(listener, 1000), 15, "the tone through owner and worker")
            packets, samples = await listener.record(15)
            return rtp_timing(packets, 48_000), dropouts(samples[:, 0], listener.heard.sample_rate)

    timing, dropped = run(scenario())
    print(f"relayed device stream: {timing}, dropouts {dropped}")
    assert timing["packet_rate"] == pytest.approx(50.0, abs=0.1)
    assert abs(timing["drift_ms_per_minute"]) <= 10
    assert timing["timeline_jumps"] == timing["lost"] == dropped == 0
