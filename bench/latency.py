"""Latency as a listener meets it, measured in a real Chromium on loopback.

1. Time to first sound: from the Listen click to the first non-silent analyser frame
   (default profile, 440 Hz sine), over --tries page loads.
2. Source to browser: clicks are written into a PulseAudio null sink that a device
   profile captures; each click is timestamped when written (pacat, 10 ms buffer) and
   when the page's analyser sees its onset (same machine, same clock).

    .venv/bin/python bench/latency.py
    .venv/bin/python bench/latency.py --tries 20 --clicks 40
"""
import argparse
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from tests.rigs.chromium import chromium_page  # noqa: E402
from tests.rigs.daphne import DaphneServer
from tests.waiting import wait_for  # noqa: E402
from tests.rigs.pulseaudio import PulseAudioRig  # noqa: E402

RATE = 48_000
CHUNK = RATE // 100  # 10 ms
CLICK_EVERY_S = 0.5
PACAT_LATENCY_MS = 10

FIRST_SOUND_JS = """() => new Promise((resolve) => {
  const button = document.getElementById("listen");
  const clicked = performance.now();
  button.click();
  const poll = () => {
    const levels = window.rtcCaster.meters.levels();
    if (Math.max(levels.left.rmsDb, levels.right.rmsDb) > -40) resolve(performance.now() - clicked);
    else requestAnimationFrame(poll);
  };
  requestAnimationFrame(poll);
})"""

# Finds click onsets in the page's stream; records their wall-clock time (ms since the epoch).
CLICK_DETECTOR_JS = """() => {
  // Every 256-sample block of the page's stream, as it is processed: no block can be missed.
  const stream = document.getElementById("player").srcObject;
  const context = new AudioContext();
  const probe = context.createScriptProcessor(256, 2, 1);
  context.createMediaStreamSource(stream).connect(probe);
  probe.connect(context.destination);  // it only runs when connected; it outputs silence
  window.__onsets = [];
  let last = 0;
  probe.onaudioprocess = (event) => {
    const now = performance.timeOrigin + performance.now();
    const samples = event.inputBuffer.getChannelData(0);
    for (let i = 0; i < samples.length; i++) {
      if (Math.abs(samples[i]) > 0.3) {
        const onset = now - ((samples.length - i) / context.sampleRate) * 1000;
        if (onset - last > 250) { window.__onsets.push(onset); last = onset; }
        break;
      }
    }
  };
  window.__probe = probe;
}"""

STATS_JS = """async () => {
  const report = await window.rtcCaster.connection.pc.getStats();
  let result = null;
  report.forEach((s) => { if (s.type === "inbound-rtp" && s.kind === "audio")
    result = { jitterBufferMs: 1000 * s.jitterBufferDelay / s.jitterBufferEmittedCount,
               targetMs: s.jitterBufferTargetDelay ? 1000 * s.jitterBufferTargetDelay / s.jitterBufferEmittedCount : null }; });
  return result;
}"""


def setup_django(db_path):
    os.environ["RTC_DB_PATH"] = str(db_path)
    os.environ["RTC_ICE_ADDRESSES"] = "127.0.0.1"  # benchmarks send media over loopback only
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rtccaster_site.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", "--noinput", verbosity=0)
    from streams.models import StreamProfile

    StreamProfile.objects.create(name="Tone", slug="tone")
    # DTX off: this measures continuous sound; with DTX a quiet floor would be sent as no packets at all.
    StreamProfile.objects.create(
        name="Desk", slug="desk", source="device", device_name="PulseAudio: virt.monitor", opus_dtx=False
    )


def summary(values):
    values = sorted(values)
    p95 = values[min(len(values) - 1, int(round(0.95 * (len(values) - 1))))]
    return f"median {statistics.median(values):.0f} ms, p95 {p95:.0f} ms, min {values[0]:.0f}, max {values[-1]:.0f} (n={len(values)})"


def time_to_first_sound(server, tries):
    times = []
    with chromium_page() as page:
        for _ in range(tries):
            page.goto(server.url("/listen/tone/"))
            page.wait_for_function("window.rtcCaster !== undefined")
            times.append(page.evaluate(FIRST_SOUND_JS))
    return times


