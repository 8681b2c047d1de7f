"""The standalone release, built for real by scripts/release.py, unpacked and run as a user would.

The executable runs with a bare environment: PATH=/usr/bin:/bin, HOME and the variables a test
names; no virtualenv and nothing of the checkout on its path.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.rigs.daphne import free_port
from tests.rigs.process import ServerProcess, accepts_tcp

PROJECT = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin") or sys.executable


class ReleaseBuild:
    """`python3 scripts/release.py` from the repository root, as docs/release.md says, then unzip."""

    def __init__(self, unpack_into=None):
        self.unpack_into = unpack_into and Path(unpack_into)
        self.zip_path = None
        self.build_seconds = None
        self.output = ""

    def build(self, timeout=600):
        """Build now and wait for it (a benchmark times this)."""
        return self.start().wait(timeout)

    def start(self, niceness=0):
        """Start the build in the background. The test suite starts it at niceness 19 as soon as
        it has collected the release tests: it then takes only CPU time the other tests leave
        idle, and is done long before the release tests run."""
        env = {key: value for key, value in os.environ.items() if not key.startswith(("VIRTUAL_ENV", "PYTHON"))}
        self._stdout, self._stderr = tempfile.TemporaryFile(mode="w+"), tempfile.TemporaryFile(mode="w+")
        self._started = time.monotonic()
        self._process = subprocess.Popen([SYSTEM_PYTHON, "scripts/release.py"], cwd=PROJECT, env=env,
                                         stdout=self._stdout, stderr=self._stderr, text=True,
                                         preexec_fn=(lambda: os.nice(niceness)) if niceness else None)
        return self

    def wait(self, timeout=600, unpack_into=None):
        """Wait for the started build, then unzip it (into `unpack_into` if given now)."""
        self.unpack_into = Path(unpack_into) if unpack_into else self.unpack_into
        try:
            returncode = self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            raise
        self.build_seconds = time.monotonic() - self._started
        stdout, stderr = (self._read(stream) for stream in (self._stdout, self._stderr))
        self.output = stdout + stderr
        assert returncode == 0, f"release build failed:\n{self.output[-4000:]}"
        self.zip_path = Path(stdout.strip().splitlines()[-1])  # scripts/release.py prints it last
        subprocess.run(["unzip", "-q", str(self.zip_path), "-d", str(self.unpack_into)], check=True)
        return self

    @staticmethod
    def _read(stream):
        stream.seek(0)
        text = stream.read()
        stream.close()
        return text

    def stop(self):
        """Kill a build nobody will wait for (the session ended first)."""
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    @property
    def folder(self):
        return self.unpack_into / "rtc-caster"

    @property
    def executable(self):
        return self.folder / "rtc-caster"


def bare_environment(**extra):
    return {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"), **extra}


class ReleaseServer(ServerProcess):
    """`rtc-caster serve` on 127.0.0.1; its console output (password, URLs) kept in a file."""

    def __init__(self, build, output_path, extra_env=None):
        super().__init__(output_path)
        self.build = build
        self.port = free_port()
        self.env = bare_environment(RTC_ICE_ADDRESSES="127.0.0.1", RTC_ALLOWED_HOSTS="127.0.0.1", **(extra_env or {}))
        self.seconds_to_serve = None

    def start(self, timeout=30):
        started = time.monotonic()
        with open(self.log_path, "w") as output:
            self.process = subprocess.Popen(
                [str(self.build.executable), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=self.build.unpack_into, env=self.env, stdout=output, stderr=subprocess.STDOUT,
            )
        from tests.waiting import wait_for

        def serving():
            if self.process.poll() is not None:
                raise RuntimeError(f"rtc-caster exited with {self.process.returncode}:\n{self.log()}")
            return accepts_tcp(self.port)

        wait_for(serving, timeout, "rtc-caster serving")
        self.seconds_to_serve = time.monotonic() - started
        return self

    def url(self, path="/"):
        return f"http://127.0.0.1:{self.port}{path}"

    def ws_url(self, slug):
        return f"ws://127.0.0.1:{self.port}/ws/listen/{slug}/"

    def printed_password(self):
        found = re.search(r"Created admin login: user 'admin', password (\S+)", self.log())
        return found.group(1) if found else None

    def loaded_files(self):
        """Every file the running process has mapped: which libraries it really uses."""
        with open(f"/proc/{self.process.pid}/maps") as maps:
            return {line.split()[-1] for line in maps if "/" in line}
