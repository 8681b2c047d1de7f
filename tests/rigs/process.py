"""A server process of a test: started and waited for, stopped with SIGTERM (killed if it
hangs), its log readable."""
import signal
import socket
import subprocess
from pathlib import Path

from tests.waiting import wait_for


def accepts_tcp(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class ServerProcess:
    def __init__(self, log_path):
        self.log_path = Path(log_path)
        self.process = None

    def launch(self, command, ready, what, timeout, **popen_args):
        """Start `command` and wait until `ready()`; fail at once, naming the log, if it exits."""
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **popen_args)

        def started():
            if self.process.poll() is not None:
                raise RuntimeError(f"{what} exited with {self.process.returncode}; see {self.log_path}")
            return ready()

        wait_for(started, timeout, f"{what} (log: {self.log_path})")

    def stop(self, timeout=10):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self):
        self.process.kill()
        self.process.wait()

    def log(self):
        return self.log_path.read_text() if self.log_path.exists() else ""
