"""The media owner of multi-process mode for tests: `manage.py media_owner` in a subprocess."""
import os
import subprocess
import sys
from pathlib import Path

from tests.rigs.process import ServerProcess
from tests.waiting import wait_for

PROJECT = Path(__file__).resolve().parents[2]


class MediaOwnerProcess(ServerProcess):
    def __init__(self, db_path, log_path, redis_url, extra_env=None):
        super().__init__(log_path)
        self.env = {**os.environ, "RTC_DB_PATH": str(db_path), "RTC_LOG_FILE": str(self.log_path),
                    "REDIS_URL": redis_url, **(extra_env or {})}

    def start(self, timeout=30):
        """Start it and wait until it holds the owner lock."""
        already = self.log().count("media owner now")
        self.process = subprocess.Popen([sys.executable, str(PROJECT / "manage.py"), "media_owner"], cwd=PROJECT,
                                        env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: self._alive() and self.log().count("media owner now") > already, timeout,
                 f"the media owner to take the lock (log: {self.log_path})")
        return self

    def _alive(self):
        if self.process.poll() is not None:
            raise RuntimeError(f"media_owner exited with {self.process.returncode}; see {self.log_path}")
        return True
