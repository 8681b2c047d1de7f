"""The media owner of multi-process mode for tests: `manage.py media_owner` in a subprocess; and
owner_and_workers(), an owner with daphne workers on one Redis."""
import contextlib
import os
import sys
from pathlib import Path

import redis

from tests.rigs.daphne import DaphneServer
from tests.rigs.process import ServerProcess

PROJECT = Path(__file__).resolve().parents[2]


class MediaOwnerProcess(ServerProcess):
    def __init__(self, db_path, log_path, redis_url, extra_env=None):
        super().__init__(log_path)
        self.env = {**os.environ, "RTC_DB_PATH": str(db_path), "RTC_LOG_FILE": str(self.log_path),
                    "REDIS_URL": redis_url, **(extra_env or {})}

    def start(self, timeout=30):
        """Start it and wait until it holds the owner lock."""
        already = self.log().count("media owner now")
        self.launch([sys.executable, str(PROJECT / "manage.py"), "media_owner"],
                    lambda: self.log().count("media owner now") > already, "the media owner", timeout,
                    cwd=PROJECT, env=self.env)
        return self


@contextlib.contextmanager
def owner_and_workers(db_path, directory, redis_url, workers=2, owner_env=None, worker_env=None):
    """A media owner and `workers` daphne workers on `redis_url`, logging to `directory`
    (owner.log, worker-1.log, ...), started in that order; all stopped on leaving, workers first.
    Yields (owner, [worker, ...]). Fails, and does not skip, when Redis does not answer."""
    with redis.Redis.from_url(redis_url) as client:
        client.ping()
    directory = Path(directory)
    started = []
    try:
        owner = MediaOwnerProcess(db_path, directory / "owner.log", redis_url, extra_env=owner_env)
        started.append(owner)
        owner.start()
        for number in range(1, workers + 1):
            worker = DaphneServer(db_path, directory / f"worker-{number}.log",
                                  extra_env={"REDIS_URL": redis_url, **(worker_env or {})})
            started.append(worker)
            worker.start()
        yield owner, started[1:]
    finally:
        for process in reversed(started):
            process.stop()
