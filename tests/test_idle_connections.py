"""A crowd comes and goes: the worker and the media owner give back the Redis connections it
made them open (streams/ops/redispools.py; issue 17: "threads and fds back at the idle baseline").

Real processes on the real Redis (tests/rigs/redis_db.py): one owner, one daphne worker. A crowd
of listeners joining at once makes the worker's channel layer join their groups at once, one
connection each; before the fix they stayed open for good (and neither process said it had
given anything back, which is where this test then fails). The open files are read from /proc.
"""
import asyncio
from urllib.parse import urlsplit

import pytest
from django.conf import settings

from tests.helpers import make_profile, run
from tests.listener import Listener
from tests.rigs.open_files import redis_connections
from tests.rigs.owner import owner_and_workers
from tests.rigs.redis_db import REDIS_URL
from tests.waiting import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

CROWD = 12
STREAMS = 3  # the owner publishes each on a task of its own: as many Redis commands at once
REDIS_PORT = urlsplit(REDIS_URL).port or 6379
RELEASED = "idle: memory given back"  # what each process logs the first time in a spell of idleness


def idle(worker):
    status = worker.status()
    return status["peers"] == 0 and not status["hubs"]


def test_a_crowd_gone_leaves_the_worker_and_the_owner_with_no_more_redis_connections_than_one_listener_did(tmp_path):
    slugs = [make_profile(f"crowd-{n}", sine_frequency=440 + 110 * n).slug for n in range(STREAMS)]
    with owner_and_workers(settings.DATABASES["default"]["NAME"], tmp_path, REDIS_URL, workers=1) as started:
        owner, (worker,) = started
        processes = {"owner": owner, "worker": worker}

        def connections():
            return {name: redis_connections(process.process.pid, REDIS_PORT) for name, process in processes.items()}

        def released():
            return {name: process.log().count(RELEASED) for name, process in processes.items()}

        def idle_and_released(since):
            wait_for(lambda: idle(worker), 15, "the worker idle")
            wait_for(lambda: all(count > since[name] for name, count in released().items()), 15,
                     f"both processes to log {RELEASED!r} (so far {released()}, before {since})")

        async def crowd(count, hold):
            listeners = [Listener(worker.ws_url(slugs[n % len(slugs)])) for n in range(count)]
            await asyncio.gather(*(listener.connect() for listener in listeners))
            await asyncio.gather(*(listener.listen_for(hold) for listener in listeners))
            during = connections()
            await asyncio.gather(*(listener.close() for listener in listeners))
            return during

        # One listener first, so that every client a listener needs exists; then idle again.
        spells = released()
        run(crowd(1, 0.5))
        idle_and_released(spells)
        before = connections()

        spells = released()
        during = run(crowd(CROWD, 1.0), timeout=120)
        idle_and_released(spells)
        after = connections()

    print("Redis connections after one listener, with the crowd, after the crowd:", before, during, after)
    assert during["worker"] >= before["worker"] + CROWD // 2, (before, during)  # the crowd did open more
    assert after["worker"] <= before["worker"] and after["owner"] <= before["owner"], (before, during, after)
