"""A crowd comes and goes: the worker and the media owner give back the Redis connections it
made them open (streams/ops/redispools.py; issue 17: "threads and fds back at the idle baseline").

Real processes on the real Redis (tests/rigs/redis_db.py): one owner, one daphne worker. A crowd
of listeners joining at once makes the worker's channel layer join their groups at once, one
connection each; before the fix they stayed open for good. The open files are read from /proc.
"""
import asyncio

import pytest
from django.conf import settings

from tests.helpers import make_profile, run
from tests.listener import Listener
from tests.rigs.open_files import redis_connections
from tests.rigs.owner import owner_and_workers
from tests.rigs.redis_db import REDIS_URL
from tests.waiting import until, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

CROWD = 12
STREAMS = 3  # the owner publishes each on a task of its own: as many Redis commands at once
REDIS_PORT = int(REDIS_URL.split(":")[2].split("/")[0])


def idle(worker):
    status = worker.status()
    return status["peers"] == 0 and not status["hubs"]


def test_a_crowd_gone_leaves_the_worker_and_the_owner_with_no_more_redis_connections_than_before_it(tmp_path):
    slugs = [make_profile(f"crowd-{n}", sine_frequency=440 + 110 * n).slug for n in range(STREAMS)]
    with owner_and_workers(settings.DATABASES["default"]["NAME"], tmp_path, REDIS_URL, workers=1) as started:
        owner, (worker,) = started
        pids = {"owner": owner.process.pid, "worker": worker.process.pid}

        def connections():
            return {name: redis_connections(pid, REDIS_PORT) for name, pid in pids.items()}

        async def crowd(count, hold):
            listeners = [Listener(worker.ws_url(slugs[n % len(slugs)])) for n in range(count)]
            await asyncio.gather(*(listener.connect() for listener in listeners))
            await asyncio.gather(*(listener.listen_for(hold) for listener in listeners))
            during = connections()
            await asyncio.gather(*(listener.close() for listener in listeners))
            return during

        # One listener first, so that every client a listener needs exists, then idle again.
        run(crowd(1, 0.5))
        wait_for(lambda: idle(worker), 15, "the worker idle after one listener")
        before = connections()

        during = run(crowd(CROWD, 1.0), timeout=120)
        wait_for(lambda: idle(worker), 15, "the worker idle after the crowd")
        def back_to_before():
            now = connections()
            return now if all(now[name] <= before[name] for name in now) else None

        try:
            after = wait_for(back_to_before, 15, f"Redis connections back to {before}")
        except TimeoutError:
            pytest.fail(f"Redis connections before, with and after the crowd: {before} {during} {connections()}")

    assert during["worker"] >= before["worker"] + CROWD // 2, (before, during)  # the crowd did open more
    assert "idle: closed" in owner.log()
    print("Redis connections before, with and after the crowd:", before, during, after)
