"""./run.sh --workers N: `manage.py cluster` runs a media owner and N daphne workers on one
shared socket under supervisord, with the real Redis (tests/rigs/redis_db.py)."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from tests.helpers import make_profile, run
from tests.listener import Listener, dominant_frequency
from tests.rigs.daphne import free_port
from tests.rigs.redis_db import REDIS_URL
from tests.waiting import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

PROJECT = Path(__file__).resolve().parents[1]


def children(pid):
    """{pid: command line} of a process's children."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except (OSError, ValueError):
                continue
    return found


def test_two_workers_and_an_owner_under_supervisord_serve_one_port_and_stop_together(tmp_path):
    make_profile("crowd", sine_frequency=880)
    port = free_port()
    env = {**os.environ, "REDIS_URL": REDIS_URL, "RTC_DB_PATH": settings.DATABASES["default"]["NAME"],
           "RTC_LOG_FILE": str(tmp_path / "app.log"), "RTC_ALLOWED_HOSTS": "127.0.0.1,localhost"}
    supervisor = subprocess.Popen(
        [sys.executable, "manage.py", "cluster", "--workers", "2", "--host", "127.0.0.1", "--port", str(port),
         "--run-dir", str(tmp_path / "run")],
        cwd=PROJECT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def workers():
            return [cmd for cmd in children(supervisor.pid).values() if f"serve --fd 0 --host 127.0.0.1 --port {port}" in cmd]

        wait_for(lambda: len(workers()) == 2 and any("media_owner" in c for c in children(supervisor.pid).values()),
                 30, "two workers and the owner under supervisord")
        # Each process writes a rotating log of its own beside RTC_LOG_FILE.
        owner_log, worker_logs = tmp_path / "app.owner.log", [tmp_path / f"app.worker-{n}.log" for n in (0, 1)]

        def up():
            logs = [log.read_text() if log.exists() else "" for log in (owner_log, *worker_logs)]
            return "media owner now" in logs[0] and all("RTC Caster listening" in log for log in logs[1:])

        wait_for(up, 30, "the owner's lock and both workers up, each in its own log")

        async def hear():
            listener = Listener(f"ws://127.0.0.1:{port}/ws/listen/crowd/")
            try:
                await listener.connect()
                return await listener.listen_for(1.5)
            finally:
                await listener.close()

        heard = run(hear())
        assert abs(dominant_frequency(heard.samples()[-24_000:, 0], heard.sample_rate) - 880) <= 5
        processes = list(children(supervisor.pid))
    finally:
        supervisor.send_signal(signal.SIGTERM)
        supervisor.wait(20)
    wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in processes), 10, "every child to exit")
