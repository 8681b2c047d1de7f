"""The media owner of multi-process mode for tests: `manage.py media_owner` in a subprocess."""
import os
import sys
from pathlib import Path

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
