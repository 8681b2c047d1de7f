"""Debian's Firefox ESR playing the listener page headless, with every packet on loopback.

Firefox is driven over WebDriver BiDi by puppeteer-core (tests/js/firefox_driver.mjs, installed
by `scripts/setup.sh --dev`; it never downloads a browser). Firefox and the server run inside a
network namespace of the test's own that has nothing but `lo`, so no packet can leave
127.0.0.0/8, whatever either of them tries:

    with LoopbackNamespace() as namespace:
        server = NamespacedDaphne(namespace, db_path, log_path).start()
        with FirefoxPage(namespace, pulse.env, log_path) as page:
            page.goto(server.url("/listen/default/"))
            page.evaluate("document.title")

A receive-only Firefox page gathers ICE candidates only on its default-route address (the one
a UDP socket connect()ed to 8.8.8.8 gets; connecting sends nothing). The namespace routes
8.8.8.8 over `lo` from 127.0.0.1, which makes that address 127.0.0.1.

Firefox keeps its AudioContext suspended where it has no sound output: give it the PulseAudio
rig's environment (tests/rigs/pulseaudio.py). PulseAudio's socket is a file, so it is reached
from inside the namespace.
"""
import itertools
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.rigs.daphne import PROJECT, DaphneServer
from tests.rigs.page_driver import DrivenPage

FIREFOX = "/usr/bin/firefox-esr"
DRIVER_DIR = PROJECT / "tests" / "js"
DRIVER = DRIVER_DIR / "firefox_driver.mjs"
LOOPBACK = "127.0.0.1"

_names = itertools.count()


def _run(*command):
    finished = subprocess.run(command, capture_output=True, text=True, timeout=30)
    if finished.returncode != 0:  # `ip netns add` needs root (CAP_SYS_ADMIN): ./test.sh runs as root
        raise RuntimeError(f"{' '.join(command)} failed ({finished.returncode}): {finished.stderr.strip()}")


class LoopbackNamespace:
    """A network namespace with only `lo`, up, and 8.8.8.8 routed over it; deleted on close."""

    def __init__(self):
        self.name = f"rtc-firefox-{os.getpid()}-{next(_names)}"
        self.created = False

    def create(self):
        _run("ip", "netns", "add", self.name)
        self.created = True
        _run("ip", "-n", self.name, "link", "set", "lo", "up")
        _run("ip", "-n", self.name, "route", "add", "8.8.8.8/32", "dev", "lo", "src", LOOPBACK)
        return self

    def command(self, argv):
        """argv run inside the namespace (`ip netns exec` execs it: the child's pid is argv's)."""
        return ["ip", "netns", "exec", self.name, *map(str, argv)]

    def interfaces(self):
        listing = subprocess.run(["ip", "-n", self.name, "-o", "link"], check=True, capture_output=True,
                                 text=True, timeout=10).stdout
        return [line.split(":")[1].strip() for line in listing.splitlines()]

    def pids(self):
        listing = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True, timeout=10)
        return [int(pid) for pid in listing.stdout.split()]

    def close(self):
        """Kills what still runs inside (a Firefox whose driver was killed, say), then deletes it."""
        if self.created:
            for pid in self.pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=30)
            self.created = False

    def __enter__(self):
        return self.create()

    def __exit__(self, *exc):
        self.close()


def listens_on(pid, port):
    """Whether a TCP socket listens on `port` in the network namespace of process `pid`."""
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            return False
        for line in lines:
            local, _, state = line.split()[1:4]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                return True
    return False


class NamespacedDaphne(DaphneServer):
    """`manage.py serve` on 127.0.0.1 inside a LoopbackNamespace: reachable from there only."""

    def __init__(self, namespace, db_path, log_path, port=None, extra_env=None):
        super().__init__(db_path, log_path, port=port, extra_env=extra_env)
        self.namespace = namespace

    def start(self, timeout=30):
        command = self.namespace.command([sys.executable, PROJECT / "manage.py", "serve",
                                          "--host", LOOPBACK, "--port", self.port])
        self.launch(command, lambda: listens_on(self.process.pid, self.port),
                    f"daphne on port {self.port} in namespace {self.namespace.name}", timeout,
                    cwd=PROJECT, env=self.env)
        return self


class FirefoxError(RuntimeError):
    pass


class FirefoxPage(DrivenPage):
    """One page of a headless Firefox inside `namespace`, playing into the PulseAudio of `pulse_env`.

    goto(url) loads a page; evaluate(expression) returns a JavaScript expression's value (a
    promise is awaited), as JSON (tests/rigs/page_driver.py). Firefox's and the page's console
    output go to `log_path`."""

    browser = "Firefox"
    error = FirefoxError

    def __init__(self, namespace, pulse_env, log_path, start_timeout=60):
        super().__init__(log_path, start_timeout)
        self.namespace = namespace
        self.pulse_env = pulse_env

    def start(self):
        if not os.access(FIREFOX, os.X_OK):
            raise FirefoxError(f"{FIREFOX} is missing: scripts/setup.sh --dev installs firefox-esr")
        if not (DRIVER_DIR / "node_modules" / "puppeteer-core").is_dir():
            raise FirefoxError(f"puppeteer-core is missing in {DRIVER_DIR}: scripts/setup.sh --dev installs it")
        self._open_log_and_home("firefox")
        # No display: headless only. The rig's PulseAudio is Firefox's sound output.
        env = {k: v for k, v in os.environ.items()
               if k not in ("DISPLAY", "WAYLAND_DISPLAY") and not k.startswith("PULSE_")}
        env.update(self.pulse_env, HOME=self.home, PUPPETEER_SKIP_DOWNLOAD="1")
        # Killed by close() if it hangs, the driver leaves its Firefox to die with the namespace.
        return self._start_driver(self.namespace.command(["node", DRIVER, FIREFOX]), env, cwd=DRIVER_DIR)
