"""A real listener in a process of its own, so that what a test does meanwhile (a fuzzer, say)
cannot stall it: whatever gap it hears is the server's.

    python -m tests.rigs.listen_process ws://127.0.0.1:8088/ws/listen/<slug>/
prints {"ready": true} once it hears sound, waits for a line on stdin, then prints
{"chunks": n, "max_gap": s, "p99_gap": s, "frequency": hz} (gaps between decoded frames,
frequency of the last second) and exits.
"""
import asyncio
import json
import sys

import numpy as np

from streams.webrtc.ice import restrict_host_addresses
from tests.listener import Listener, dominant_frequency


class ListenerProcess:
    """The parent's handle: start it, wait until it hears, then `finish()` for its report."""

    def __init__(self, url):
        import os
        import subprocess
        from pathlib import Path

        project = Path(__file__).resolve().parents[2]
        self.process = subprocess.Popen([sys.executable, "-m", "tests.rigs.listen_process", url], cwd=project,
                                        env={**os.environ, "DJANGO_SETTINGS_MODULE": "rtccaster_site.settings"},
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def wait_until_hearing(self):
        line = self.process.stdout.readline()
        if json.loads(line or "{}").get("ready") is not True:
            raise RuntimeError(f"the listener process did not start hearing: {line!r}")

    def finish(self, timeout=30):
        self.process.stdin.write("stop\n")
        self.process.stdin.flush()
        report = json.loads(self.process.stdout.readline())
        self.process.wait(timeout)
        return report

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


async def main(url):
    restrict_host_addresses(["127.0.0.1"])
    listener = Listener(url)
    await listener.connect()
    await listener.listen_for(0.5)
    start = len(listener.heard.chunks)
    print(json.dumps({"ready": True}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    heard = listener.heard
    gaps = np.diff([t for t, _ in heard.chunks[start:]])
    tail = heard.samples()[-heard.sample_rate:, 0]
    print(json.dumps({"chunks": len(gaps) + 1, "max_gap": float(gaps.max()), "p99_gap": float(np.percentile(gaps, 99)),
                      "frequency": float(dominant_frequency(tail, heard.sample_rate))}), flush=True)
    await listener.close()


if __name__ == "__main__":
    import django

    django.setup()
    asyncio.run(main(sys.argv[1]))
