"""Debian's WebKitGTK (the engine of GNOME Web) showing a page under Xvfb, for tests.

Debian builds libwebkit2gtk-4.1 without WebRTC: `RTCPeerConnection` does not exist there,
whatever the settings say. The page runs in tests/rigs/webkit_driver.py, under the system
python3 (Debian's python3-gi and gir1.2-webkit2-4.1), on an X server of its own (Xvfb, which
picks a free display). WebKit plays media through GStreamer, whose autoaudiosink finds the
PulseAudio of `pulse_env` (tests/rigs/pulseaudio.py; gstreamer1.0-pulseaudio's pulsesink):

    with WebKitPage(pulse.env, tmp_path / "webkit.log") as page:
        page.goto(server.url("/listen/default/"))
        page.evaluate("typeof RTCPeerConnection")      # "undefined"

evaluate() awaits a promise and returns the value as JSON, as FirefoxPage does. The driver's
and WebKit's own output go to `log_path`, with GStreamer's log at `gst_debug` (GST_DEBUG).
"""
import itertools
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

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
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


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


class WebKitPage:
    """One WebKitGTK page on its own Xvfb, playing into the PulseAudio of `pulse_env`."""

    def __init__(self, pulse_env, log_path, gst_debug=None, start_timeout=60):
        self.pulse_env = pulse_env
        self.gst_debug = gst_debug or os.environ.get("GST_DEBUG", "1")
        self.log_path = Path(log_path)
        self.start_timeout = start_timeout
        self.process = None
        self.xvfb = None
        self.home = None
        self._log = None
        self.answers = queue.Queue()
        self.ids = itertools.count(1)
        self.version = None

    def start(self):
        self._log = open(self.log_path, "a")
        self.xvfb = Xvfb(self._log).start()
        self.home = tempfile.mkdtemp(prefix="webkit-home-")
        env = {k: v for k, v in os.environ.items() if k not in ("WAYLAND_DISPLAY",) and not k.startswith("PULSE_")}
        env.update(self.pulse_env, DISPLAY=self.xvfb.display, HOME=self.home,
                   XDG_CACHE_HOME=f"{self.home}/cache", XDG_DATA_HOME=f"{self.home}/data",
                   XDG_CONFIG_HOME=f"{self.home}/config", GST_DEBUG=self.gst_debug, GST_DEBUG_NO_COLOR="1")
        self.process = subprocess.Popen([SYSTEM_PYTHON, str(DRIVER)], env=env, text=True,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log)
        threading.Thread(target=self._read_answers, daemon=True).start()
        self.version = self._answer(0, self.start_timeout, "WebKitGTK to start")["version"]
        return self

    def _read_answers(self):
        for line in self.process.stdout:
            if line.startswith("{"):
                self.answers.put(json.loads(line))
            else:  # not the driver's: WebKit's own output
                self._log.write(line)
        self.answers.put(None)  # the driver has exited

    def _answer(self, request_id, timeout, what):
        try:
            answer = self.answers.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}; see {self.log_path}") from None
        if answer is None:
            raise WebKitError(f"the WebKit driver exited ({self.process.poll()}) while waiting for {what}; "
                              f"see {self.log_path}")
        if answer["id"] != request_id:
            raise WebKitError(f"answer {answer['id']} to request {request_id}")
        if "error" in answer:
            raise WebKitError(f"{what} failed: {answer['error']}")
        return answer["value"]

    def _request(self, op, timeout, what, **fields):
        request_id = next(self.ids)
        self.process.stdin.write(json.dumps({"id": request_id, "op": op, **fields}) + "\n")
        self.process.stdin.flush()
        return self._answer(request_id, timeout, what)

    def goto(self, url, timeout=30):
        self._request("goto", timeout, f"WebKit to load {url}", url=url)

    def evaluate(self, expression, timeout=15):
        return self._request("evaluate", timeout, f"WebKit to evaluate {expression[:60]!r}", expression=expression)

    def screenshot(self, path, timeout=15):
        self._request("screenshot", timeout, f"a screenshot to {path}", path=str(path))

    def call(self, function, *args, timeout=15):
        """Calls a JavaScript function given as source, e.g. "(a, b) => a + b", with JSON arguments."""
        arguments = ", ".join(json.dumps(arg) for arg in args)
        return self.evaluate(f"({function})({arguments})", timeout=timeout)

    def close(self, timeout=30):
        if self.process:
            if self.process.poll() is None:
                self.process.stdin.close()  # the driver quits, and WebKit's processes with it
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            self.process = None
        if self.xvfb:
            self.xvfb.stop()
            self.xvfb = None
        if self._log:
            self._log.close()
            self._log = None
        if self.home:
            shutil.rmtree(self.home, ignore_errors=True)
            self.home = None

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc):
        self.close()
