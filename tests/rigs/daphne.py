"""A real RTC Caster server for tests: `manage.py serve` in a subprocess on 127.0.0.1."""
import contextlib
import json
import os
import socket
import sys
import urllib.request
from pathlib import Path

from tests.rigs.process import ServerProcess, accepts_tcp

PROJECT = Path(__file__).resolve().parents[2]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DaphneServer(ServerProcess):
    def __init__(self, db_path, log_path, port=None, extra_env=None):
        super().__init__(log_path)
        self.port = port or free_port()
        self.env = {
            **os.environ,
            "RTC_DB_PATH": str(db_path),
            "RTC_ICE_ADDRESSES": "127.0.0.1",
            "RTC_LOG_FILE": str(self.log_path),
            "RTC_ALLOWED_HOSTS": "127.0.0.1,localhost",
            **(extra_env or {}),
        }
        self.tls = bool(self.env.get("RTC_TLS_CERT"))

    def start(self, timeout=30):
        command = [sys.executable, str(PROJECT / "manage.py"), "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        self.launch(command, lambda: accepts_tcp(self.port), f"daphne on port {self.port}", timeout,
                    cwd=PROJECT, env=self.env)
        return self

    def url(self, path="/"):
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}{path}"

    def ws_url(self, slug):
        return f"{'wss' if self.tls else 'ws'}://127.0.0.1:{self.port}/ws/listen/{slug}/"

    def status(self, ssl_context=None):
        with urllib.request.urlopen(self.url("/status.json"), timeout=5, context=ssl_context) as response:
            return json.load(response)


@contextlib.contextmanager
def daphne_servers(db_path, log_dir, server_class=DaphneServer, **server_args):
    """Servers of a test's own: `start(port=None)` starts one (`port`: a killed one's, to restart
    it there), logging to log_dir/daphne-N.log; every one is stopped on leaving.

        with daphne_servers(db_path, tmp_path) as start_server:
            first = start_server()
            first.kill()
            start_server(port=first.port)
    """
    started = []

    def start(port=None):
        log = Path(log_dir) / f"daphne-{len(started)}.log"
        started.append(server_class(db_path, log, port=port, **server_args))
        return started[-1].start()  # (listed first: stopped even if it never gets ready)

    try:
        yield start
    finally:
        for server in started:
            server.stop()
