"""A device stream's timing as a listener meets it, minute by minute.

A steady 1 kHz tone is played into the PulseAudio rig's null sink (its monitor delivers
exactly 48,000 samples/s of the system clock); a device profile captures the monitor; one
aiortc listener records every RTP packet and decodes the audio. Each minute prints the
packet rate, the drift of the stream's timeline against the wall clock, the send spread
(p50/p95), timeline jumps, lost packets and dropouts (20 ms windows 20 dB under the tone),
with the server's own capture-to-send figures (/status.json). `--load burn` keeps both cores
busy with busy loops; `--load listeners:N` adds N listeners in client processes.

    .venv/bin/python bench/device_clock.py --minutes 10
    .venv/bin/python bench/device_clock.py --minutes 10 --load burn
    .venv/bin/python bench/device_clock.py --minutes 10 --load listeners:250
"""
import argparse
import asyncio
import contextlib
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from bench.listeners import prepare_database  # noqa: E402
from bench.soak import create_device_profile  # noqa: E402
from bench.swarm import Swarms  # noqa: E402
from streams.webrtc.ice import restrict_host_addresses  # noqa: E402
from tests.listener import Listener  # noqa: E402
from tests.rigs.cpuload import cpu_burners  # noqa: E402
from tests.rigs.daphne import DaphneServer  # noqa: E402
from tests.rigs.pulseaudio import PulseAudioRig  # noqa: E402
from tests.rigs.rtptiming import dropouts, rtp_timing  # noqa: E402

@contextlib.contextmanager
def load(kind, server):
    if kind == "none":
        yield "quiet machine"
    elif kind == "burn":
        with cpu_burners() as burners:
            yield f"{len(burners)} busy-loop processes"
    elif kind.startswith("listeners:"):
        count = int(kind.split(":", 1)[1])
        swarms = Swarms([server.ws_url("desk")], count, seconds=3600)
        try:
            yield f"{swarms.connected} more listeners"
        finally:
            swarms.close()
    else:
        raise SystemExit(f"unknown --load {kind!r}")


def describe(label, timing, dropped, status, reference, server_label="server"):
    frames = status["hubs"][0]["frames"]
    server = frames["capture_to_send_ms"] or {}
    lag = status["loop_lag_ms_last_minute"]
    print(f"  {label}: {timing['packet_rate']:.3f} packets/s, drift {timing['drift_ms_per_minute']:+.1f} ms/min "
          f"(lower envelope {timing['envelope_drift_ms_per_minute']:+.1f}), "
          f"spread p50 {timing['spread_p50_ms']:.1f} ms p95 {timing['spread_p95_ms']:.1f} ms "
          f"(the device read by parec: p95 {reference['spread_p95_ms']:.1f} ms, drift {reference['drift_ms_per_minute']:+.1f}), "
          f"jumps {timing['timeline_jumps']}, lost {timing['lost']}, dropouts {dropped}; {server_label}: capture to send "
          f"p50 {server.get('p50')} ms p99 {server.get('p99')} ms, dropped {frames['dropped_frames']}, "
          f"silence {frames['silence_frames']}, event loop lag p99 {lag['p99']} ms max {lag['max']} ms, "
          f"longest GC pause {status['gc_pauses_ms_last_minute']['max']} ms", flush=True)


class DeviceReference:
    """The device's own delivery, read beside the server: parec on the same monitor with the same
    10 ms latency, its reads timed by a process of its own. Each read is stamped like a packet
    (arrival ms, count, samples so far), so rtp_timing gives its spread and drift: the floor that
    a stream from this device cannot beat on this machine."""

    def __init__(self, rig):
        code = ("import json, os, subprocess, sys, time\n"
                "p = subprocess.Popen(['parec', '--device=virt.monitor', '--raw', '--format=s16le', '--rate=48000',"
                " '--channels=2', '--latency-msec=10'], stdout=subprocess.PIPE)\n"
                "samples, reads = 0, 0\n"
                "while True:\n"
                "    data = os.read(p.stdout.fileno(), 3840)\n"
                "    samples += len(data) // 4; reads += 1\n"
                "    if samples % 960 < len(data) // 4:\n"  # a line per 20 ms of samples, like a packet
                "        print(json.dumps([time.time() * 1000, reads, samples - samples % 960]), flush=True)\n")
        self.process = subprocess.Popen([sys.executable, "-c", code], env=rig.child_env(), stdout=subprocess.PIPE, text=True)
        self.records = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        for line in self.process.stdout:
            arrival, reads, samples = json.loads(line)
            self.records.append((arrival, reads, samples, b""))

    def close(self):
        self.process.kill()
        self.process.wait()


async def measure(server, rig, minutes):
    listener = Listener(server.ws_url("desk"))
    await listener.connect()
    reference = DeviceReference(rig)
    try:
        await listener.listen_for(3)
        heard = listener.heard
        marks = [(len(heard.packets), len(heard.chunks), len(reference.records))]
        statuses = []
        for _ in range(int(minutes)):
            await asyncio.sleep(60)  # nothing heavy on this loop while it listens: all figures come at the end
            marks.append((len(heard.packets), len(heard.chunks), len(reference.records)))
            statuses.append(await asyncio.to_thread(server.status))
    finally:
        await listener.close()
        reference.close()

    def figures(start, end):
        timing = rtp_timing(heard.packets[start[0]:end[0]], 48_000)
        samples = np.concatenate([c for _, c in heard.chunks[start[1]:end[1]]])[:, 0]
        device = rtp_timing([(a, i % 65536, s % (1 << 32), b"") for i, (a, _, s, _) in enumerate(reference.records[start[2]:end[2]])], 48_000)
        return timing, dropouts(samples, heard.sample_rate), device

    for minute, (start, end, status) in enumerate(zip(marks, marks[1:], statuses), 1):
        describe(f"minute {minute:>2}", *figures(start, end)[:2], status, figures(start, end)[2])
    timing, dropped, device = figures(marks[0], marks[-1])
    # The server's /status.json keeps one minute: the whole run's row shows its last.
    describe("all", timing, dropped, statuses[-1], device, server_label="server, its last minute")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--load", default="none", help="none, burn, or listeners:N")
    args = parser.parse_args()
    print("command:", shlex.join([".venv/bin/python", "bench/device_clock.py", *sys.argv[1:]]))
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    restrict_host_addresses(["127.0.0.1"])
    with tempfile.TemporaryDirectory() as workdir, PulseAudioRig() as rig:
        db = prepare_database(workdir)
        create_device_profile(db, opus_dtx=False)  # DTX off: the tone is steady anyway; no packet may be missing
        server = DaphneServer(db, Path(workdir) / "app.log", extra_env={**rig.env, "RTC_MAX_LISTENERS_PER_ADDRESS": "0", "RTC_MAX_SOCKETS_PER_ADDRESS": "0"})
        server.start()
        tone = rig.play_tone(1000, seconds=args.minutes * 60 + 120)
        try:
            with load(args.load, server) as described:
                print(f"load: {described}; one decoding listener, {args.minutes} minutes", flush=True)
                asyncio.run(measure(server, rig, args.minutes))
        finally:
            tone.terminate()
            server.stop()


if __name__ == "__main__":
    main()
