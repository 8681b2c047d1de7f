"""Ogg over HTTP beside WebRTC, one server, one run: CPU per listener, and when each path
delivers the same packet.

1. CPU. One `manage.py serve` (daphne) with the default profile (440 Hz sine, stereo Opus
   96 kb/s). For each N, N WebRTC listeners (bench/swarm.py: aiortc, full ICE/DTLS/SRTP,
   counting packets) and then N HTTP listeners of /stream/default.ogg (this file's own
   swarm: tests/rigs/ogg_http.py clients reading and parsing every page), each kind from
   client processes of --swarm-size, so client work is not server CPU. Over each window:
   server CPU from /proc/<pid>/stat, packets the clients counted, lost (concealment packets
   for Ogg, sequence gaps for RTP) and late (> 100 ms after due). The two kinds alternate,
   and their order flips each round (--rounds), so that a drift of the machine shows.
2. Delivery (--latency-seconds): one aiortc WebRTC listener and one Ogg client in this process
   take the same stream; each packet is found in both by its bytes (an encoder's packets do
   not repeat) and its two arrival times (both on the wall clock) compared: Ogg minus WebRTC.
   Measured idle and then beside --latency-load WebRTC and --latency-load Ogg listeners.
   This is the server's delivery only: a player's own buffering (VLC: 1 s by default) comes
   on top and is not measured here.

    .venv/bin/python bench/ogg.py
    .venv/bin/python bench/ogg.py --steps 50,100,200 --rounds 2 --latency-seconds 60
"""
import argparse
import asyncio
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from bench.listeners import delivery, keeps_up, machine_busy_seconds, prepare_database, proc_cpu_seconds, proc_status  # noqa: E402
from bench.swarm import LATE_MS, Swarms, run_swarm  # noqa: E402
from tests.rigs.daphne import DaphneServer  # noqa: E402

NTP_OFFSET_SECONDS = 2_208_988_800  # aiortc stamps arrivals in ms since 1900 (NTP), time.time() since 1970


class OggSwarms(Swarms):
    """Client processes of Ogg listeners of the server on `port`, driven as bench/swarm.py's Swarms
    are (the same protocol): this file run with --swarm."""

    def __init__(self, port, count, seconds, swarm_size=50):
        super().__init__([port], count, seconds, swarm_size)

    def client_command(self, port, count, seconds):
        return [sys.executable, os.path.abspath(__file__), "--swarm", "--port", str(port),
                "--count", str(count), "--seconds", str(seconds)]


class OggCountingListener:
    """A listener of /stream/default.ogg for bench.swarm.run_swarm: over the window it counts real
    packets, concealment packets (lost to it), and packets more than LATE_MS after their due time."""

    def __init__(self, port):
        from tests.rigs.ogg_http import OggHttpClient

        self.client = OggHttpClient(port, "/stream/default.ogg")
        self.window_start = 0

    async def connect(self):
        await self.client.open()
        if self.client.status != 200:
            raise ConnectionError(f"HTTP {self.client.status}")

    def reset(self):
        self.window_start = len(self.client.pages)

    def stats(self):
        return window_stats(self.client.pages[self.window_start:])

    async def close(self):
        await self.client.close()


def window_stats(pages):
    packets = lost = late = 0
    best = None
    for arrived, page in pages:
        if page.granule == 0:
            continue  # a header page
        real = [packet for packet in page.packets if len(packet) > 1]
        packets += len(real)
        lost += len(page.packets) - len(real)
        transit = arrived - page.granule / 48_000
        best = transit if best is None else min(best, transit)
        if (transit - best) * 1000 > LATE_MS:
            late += len(page.packets)
    return {"packets": packets, "lost": lost, "late": late}


def run_step(server, kind, count, seconds, swarm_size):
    pid = server.process.pid
    swarms = (Swarms([server.ws_url("default")], count, seconds, swarm_size) if kind == "webrtc"
              else OggSwarms(server.port, count, seconds, swarm_size))
    time.sleep(1.0)  # first packets, RTCP and page bursts settle before measuring
    busy_start, cpu_start, wall_start = machine_busy_seconds(), proc_cpu_seconds(pid), time.monotonic()
    client_start = sum(proc_cpu_seconds(p) for p in swarms.pids)
    swarms.go()
    totals = swarms.results()
    cpu, wall = proc_cpu_seconds(pid) - cpu_start, time.monotonic() - wall_start
    clients_cpu = sum(proc_cpu_seconds(p) for p in swarms.pids) - client_start
    machine = machine_busy_seconds() - busy_start
    rss = proc_status(pid)["rss_mb"]
    swarms.close()
    packets = totals["packets"]
    row = {
        "kind": kind, "listeners": count, "connected": swarms.connected,
        "cpu_per_second": cpu / wall,
        "cpu_us_per_listener_packet": 1e6 * cpu / packets if packets else None,
        "cpu_ms_per_listener_second": 1e3 * cpu / wall / count,
        **delivery(totals),
        "clients_cpu_per_second": clients_cpu / wall, "machine_cpu_per_second": machine / wall, "rss_mb": rss,
    }
    print(f"{kind:>6}  N={count:>4}  connected={row['connected']:>4}  cpu={row['cpu_per_second']:.3f} s/s  "
          f"{row['cpu_ms_per_listener_second']:.2f} ms/s per listener  "
          f"{row['cpu_us_per_listener_packet'] or 0:6.1f} us/listener-packet  received={100 * row['received_ratio']:.2f}%  "
          f"late+lost={row['late_or_lost_percent']:.2f}%  rss={rss:.0f} MB  clients cpu={clients_cpu / wall:.2f} s/s  "
          f"machine cpu={machine / wall:.2f}/{os.cpu_count()}  {'ok' if keeps_up(row) else 'FAILS'}", flush=True)
    return row


