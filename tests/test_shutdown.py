"""Stopping the server (SIGTERM) closes every listener and capture and exits promptly."""
import asyncio
import signal
import time

import pytest
from django.conf import settings

from streams.models import StreamProfile
from tests.conftest import MONITOR
from tests.listener import Listener
from tests.rigs.daphne import DaphneServer
from tests.waiting import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_sigterm_closes_listeners_and_capture_and_exits_within_5_s(pulse, tmp_path):
    StreamProfile.objects.create(name="Tone", slug="tone")
    StreamProfile.objects.create(name="Desk", slug="desk", source="device", device_name=MONITOR)
    server = DaphneServer(settings.DATABASES["default"]["NAME"], tmp_path / "app.log", extra_env=pulse.env).start()
    try:
        async def connect_two():
            listeners = [Listener(server.ws_url(slug)) for slug in ("tone", "desk")]
            for listener in listeners:
                await listener.connect()
                await listener.listen_for(0.3)
            return listeners

        loop = asyncio.new_event_loop()
        listeners = loop.run_until_complete(connect_two())
        assert server.status()["capture_threads"] == [f"capture:{MONITOR}"]
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(10)
        took = time.monotonic() - started
        async def close_all():
            await asyncio.gather(*(listener.close() for listener in listeners))

        loop.run_until_complete(close_all())
        loop.close()
    finally:
        server.stop()
    log = wait_for(lambda: "closed 2 listener(s) on shutdown" in server.log() and server.log(), 5, "the shutdown log line")
    assert took < 5, f"took {took:.1f} s to exit"
    assert "capture PulseAudio: virt.monitor: stopped" in log
    assert "Traceback" not in log
