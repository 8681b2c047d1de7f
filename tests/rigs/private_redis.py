"""A redis-server of a test's own, on a free loopback port, that the test may stop and start again
(a restart loses everything: no persistence) without disturbing the shared one on 6379."""
import subprocess
from pathlib import Path

import redis

from tests.rigs.daphne import free_port
from tests.rigs.process import stop_process
from tests.waiting import wait_for


class PrivateRedis:
    def __init__(self, directory):
        self.directory = Path(directory)
        self.port = free_port()
        self.process = None
        self.starts = 0

    def url(self, db=0):
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self, timeout=10):
        self.starts += 1
        log = self.directory / f"redis-{self.starts}.log"
        self.process = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
             "--dir", str(self.directory), "--logfile", str(log)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._answers, timeout, f"redis-server on port {self.port} (log: {log})")
        return self

    def _answers(self):
        if self.process.poll() is not None:
            raise RuntimeError(f"redis-server on port {self.port} exited with {self.process.returncode}")
        try:
            with redis.Redis(port=self.port, socket_timeout=1) as client:
                return client.ping()
        except redis.ConnectionError:
            return False

    def stop(self):
        stop_process(self.process)

    def restart(self):
        """Stop it and start it again on the same port: every key, group and script is gone."""
        self.stop()
        return self.start()