async def delivery_probe(server, seconds):
    """Ogg arrival minus WebRTC arrival of the same packets (ms), over `seconds`."""
    from streams.webrtc.ice import restrict_host_addresses
    from tests.listener import Listener
    from tests.rigs.ogg_http import OggHttpClient

    restrict_host_addresses(["127.0.0.1"])  # this listener's candidates too: loopback only
    webrtc = Listener(server.ws_url("default"))
    await webrtc.connect()
    http = await OggHttpClient(server.port, "/stream/default.ogg").open()
    loop = asyncio.get_running_loop()
    # OggHttpClient stamps pages with the loop's clock: tie it to the wall clock once.
    wall_minus_loop = time.time() - loop.time()
    started = loop.time()
    while loop.time() - started < seconds:
        await asyncio.sleep(0.5)
    await http.close()
    await webrtc.close()
    rtp = {}
    for arrived_ms, _, _, payload, _ in webrtc.heard.packets:
        rtp.setdefault(payload, []).append(arrived_ms)
    differences = []
    for arrived, page in http.pages[2:]:
        for packet in page.packets:
            times = rtp.get(packet)
            if times and len(times) == 1:  # found once: no doubt which RTP packet it is
                ogg_ms = (arrived + wall_minus_loop + NTP_OFFSET_SECONDS) * 1000
                differences.append(ogg_ms - times[0])
    return differences, len(http.audio_packets())


def summarize_delivery(label, differences, ogg_packets):
    ordered = sorted(differences)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    print(f"delivery {label}: {len(differences)} of {ogg_packets} Ogg packets matched; Ogg minus WebRTC arrival: "
          f"median {statistics.median(ordered):.1f} ms, p5 {pick(0.05):.1f}, p95 {pick(0.95):.1f}, "
          f"min {ordered[0]:.1f}, max {ordered[-1]:.1f}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", default="50,100,200", help="listener counts of each kind")
    parser.add_argument("--seconds", type=float, default=10, help="measuring window per step")
    parser.add_argument("--rounds", type=int, default=2, help="repeats of every step, the order of kinds flipped")
    parser.add_argument("--swarm-size", type=int, default=50, help="listeners per client process")
    parser.add_argument("--latency-seconds", type=float, default=30, help="delivery probe per condition (0: none)")
    parser.add_argument("--latency-load", type=int, default=100, help="listeners of each kind beside the loaded probe")
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--swarm", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.swarm:
        return asyncio.run(run_swarm([OggCountingListener(args.port) for _ in range(args.count)], args.seconds))
    print("command:", shlex.join([".venv/bin/python", "bench/ogg.py", *sys.argv[1:]]))
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.2f} at start")
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        # Every client comes from 127.0.0.1: no per-address caps.
        env = {"RTC_LOG_LEVEL": "WARNING", "RTC_MAX_LISTENERS_PER_ADDRESS": "0", "RTC_MAX_SOCKETS_PER_ADDRESS": "0"}
        server = DaphneServer(prepare_database(workdir), Path(workdir) / "server.log", extra_env=env).start()
        server.status()
        try:
            for round_index in range(args.rounds):
                kinds = ("webrtc", "ogg") if round_index % 2 == 0 else ("ogg", "webrtc")
                for count in [int(n) for n in args.steps.split(",")]:
                    for kind in kinds:
                        rows.append(run_step(server, kind, count, args.seconds, args.swarm_size))
                        time.sleep(2)  # the previous listeners close
            if args.latency_seconds:
                summarize_delivery("idle", *asyncio.run(delivery_probe(server, args.latency_seconds)))
                load = [Swarms([server.ws_url("default")], args.latency_load, 1, args.swarm_size),
                        OggSwarms(server.port, args.latency_load, 1, args.swarm_size)]
                try:
                    summarize_delivery(f"beside {args.latency_load} WebRTC + {args.latency_load} Ogg listeners",
                                       *asyncio.run(delivery_probe(server, args.latency_seconds)))
                finally:
                    for swarms in load:
                        swarms.go()
                        swarms.results()
                        swarms.close()
        finally:
            server.stop()
    summarize(rows)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


def summarize(rows):
    for count in sorted({row["listeners"] for row in rows}):
        per_kind = {kind: [row for row in rows if row["listeners"] == count and row["kind"] == kind]
                    for kind in ("webrtc", "ogg")}
        parts = []
        for kind, kind_rows in per_kind.items():
            values = [row["cpu_ms_per_listener_second"] for row in kind_rows if keeps_up(row)]
            if values:
                parts.append(f"{kind} median {statistics.median(values):.2f} ms/s per listener "
                             f"({min(values):.2f}-{max(values):.2f} over {len(values)} windows that kept up)")
        print(f"N={count}: " + "; ".join(parts))


if __name__ == "__main__":
    main()
