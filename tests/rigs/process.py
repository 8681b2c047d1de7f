"""A server process of a test: started and waited for, stopped with SIGTERM (killed if it
hangs), its log readable; and stop_process() for any child process."""
import socket
import subprocess
from pathlib import Path

from tests.waiting import wait_for


def accepts_tcp(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def stop_process(process, timeout=10, ask=None):
    """End `process` if it still runs: ask it to (SIGTERM, or the call `ask`), wait up to
    `timeout` s, then kill it."""
    if process is None or process.poll() is not None:
        return
    (ask or process.terminate)()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


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
        stop_process(self.process, timeout)

    def kill(self):
        self.process.kill()
        self.process.wait()

    def log(self):
        return self.log_path.read_text() if self.log_path.exists() else ""
