"""A server process of a test: stopped with SIGTERM (killed if it hangs), its log readable."""
import signal
import subprocess
from pathlib import Path


class ServerProcess:
    def __init__(self, log_path):
        self.log_path = Path(log_path)
        self.process = None

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
