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
import os
import platform
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from bench.listeners import prepare_database  # noqa: E402
from bench.swarm import Swarms  # noqa: E402
from streams.ice import restrict_host_addresses  # noqa: E402
from tests.listener import Listener  # noqa: E402
from tests.rigs.cpuload import cpu_burners  # noqa: E402
from tests.rigs.daphne import DaphneServer  # noqa: E402
from tests.rigs.pulseaudio import PulseAudioRig  # noqa: E402
from tests.rigs.rtptiming import dropouts, rtp_timing  # noqa: E402

MONITOR = "PulseAudio: virt.monitor"


def add_device_profile(db):
    env = {**os.environ, "RTC_DB_PATH": str(db), "DJANGO_SETTINGS_MODULE": "rtccaster_site.settings"}
    code = ("import django; django.setup(); from streams.models import StreamProfile; "
            f"StreamProfile.objects.create(name='Desk', slug='desk', source='device', device_name={MONITOR!r}, "
            "opus_dtx=False)")
    subprocess.run([sys.executable, "-c", code], cwd=PROJECT, env=env, check=True)


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


def describe(label, timing, dropped, status):
    frames = status["hubs"][0]["frames"]
    server = frames["capture_to_send_ms"] or {}
    lag = status["loop_lag_ms_last_minute"]
    print(f"  {label}: {timing['packet_rate']:.3f} packets/s, drift {timing['drift_ms_per_minute']:+.1f} ms/min, "
          f"spread p50 {timing['spread_p50_ms']:.1f} ms p95 {timing['spread_p95_ms']:.1f} ms, "
          f"jumps {timing['timeline_jumps']}, lost {timing['lost']}, dropouts {dropped}; server: capture to send "
          f"p50 {server.get('p50')} ms p99 {server.get('p99')} ms, dropped {frames['dropped_frames']}, "
          f"silence {frames['silence_frames']}, event loop lag p99 {lag['p99']} ms max {lag['max']} ms, "
          f"longest GC pause {status['gc_pauses_ms_last_minute']['max']} ms", flush=True)


async def measure(server, minutes):
    listener = Listener(server.ws_url("desk"))
    await listener.connect()
    try:
        await listener.listen_for(3)
        heard = listener.heard
        minute_rows, start_packet, start_chunk = [], len(heard.packets), len(heard.chunks)
        first_packet, first_chunk = start_packet, start_chunk
        for minute in range(1, int(minutes) + 1):
            await asyncio.sleep(60)
            status = server.status()
            timing = rtp_timing(heard.packets[start_packet:], 48_000)
            samples = np.concatenate([c for _, c in heard.chunks[start_chunk:]])[:, 0]
            dropped = dropouts(samples, heard.sample_rate)
            describe(f"minute {minute:>2}", timing, dropped, status)
            minute_rows.append(timing)
            start_packet, start_chunk = len(heard.packets), len(heard.chunks)
        timing = rtp_timing(heard.packets[first_packet:], 48_000)
        samples = np.concatenate([c for _, c in heard.chunks[first_chunk:]])[:, 0]
        describe("all", timing, dropouts(samples, heard.sample_rate), server.status())
    finally:
        await listener.close()


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
        add_device_profile(db)
        server = DaphneServer(db, Path(workdir) / "app.log", extra_env={**rig.env, "RTC_MAX_LISTENERS_PER_ADDRESS": "0"})
        server.start()
        tone = rig.play_tone(1000, seconds=args.minutes * 60 + 120)
        try:
            with load(args.load, server) as described:
                print(f"load: {described}; one decoding listener, {args.minutes} minutes", flush=True)
                asyncio.run(measure(server, args.minutes))
        finally:
            tone.terminate()
            server.stop()


if __name__ == "__main__":
    main()
