"""Debian's WebKitGTK (the engine of GNOME Web) showing a page under Xvfb, for tests.

Debian builds libwebkit2gtk-4.1 without WebRTC: `RTCPeerConnection` does not exist there,
whatever the settings say. The page runs in tests/rigs/webkit_driver.py, under the system
python3 (Debian's python3-gi and gir1.2-webkit2-4.1), on an X server of its own (Xvfb, which
picks a free display). WebKit plays media through GStreamer, whose autoaudiosink finds the
PulseAudio of `pulse_env` (tests/rigs/pulseaudio.py; gstreamer1.0-pulseaudio's pulsesink):

    with WebKitPage(pulse.env, tmp_path / "webkit.log") as page:
        page.goto(server.url("/listen/default/"))
        page.evaluate("typeof RTCPeerConnection")      # "undefined"

evaluate() awaits a promise and returns the value as JSON, as FirefoxPage does (both are
tests/rigs/page_driver.py's DrivenPage). The driver's and WebKit's own output go to
`log_path`, with GStreamer's log at `gst_debug` (GST_DEBUG).
"""
import os
import queue
import subprocess
import threading
from pathlib import Path

from tests.rigs.page_driver import DrivenPage
from tests.rigs.process import stop_process

SYSTEM_PYTHON = "/usr/bin/python3"  # the python Debian's python3-gi is built for
DRIVER = Path(__file__).with_name("webkit_driver.py")
XVFB = "/usr/bin/Xvfb"


class WebKitError(RuntimeError):
    pass


class Xvfb:
    """An X server of its own, on the first free display (Xvfb's -displayfd)."""

    def __init__(self, log, start_timeout=30):
        self.log = log
        self.start_timeout = start_timeout
        self.process = None
        self.display = None

    def start(self):
        if not os.access(XVFB, os.X_OK):
            raise WebKitError(f"{XVFB} is missing: scripts/setup.sh --dev installs xvfb")
        read, write = os.pipe()
        try:
            self.process = subprocess.Popen(
                [XVFB, "-displayfd", str(write), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                pass_fds=(write,), stdout=self.log, stderr=self.log)
        finally:
            os.close(write)
        number = _read_line(read, self.start_timeout, "Xvfb to name its display")
        self.display = f":{number}"
        return self

    def stop(self, timeout=10):
        stop_process(self.process, timeout)


def _read_line(fd, timeout, what):
    """A line written to pipe `fd` (closed after), read within `timeout` s."""
    lines = queue.Queue()

    def read():
        with os.fdopen(fd) as pipe:
            lines.put(pipe.readline().strip())

    threading.Thread(target=read, daemon=True).start()
    try:
        line = lines.get(timeout=timeout)
    except queue.Empty:
        raise TimeoutError(f"timed out after {timeout} s waiting for {what}") from None
    if not line:
        raise WebKitError(f"{what} failed: nothing written")
    return line


class WebKitPage(DrivenPage):
    """One WebKitGTK page on its own Xvfb, playing into the PulseAudio of `pulse_env`."""

    browser = "WebKit"
    error = WebKitError

    def __init__(self, pulse_env, log_path, gst_debug=None, start_timeout=60):
        super().__init__(log_path, start_timeout)
        self.pulse_env = pulse_env
        self.gst_debug = gst_debug or os.environ.get("GST_DEBUG", "1")
        self.xvfb = None

    def start(self):
        self._open_log_and_home("webkit")
        self.xvfb = Xvfb(self._log).start()
        env = {k: v for k, v in os.environ.items() if k not in ("WAYLAND_DISPLAY",) and not k.startswith("PULSE_")}
        env.update(self.pulse_env, DISPLAY=self.xvfb.display, HOME=self.home,
                   XDG_CACHE_HOME=f"{self.home}/cache", XDG_DATA_HOME=f"{self.home}/data",
                   XDG_CONFIG_HOME=f"{self.home}/config", GST_DEBUG=self.gst_debug, GST_DEBUG_NO_COLOR="1")
        return self._start_driver([SYSTEM_PYTHON, str(DRIVER)], env)

    def screenshot(self, path, timeout=15):
        self._request("screenshot", timeout, f"a screenshot to {path}", path=str(path))

    def close(self, timeout=30):
        super().close(timeout)  # the driver quits, and WebKit's processes with it
        if self.xvfb:
            self.xvfb.stop()
            self.xvfb = None
