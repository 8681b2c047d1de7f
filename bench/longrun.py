"""A long run: N listeners for many minutes; the event loop must keep up the whole time.

The server measures its own event-loop lag (streams/ops/loopwatch.py: a 100 ms tick, p50/p99/max
reported once a minute in the log and in /status.json). This starts `manage.py serve`,
connects `--listeners` real aiortc listeners from client processes (bench/swarm.py), reads
each minute's lag while they listen, and at the end the packets every listener counted.
Target (issue 7): 100 listeners for 10 minutes with loop lag p99 under 50 ms.

    .venv/bin/python bench/longrun.py                          # 100 listeners, 10 minutes
    .venv/bin/python bench/longrun.py --listeners 100 --minutes 10
"""
import argparse
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from bench.listeners import keeps_up, prepare_database, print_row, run_step  # noqa: E402
from streams.ops.loopwatch import REPORT_SECONDS  # noqa: E402
from tests.rigs.daphne import DaphneServer  # noqa: E402


def watch_loop_lag(minutes):
    """A `during` callback for run_step: read the server's last-minute lag once a minute."""
    minutes_seen = []

    def during(server, seconds):
        end = time.monotonic() + seconds
        next_read = time.monotonic() + REPORT_SECONDS + 2  # just after the server's minute report
        while next_read < end:
            time.sleep(max(0.0, next_read - time.monotonic()))
            status = server.status()
            lag = status["loop_lag_ms_last_minute"]
            minutes_seen.append(lag)
            gc = status["gc_pauses_ms_last_minute"]
            print(f"  minute {len(minutes_seen):>2}: peers={status['peers']}  loop lag p50={lag['p50']} ms "
                  f"p99={lag['p99']} ms max={lag['max']} ms ({lag['samples']} ticks)  garbage collector: "
                  f"{gc['count']} runs ({gc['full']} full), {gc['total']} ms, longest {gc['max']} ms", flush=True)
            next_read += REPORT_SECONDS

    return during, minutes_seen


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listeners", type=int, default=100)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--swarm-size", type=int, default=50)
    args = parser.parse_args()
    print("command:", shlex.join([".venv/bin/python", "bench/longrun.py", *sys.argv[1:]]))
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as workdir:
        db = prepare_database(workdir)
        env = {"RTC_LOG_LEVEL": "INFO", "RTC_MAX_LISTENERS_PER_ADDRESS": "0", "RTC_MAX_SOCKETS_PER_ADDRESS": "0"}
        log = Path(workdir) / "app.log"
        server = DaphneServer(db, log, extra_env=env).start()
        try:
            during, minutes = watch_loop_lag(args.minutes)
            row = run_step(server, args.listeners, args.minutes * 60, args.swarm_size, during=during)
            row["mode"] = "once"
            print_row(row)
        finally:
            server.stop()
        logged = [line.strip() for line in log.read_text().splitlines()
                  if "event loop lag" in line or "garbage collector" in line]
    print(f"the server's own log, once a minute ({len(logged)} lines):")
    for line in logged:
        print("  " + line)
    worst = max((m["p99"] for m in minutes), default=None)
    print(f"{args.listeners} listeners for {args.minutes:g} min: worst minute's loop lag p99 {worst} ms "
          f"(target < 50 ms), {'listeners kept up' if keeps_up(row) else 'listeners did NOT keep up'}")


if __name__ == "__main__":
    main()