class ClickWriter(threading.Thread):
    """Feeds pacat a -40 dBFS noise floor with a 5 ms click every CLICK_EVERY_S, noting when each click is written."""

    def __init__(self, rig):
        super().__init__(daemon=True)
        command = ["pacat", "--playback", "--device=virt", "--raw", "--format=s16le", f"--rate={RATE}",
                   "--channels=2", f"--latency-msec={PACAT_LATENCY_MS}"]
        self.pacat = subprocess.Popen(command, stdin=subprocess.PIPE, env=rig.child_env())
        self.written = []
        self.stopping = threading.Event()
        rng = np.random.default_rng(1)
        self.floor = (rng.normal(0, 0.01, (CHUNK, 2)) * 32767).astype(np.int16)
        click = self.floor.copy()
        click[:240] = int(0.8 * 32767)
        click[240:480] = -int(0.8 * 32767)
        self.click = click

    def run(self):
        # Paced by the clock, 10 ms per chunk, so that no backlog builds up in the pipe: a click
        # written at t is played at t plus pacat's 10 ms buffer.
        start = time.monotonic()
        chunks = 0
        every = int(CLICK_EVERY_S * 100)
        while not self.stopping.is_set():
            delay = start + chunks * 0.01 - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            is_click = chunks >= 100 and chunks % every == 0
            self.pacat.stdin.write((self.click if is_click else self.floor).tobytes())
            self.pacat.stdin.flush()
            if is_click:
                self.written.append(time.time() * 1000)
            chunks += 1

    def stop(self):
        self.stopping.set()
        self.join(2)
        self.pacat.terminate()


def source_to_browser(server, rig, clicks):
    writer = ClickWriter(rig)
    writer.start()
    try:
        with chromium_page() as page:
            page.goto(server.url("/listen/desk/"))
            page.click("#listen")
            wait_for(lambda: page.get_attribute("#status", "data-state") == "connected", 20, "connected")
            page.evaluate(CLICK_DETECTOR_JS)
            wait_for(lambda: page.evaluate("window.__onsets.length") >= clicks + 2, 10 + clicks * CLICK_EVERY_S * 2,
                     f"{clicks} clicks in the page")
            onsets = page.evaluate("window.__onsets")
            stats = page.evaluate(STATS_JS)
            stats["serverBacklogMs"] = next(h["source_backlog_ms"] for h in server.status()["hubs"] if h["slug"] == "desk")
    finally:
        writer.stop()
    delays = []
    for written in writer.written:
        later = [onset - written for onset in onsets if 0 < onset - written < 1000]
        if later:
            delays.append(min(later))
    if os.environ.get("LATENCY_DEBUG"):
        print("written", [round(w) for w in writer.written][:30])
        print("onsets ", [round(o) for o in onsets][:30])
    return delays[2:], stats  # the first clicks meet a jitter buffer still settling


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tries", type=int, default=20)
    parser.add_argument("--clicks", type=int, default=40)
    parser.add_argument("--sessions", type=int, default=3, help="browser sessions for source to browser")
    args = parser.parse_args()
    print("command:", shlex.join([".venv/bin/python", "bench/latency.py", *sys.argv[1:]]))
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, Chromium via Playwright, loopback")
    with tempfile.TemporaryDirectory() as workdir, PulseAudioRig() as rig:
        db = Path(workdir) / "latency.sqlite3"
        setup_django(db)
        server = DaphneServer(db, Path(workdir) / "app.log", extra_env=rig.env).start()
        try:
            first = time_to_first_sound(server, args.tries)
            print(f"time to first sound (click -> first non-silent analyser frame): {summary(first)}")
            # Each browser session settles its jitter buffer its own way: measure several, pool them.
            pooled = []
            for session in range(1, args.sessions + 1):
                delays, stats = source_to_browser(server, rig, args.clicks)
                pooled += delays
                print(f"source to browser, session {session}: {summary(delays)}; "
                      f"server ring wait {stats['serverBacklogMs']:.0f} ms, "
                      f"browser jitter buffer {stats['jitterBufferMs']:.0f} ms"
                      + (f" (target {stats['targetMs']:.0f} ms)" if stats["targetMs"] else ""))
            print(f"source to browser (click written to the sink -> onset in the page), all sessions: {summary(pooled)}")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
