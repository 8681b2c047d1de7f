"""The standalone release, built for real by scripts/release.py, unpacked and run as a user would.

The executable runs with a bare environment: PATH=/usr/bin:/bin, HOME and the variables a test
names; no virtualenv and nothing of the checkout on its path.
"""
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.rigs.daphne import free_port
from tests.rigs.process import ServerProcess, accepts_tcp

PROJECT = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin") or sys.executable


class ReleaseBuild:
    """`python3 scripts/release.py` from the repository root, as docs/release.md says, then unzip."""

    def __init__(self, unpack_into):
        self.unpack_into = Path(unpack_into)
        self.zip_path = None
        self.build_seconds = None
        self.output = ""

    def build(self, timeout=600):
        started = time.monotonic()
        env = {key: value for key, value in os.environ.items() if not key.startswith(("VIRTUAL_ENV", "PYTHON"))}
        result = subprocess.run([SYSTEM_PYTHON, "scripts/release.py"], cwd=PROJECT, env=env, timeout=timeout,
                                capture_output=True, text=True)
        self.build_seconds = time.monotonic() - started
        self.output = result.stdout + result.stderr
        assert result.returncode == 0, f"release build failed:\n{self.output[-4000:]}"
        self.zip_path = Path(result.stdout.strip().splitlines()[-1])
        subprocess.run(["unzip", "-q", str(self.zip_path), "-d", str(self.unpack_into)], check=True)
        return self

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
