"""Admin's "Live now" column names a source health alarm in both modes (issue #17).

A device profile on the PulseAudio rig's null-sink monitor, which plays nothing (digital
silence), raises "source-silent" after its second; a tone clears it. The operator's changelist
says so: in one process from that process's snapshot, and with REDIS_URL, on any worker, from the
media owner's snapshot in Redis (the owner captures and watches the source; the same snapshot
/metrics reads). The alarm logic itself: tests/test_health.py; its statuses to listeners:
tests/test_source_alarms.py.
"""
import asyncio
import re

import pytest
from django.conf import settings

from tests.helpers import run
from tests.listener import Listener
from tests.rigs.admin_http import operator
from tests.rigs.device_loss import device_profile
from tests.rigs.owner import owner_and_workers
from tests.rigs.pulseaudio import playing
from tests.rigs.redis_db import REDIS_URL
from tests.waiting import until, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

SILENT = "⚠ the source is silent"


@pytest.fixture(scope="module")
def owner_and_worker(pulse, django_db_setup, tmp_path_factory):
    env = {**pulse.env, "RTC_CAPTURE_LINGER_SECONDS": "1"}  # the owner's: the worker opens no device
    with owner_and_workers(settings.DATABASES["default"]["NAME"], tmp_path_factory.mktemp("alarm-cluster"),
                           REDIS_URL, workers=1, owner_env=env) as (owner, (worker,)):
        yield worker


def live_now(admin, slug):
    """The "Live now" text of the changelist's row for `slug`."""
    page = admin.page("/admin/streams/streamprofile/")
    row = re.search(rf'<td class="field-slug">{re.escape(slug)}</td>.*?<td class="field-live_now">(.*?)</td>',
                    page, re.S)
    assert row, f"no row for {slug} in the changelist"
    return row.group(1)


def alarm_in_admin(server, pulse, slug):
    """With a listener of a silent device profile on `server`: admin's text once it names the
    alarm, and once a tone has cleared it."""
    device_profile(slug, silence_alarm_seconds=1)
    admin = operator(server)

    async def shown(condition, what):
        """Admin's text once `condition(text)` holds (its numbers are published every second)."""
        def text_if_so():
            text = live_now(admin, slug)
            return text if condition(text) else None

        return await asyncio.to_thread(wait_for, text_if_so, 10, what)

    async def scenario():
        async with Listener(server.ws_url(slug)) as listener:
            await until(lambda: any(m.get("state") == "source-silent" for m in listener.heard.messages), 15,
                        "the listener to hear of the silence")
            silent = await shown(lambda text: SILENT in text, "admin to name the alarm")
            with playing(pulse.play_tone(700, seconds=30)):
                sounding = await shown(lambda text: "⚠" not in text, "admin to clear the alarm")
            return silent, sounding

    return run(scenario())


def test_in_one_process_admin_names_a_silent_source_until_sound_comes_back(capture_server, pulse):
    silent, sounding = alarm_in_admin(capture_server, pulse, "quiet-booth")
    assert re.fullmatch(rf"1 listener · opus [0-9.]+ kb/s · {SILENT}", silent), silent
    assert re.fullmatch(r"1 listener · opus [0-9.]+ kb/s", sounding), sounding


def test_with_workers_admin_names_a_silent_source_from_the_owners_snapshot(owner_and_worker, pulse):
    silent, sounding = alarm_in_admin(owner_and_worker, pulse, "quiet-studio")
    assert re.fullmatch(rf"1 listener · opus [0-9.]+ kb/s · {SILENT}", silent), silent
    assert re.fullmatch(r"1 listener · opus [0-9.]+ kb/s", sounding), sounding
