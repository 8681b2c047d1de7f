"""How many listeners one server process sustains: encode-once vs per-listener encoding.

Starts `manage.py serve` (daphne) on 127.0.0.1 with the default profile (440 Hz sine,
stereo Opus 96 kb/s), then for each N connects N real aiortc listeners from separate
client processes (bench/swarm.py), so that client work does not count as server CPU.
Over a measuring window it reads the server's CPU time, RSS and thread count from /proc
and the clients' packet counts, and steps N up until the server no longer keeps up
(fewer than 99.5 % of packets on time).

    .venv/bin/python bench/listeners.py                       # both modes, default steps
    .venv/bin/python bench/listeners.py --mode once --steps 50,100,200,300
    .venv/bin/python bench/listeners.py --workers 1,2       # multi-process mode, see bench/workers.py
"""
import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from bench.swarm import Swarms  # noqa: E402
from tests.rigs.daphne import DaphneServer  # noqa: E402
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def proc_cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def proc_status(pid):
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {"rss_mb": int(status["VmRSS"].split()[0]) / 1024, "threads": int(status["Threads"])}


def machine_busy_seconds():
    """CPU seconds all cores spent not idle, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / CLOCK_TICKS


def server_hub_counters(server):
    hubs = server.status()["hubs"]
    return sum(h["late_frames"] for h in hubs), sum(h["dropped_packets"] for h in hubs), sum(h["packets_sent"] for h in hubs)


def prepare_database(directory):
    db = Path(directory) / "bench.sqlite3"
    env = {**os.environ, "RTC_DB_PATH": str(db), "RTC_ADMIN_PASSWORD": "bench-only-password"}
    for command in (["migrate", "--noinput", "-v", "0"], ["bootstrap"]):
        subprocess.run([sys.executable, "manage.py", *command], cwd=PROJECT, env=env, check=True, capture_output=True)
    return db


def profile_server(pid, seconds, top=15):
    """Sample the server with py-spy for `seconds`; print where its time goes, by function
    (self time: the innermost frame, C code below it counted to it)."""
    with tempfile.NamedTemporaryFile(suffix=".txt") as out:
        subprocess.run([str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "200",
                        "--format", "raw", "--output", out.name, "--nonblocking"],
                       check=True, capture_output=True)
        own, total = {}, 0
        for line in Path(out.name).read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            function = function_of(stack.split(";")[-1]) if stack else "?"  # py-spy lists a stack outermost first
            own[function] = own.get(function, 0) + int(count)
            total += int(count)
    print(f"  where the server's time goes ({total} samples, self time by function):")
    for function, count in sorted(own.items(), key=lambda item: -item[1])[:top]:
        print(f"    {100 * count / total:5.1f} %  {function}")


def function_of(frame):
    """'sendto (asyncio/selector_events.py:1196)' -> 'sendto (asyncio/selector_events.py)'."""
    name, _, place = frame.partition(" (")
    return f"{name} ({place.rsplit(':', 1)[0]})" if place else name


def run_step(server, count, seconds, swarm_size, profile=False, during=None, idle_rss_mb=None):
    """N listeners for `seconds`; `during(server, seconds)`, if given, runs while they listen.
    RSS growth is reported per listener from just before this step, and from `idle_rss_mb`
    (the server before its first listener) if given."""
    pid = server.process.pid
    before = proc_status(pid)
    swarms = Swarms([server.ws_url("default")], count, seconds, swarm_size)
    time.sleep(1.0)  # let every listener's first packets and RTCP settle before measuring
    late_start, dropped_start, sent_start = server_hub_counters(server)
    client_start = sum(proc_cpu_seconds(p) for p in swarms.pids)
    busy_start = machine_busy_seconds()
    cpu_start, wall_start = proc_cpu_seconds(pid), time.monotonic()
    swarms.go()
    if profile:
        profile_server(pid, seconds - 1)
    if during:
        during(server, seconds)
    totals = swarms.results()
    cpu = proc_cpu_seconds(pid) - cpu_start
    wall = time.monotonic() - wall_start
    clients_cpu = sum(proc_cpu_seconds(p) for p in swarms.pids) - client_start
    machine_busy = machine_busy_seconds() - busy_start
    late_end, dropped_end, sent_end = server_hub_counters(server)
    during = proc_status(pid)
    swarms.close()
    packets = totals["packets"]
    return {
        "listeners": count,
        "connected": swarms.connected,
        "cpu_per_second": cpu / wall,
        "cpu_us_per_listener_packet": 1e6 * cpu / packets if packets else None,
        "packets_per_listener_per_second": packets / totals["listeners"] / seconds if totals["listeners"] else 0,
        **delivery(totals),
        "server_late_frames": late_end - late_start,
        "server_frames": sent_end - sent_start,
        "server_dropped_packets": dropped_end - dropped_start,
        "clients_cpu_per_second": clients_cpu / wall,
        "machine_cpu_per_second": machine_busy / wall,
        "rss_mb": during["rss_mb"],
        "rss_growth_mb_per_listener": (during["rss_mb"] - before["rss_mb"]) / count,
        "rss_growth_since_idle_mb_per_listener": (during["rss_mb"] - idle_rss_mb) / count if idle_rss_mb else None,
        "threads": during["threads"],
        "threads_before": before["threads"],
    }


def delivery(totals):
    """Share of the expected packets received, and of late or lost ones, from Swarms.results()."""
    packets, lost = totals["packets"], totals["lost"]
    return {"received_ratio": packets / totals["expected"] if totals["expected"] else 0,
            "late_or_lost_percent": 100 * (totals["late"] + lost) / max(packets + lost, 1)}


def keeps_up(row):
    """Every listener connected, received >= 99.5 % of its packets, < 0.5 % late or lost."""
    return (row["connected"] == row["listeners"] and row["received_ratio"] >= 0.995
            and row["late_or_lost_percent"] < 0.5)


def run_mode(mode, steps, seconds, swarm_size, workdir, profile=False):
    db = prepare_database(workdir)
    env = {
        "RTC_ENCODE_PER_LISTENER": "1" if mode == "per-listener" else "0",
        "RTC_LOG_LEVEL": "WARNING",
        "RTC_MAX_LISTENERS_PER_ADDRESS": "0", "RTC_MAX_SOCKETS_PER_ADDRESS": "0",  # every benchmark listener comes from 127.0.0.1
    }
    server = DaphneServer(db, Path(workdir) / f"{mode}.log", extra_env=env).start()
    server.status()  # the first request's imports belong to the idle server
    idle_rss_mb = proc_status(server.process.pid)["rss_mb"]
    print(f"{mode:>12}  idle server: rss={idle_rss_mb:.0f} MB", flush=True)
    rows = []
    try:
        for count in steps:
            row = run_step(server, count, seconds, swarm_size, profile, idle_rss_mb=idle_rss_mb)
            row["mode"] = mode
            rows.append(row)
            print_row(row)
            if not keeps_up(row):
                break
            time.sleep(2)  # the previous listeners' peers close
    finally:
        server.stop()
    return rows


def print_row(row):
    since_idle = row.get("rss_growth_since_idle_mb_per_listener")
    since_idle = f", +{since_idle:.3f}/listener since idle" if since_idle is not None else ""
    print(f"{row['mode']:>12}  N={row['listeners']:>4}  connected={row['connected']:>4}  "
          f"cpu={row['cpu_per_second']:.2f} s/s  {row['cpu_us_per_listener_packet'] or 0:7.1f} us/listener-packet  "
          f"pkts/listener/s={row['packets_per_listener_per_second']:5.1f}  late+lost={row['late_or_lost_percent']:.2f}%  "
          f"rss={row['rss_mb']:.0f} MB (+{row['rss_growth_mb_per_listener']:.3f}/listener in this step{since_idle})  "
          f"threads={row['threads']} (before {row['threads_before']})  "
          f"server late frames={row['server_late_frames']}/{row['server_frames']} dropped={row['server_dropped_packets']}  "
          f"clients cpu={row['clients_cpu_per_second']:.2f} s/s  machine cpu={row['machine_cpu_per_second']:.2f}/{os.cpu_count()}  "
          f"{'ok' if keeps_up(row) else 'FAILS'}", flush=True)


def main():
    if any(arg == "--workers" or arg.startswith("--workers=") for arg in sys.argv[1:]):
        # One media owner and N daphne workers through Redis: its own module, as it needs other rigs.
        from bench.workers import main as workers_main
        return workers_main(sys.argv[1:], script="bench/listeners.py")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["both", "once", "per-listener"], default="both")
    parser.add_argument("--steps", default="50,100,200,250,300,400", help="listener counts, encode-once mode")
    parser.add_argument("--per-listener-steps", default="5,10,20,30,40", help="listener counts, per-listener mode")
    parser.add_argument("--seconds", type=float, default=10, help="measuring window per step")
    parser.add_argument("--swarm-size", type=int, default=50, help="listeners per client process")
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--profile", action="store_true", help="sample the server with py-spy in each window")
    args = parser.parse_args()
    print("command:", shlex.join([".venv/bin/python", "bench/listeners.py", *sys.argv[1:]]))
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        if args.mode in ("both", "once"):
            steps = [int(n) for n in args.steps.split(",")]
            rows += run_mode("once", steps, args.seconds, args.swarm_size, workdir, args.profile)
        if args.mode in ("both", "per-listener"):
            rows += run_mode("per-listener", [int(n) for n in args.per_listener_steps.split(",")], args.seconds,
                             args.swarm_size, workdir)
    summarize(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


def summarize(rows):
    for mode in ("once", "per-listener"):
        held = [r for r in rows if r["mode"] == mode and keeps_up(r)]
        if held:
            best = held[-1]
            print(f"{mode}: held {best['listeners']} listeners at {best['cpu_per_second']:.2f} CPU s/s, "
                  f"{best['cpu_us_per_listener_packet']:.1f} us per listener-packet")
    costs = {mode: [r["cpu_us_per_listener_packet"] for r in rows if r["mode"] == mode and keeps_up(r)]
             for mode in ("once", "per-listener")}
    if costs["once"] and costs["per-listener"]:
        print(f"per-listener / encode-once CPU per listener-packet: {min(costs['per-listener']) / min(costs['once']):.1f}x")


if __name__ == "__main__":
    main()
