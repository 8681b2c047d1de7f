"""A browser page driven by a process of its own, one JSON line each way on its stdin and stdout:

    {"id": 1, "op": "goto", "url": "http://127.0.0.1:8088/listen/default/"}  ->  {"id": 1, "value": null}
    {"id": 2, "op": "evaluate", "expression": "document.title"}              ->  {"id": 2, "value": "…"}

A failed request answers {"id": …, "error": "…"}; the first line out, {"id": 0, "value":
{"version": …}}, says the browser is up; closing stdin makes the driver close the browser and
exit. Two drivers speak it: tests/js/firefox_driver.mjs (tests/rigs/firefox.py) and
tests/rigs/webkit_driver.py (tests/rigs/webkit.py). A line out that is not JSON is the browser's
own output, and goes to the log with the driver's stderr.
"""
import itertools
import json
import queue
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from tests.rigs.process import stop_process


class DrivenPage:
    """One page of a browser behind a driver process; a subclass's start() runs the driver with
    _start_driver(). goto(url) loads a page; evaluate(expression) returns a JavaScript
    expression's value (a promise is awaited), as JSON."""

    browser = "the browser"  # its name in messages
    error = RuntimeError  # what a failed request raises

    def __init__(self, log_path, start_timeout=60):
        self.log_path = Path(log_path)
        self.start_timeout = start_timeout
        self.process = None
        self.home = None
        self._log = None
        self.answers = queue.Queue()
        self.ids = itertools.count(1)
        self.version = None

    def _open_log_and_home(self, prefix):
        """The log (appended to) and a fresh home folder for the browser, removed by close()."""
        self._log = open(self.log_path, "a")
        self.home = tempfile.mkdtemp(prefix=f"{prefix}-home-")

    def _start_driver(self, command, env, **popen_args):
        """Run the driver `command` and wait until it says its browser is up."""
        self.process = subprocess.Popen(command, env=env, text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self._log, **popen_args)
        threading.Thread(target=self._read_answers, daemon=True).start()
        self.version = self._answer(0, self.start_timeout, f"{self.browser} to start")["version"]
        return self

    def _read_answers(self):
        for line in self.process.stdout:
            if line.startswith("{"):
                self.answers.put(json.loads(line))
            else:  # not the driver's: the browser's own output
                self._log.write(line)
        self.answers.put(None)  # the driver has exited

    def _answer(self, request_id, timeout, what):
        try:
            answer = self.answers.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}; see {self.log_path}") from None
        if answer is None:
            raise self.error(f"the {self.browser} driver exited ({self.process.poll()}) while waiting for {what}; "
                             f"see {self.log_path}")
        if answer["id"] != request_id:
            raise self.error(f"answer {answer['id']} to request {request_id}")
        if "error" in answer:
            raise self.error(f"{what} failed: {answer['error']}")
        return answer["value"]

    def _request(self, op, timeout, what, **fields):
        request_id = next(self.ids)
        self.process.stdin.write(json.dumps({"id": request_id, "op": op, **fields}) + "\n")
        self.process.stdin.flush()
        return self._answer(request_id, timeout, what)

    def goto(self, url, timeout=30):
        self._request("goto", timeout, f"{self.browser} to load {url}", url=url)

    def evaluate(self, expression, timeout=15):
        return self._request("evaluate", timeout, f"{self.browser} to evaluate {expression[:60]!r}",
                             expression=expression)

    def call(self, function, *args, timeout=15):
        """Calls a JavaScript function given as source, e.g. "(a, b) => a + b", with JSON arguments."""
        arguments = ", ".join(json.dumps(arg) for arg in args)
        return self.evaluate(f"({function})({arguments})", timeout=timeout)

    def close(self, timeout=30):
        if self.process:
            # Asked by closing its stdin, the driver closes its browser and exits.
            stop_process(self.process, timeout, ask=self.process.stdin.close)
            self.process = None
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
