"""Multi-process mode: listeners per machine with 1 and 2 daphne workers behind one media owner.

For each worker count it starts `manage.py media_owner` and the workers (`manage.py serve`
with REDIS_URL, each on its own port: the kernel's spreading over a shared socket is not
what is measured here), then for each N connects N real aiortc listeners (bench/swarm.py,
50 per client process) spread evenly over the workers. Over the window it reads the CPU
of every worker, of the owner and of redis-server from /proc, and the packets the clients
counted. The owner's cost should not depend on N; each worker's should fall with more
workers. On this 2-core machine the client processes share the cores with the server
processes, which caps what can be shown.

    .venv/bin/python bench/workers.py                       (or: bench/listeners.py --workers 1,2)
    .venv/bin/python bench/workers.py --workers 1,2 --steps 100,200,300
    .venv/bin/python bench/workers.py --worker-cpu 0.3 --steps 50,100,150,200,250,300
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

from bench.listeners import delivery, keeps_up, machine_busy_seconds, prepare_database, proc_cpu_seconds  # noqa: E402
from bench.swarm import Swarms  # noqa: E402
from bench.transport import redis_pid  # noqa: E402
from tests.rigs.owner import owner_and_workers  # noqa: E402

REDIS_URL = "redis://127.0.0.1:6379/12"
CPU_CGROUPS = Path("/sys/fs/cgroup/cpu")  # cgroup v1 cpu controller (this machine's)


class CpuCap:
    """Caps a process at a share of one core with a cgroup CPU quota (Linux, root)."""

    def __init__(self, pid, cores):
        self.path = CPU_CGROUPS / f"rtc-bench-{pid}"
        self.path.mkdir()
        period = int((self.path / "cpu.cfs_period_us").read_text())
        (self.path / "cpu.cfs_quota_us").write_text(str(int(cores * period)))
        (self.path / "cgroup.procs").write_text(str(pid))

    def remove(self):
        """After the process has exited."""
        self.path.rmdir()


def owner_late_frames():
    """Frames the media owner's paced source produced late, summed over its streams (from Redis)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        return sum(int(client.hget(key, "late_frames") or 0) for key in client.scan_iter(match="rtc:stats:*"))
    finally:
        client.close()


def run_step(workers, owner, count, seconds, swarm_size):
    swarms = Swarms([worker.ws_url("default") for worker in workers], count, seconds, swarm_size)
    time.sleep(1.0)  # let every listener's first packets and RTCP settle before measuring
    pids = {"owner": owner.process.pid, "redis": redis_pid(),
            **{f"worker{i + 1}": w.process.pid for i, w in enumerate(workers)}}
    cpu_before = {name: proc_cpu_seconds(pid) for name, pid in pids.items()}
    busy_before, wall = machine_busy_seconds(), time.monotonic()
    owner_late_before = owner_late_frames()
    swarms.go()
    totals = swarms.results()
    wall = time.monotonic() - wall
    cpu = {name: (proc_cpu_seconds(pid) - cpu_before[name]) / wall for name, pid in pids.items()}
    machine = (machine_busy_seconds() - busy_before) / wall
    swarms.close()
    row = {"workers": len(workers), "listeners": count, "connected": swarms.connected, "cpu": cpu,
           "machine_cpu": machine, "late": totals["late"], "lost": totals["lost"],
           "owner_late_frames": owner_late_frames() - owner_late_before, **delivery(totals)}
    row["ok"] = keeps_up(row)
    return row


def main(argv=None, script="bench/workers.py"):
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog=script, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--steps", default="50,100,200,300")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--swarm-size", type=int, default=50)
    parser.add_argument("--worker-cpu", type=float, default=None,
                        help="cap each worker at this share of one core (cgroup quota), to stand for a core per "
                             "worker on a machine whose other cores the benchmark's own clients need")
    args = parser.parse_args(argv)
    print("command:", shlex.join([".venv/bin/python", script, *argv]))
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    if args.worker_cpu:
        print(f"each worker capped at {args.worker_cpu} of a core (cgroup cpu.cfs_quota_us)")
    env = {"RTC_LOG_LEVEL": "WARNING", "RTC_MAX_LISTENERS_PER_ADDRESS": "0", "RTC_MAX_SOCKETS_PER_ADDRESS": "0"}
    with tempfile.TemporaryDirectory() as workdir:
        db = prepare_database(workdir)
        for worker_count in [int(n) for n in args.workers.split(",")]:
            caps = []
            try:
                with owner_and_workers(db, workdir, REDIS_URL, worker_count, owner_env={"RTC_LOG_LEVEL": "INFO"},
                                       worker_env=env) as (owner, workers):
                    if args.worker_cpu:
                        caps = [CpuCap(w.process.pid, args.worker_cpu) for w in workers]
                    for count in [int(n) for n in args.steps.split(",")]:
                        row = run_step(workers, owner, count, args.seconds, args.swarm_size)
                        cpu = row["cpu"]
                        worker_cpu = " ".join(f"{name}={value:.2f}" for name, value in cpu.items() if name.startswith("worker"))
                        print(f"workers={worker_count} N={count:>4} connected={row['connected']:>4}  {worker_cpu}  "
                              f"owner={cpu['owner']:.3f}  redis={cpu['redis']:.3f}  machine={row['machine_cpu']:.2f}/"
                              f"{os.cpu_count()}  received={100 * row['received_ratio']:.1f}%  "
                              f"late+lost={row['late_or_lost_percent']:.2f}% (late {row['late']}, lost {row['lost']})  "
                              f"frames the owner made late {row['owner_late_frames']}  "
                              f"{'ok' if row['ok'] else 'FAILS'}", flush=True)
                        if not row["ok"]:
                            break
                        time.sleep(2)
            finally:
                for cap in caps:  # once the workers have exited
                    cap.remove()


if __name__ == "__main__":
    main()
