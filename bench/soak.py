"""Churn soak: many listeners come and go, some vanish without a goodbye; resources must come back.

1. `--cycles` connect / listen / close cycles (real aiortc listeners, `--parallel` at a time), on a
   sine profile and on a device profile (PulseAudio null-sink monitor), alternately.
2. `--killed` listeners in one client process that is killed (SIGKILL): no WebSocket close
   frame, no DTLS goodbye; the kernel resets their TCP connections.
3. `--killed` listeners in one client process that is frozen (SIGSTOP), like phones that lost
   the network, then killed: their TCP connections stay open, nothing answers ICE consent
   checks. The server must find out by itself (consent expiry) and close them.
Afterwards: zero peers, no capture thread, thread and file-descriptor counts back to the
baseline taken after a warm-up, RSS growth reported (target: under 50 MB).

    .venv/bin/python bench/soak.py
    .venv/bin/python bench/soak.py --cycles 1000 --killed 200 --rounds 2
"""
import argparse
import asyncio
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from bench.listeners import prepare_database, proc_status  # noqa: E402
from tests.listener import Listener  # noqa: E402
from tests.rigs.daphne import DaphneServer
from tests.waiting import wait_for  # noqa: E402
from tests.rigs.pulseaudio import PulseAudioRig  # noqa: E402


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def snapshot(server):
    pid = server.process.pid
    process = {**proc_status(pid), "fds": fd_count(pid)}  # before the status request opens a socket
    status = server.status()
    return {
        **process,
        "peers": status["peers"],
        "capture_threads": len(status["capture_threads"]),
        "loop_lag": status["loop_lag_ms_last_minute"],
    }


async def one_cycle(url):
    listener = Listener(url)
    try:
        await listener.connect()
        await listener.listen_for(0.2)
    finally:
        await listener.close()


async def churn(server, slugs, cycles, parallel):
    gate = asyncio.Semaphore(parallel)
    failures = 0

    async def cycle(i):
        nonlocal failures
        async with gate:
            try:
                await asyncio.wait_for(one_cycle(server.ws_url(slugs[i % len(slugs)])), 30)
            except Exception:  # counted and reported
                failures += 1

    await asyncio.gather(*(cycle(i) for i in range(cycles)))
    return failures


def create_device_profile(db, **fields):
    """A profile "desk" on the PulseAudio rig's monitor (with `fields` on top), in the database `db`."""
    env = {**os.environ, "RTC_DB_PATH": str(db)}
    extra = "".join(f", {name}={value!r}" for name, value in fields.items())
    code = ("from streams.models import StreamProfile;"
            "StreamProfile.objects.create(name='Desk', slug='desk', source='device', "
            f"device_name='PulseAudio: virt.monitor'{extra})")
    subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=PROJECT, env=env, check=True,
                   capture_output=True)


def vanish_a_swarm(server, count, how):
    """`count` listeners in one client process that then vanishes: "killed" (SIGKILL) or
    "frozen" (SIGSTOP). Seconds until the server has closed them all."""
    swarm = subprocess.Popen(
        [sys.executable, str(PROJECT / "bench" / "swarm.py"), "--url", server.ws_url("default"), "--count", str(count)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    swarm.stdout.readline()  # all connected
    wait_for(lambda: server.status()["connected_peers"] >= count, 30, f"{count} connected peers")
    # Killed: the kernel closes its sockets, which the server notices at once. Frozen, like phones
    # that lost the network: the TCP connections stay open and nothing answers ICE consent checks.
    swarm.send_signal(signal.SIGKILL if how == "killed" else signal.SIGSTOP)
    vanished_at = time.monotonic()
    try:
        wait_for(lambda: server.status()["peers"] == 0, 90, f"the server to close the {how} listeners")
        return time.monotonic() - vanished_at
    finally:
        swarm.send_signal(signal.SIGKILL)
        swarm.wait()


def soak_round(server, args, baseline):
    started = time.monotonic()
    failures = asyncio.run(churn(server, ["default", "desk"], args.cycles, args.parallel))
    print(f"{args.cycles} connect/listen/close cycles in {time.monotonic() - started:.0f} s, {failures} failed")
    for how in ("killed", "frozen"):
        seconds = vanish_a_swarm(server, args.killed, how)
        print(f"{args.killed} listeners {how} without a goodbye: all closed by the server "
              f"{seconds:.1f} s after they vanished (target: within 35 s)", flush=True)
    wait_for(lambda: (s := snapshot(server))["capture_threads"] == 0 and s["peers"] == 0, 15, "idle again")
    wait_for(lambda: snapshot(server)["threads"] <= baseline["threads"]
             and snapshot(server)["fds"] <= baseline["fds"], 30, "threads and fds back to baseline")
    wait_for(rss_settled(server), 30, "RSS to stop falling (the server frees memory once idle)")
    return snapshot(server)


def rss_settled(server, quiet_seconds=3):
    """A wait_for condition: true once RSS has not fallen by 1 MB or more for `quiet_seconds`."""
    state = {"rss": proc_status(server.process.pid)["rss_mb"], "since": time.monotonic()}

    def settled():
        rss = proc_status(server.process.pid)["rss_mb"]
        if rss < state["rss"] - 1:
            state.update(rss=rss, since=time.monotonic())
        return time.monotonic() - state["since"] >= quiet_seconds

    return settled


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=1000)
    parser.add_argument("--parallel", type=int, default=10)
    parser.add_argument("--killed", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2,
                        help="repeat cycles + vanished listeners; a leak grows every round, a high-water mark once")
    args = parser.parse_args()
    print("command:", shlex.join([".venv/bin/python", "bench/soak.py", *sys.argv[1:]]))
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    from streams.webrtc.ice import restrict_host_addresses

    restrict_host_addresses(["127.0.0.1"])
    with tempfile.TemporaryDirectory() as workdir, PulseAudioRig() as rig:
        db = prepare_database(workdir)
        create_device_profile(db)
        env = {**rig.env, "RTC_MAX_LISTENERS_PER_ADDRESS": "0", "RTC_MAX_SOCKETS_PER_ADDRESS": "0", "RTC_CAPTURE_LINGER_SECONDS": "1",
               "RTC_LOG_LEVEL": "WARNING"}
        server = DaphneServer(db, Path(workdir) / "app.log", extra_env=env).start()
        player = rig.play_tone(1000, seconds=3600)
        try:
            asyncio.run(churn(server, ["default", "desk"], 20, 5))  # warm-up: imports, first hubs
            wait_for(lambda: (s := snapshot(server))["peers"] == 0 and s["capture_threads"] == 0, 15, "idle")
            baseline = snapshot(server)
            print(f"baseline after warm-up: {baseline}")
            for round_number in range(1, args.rounds + 1):
                after = soak_round(server, args, baseline)
                print(f"after round {round_number}: {after}")
                print(f"round {round_number}: RSS growth since the baseline {after['rss_mb'] - baseline['rss_mb']:.1f} MB "
                      f"(target < 50 MB); threads {baseline['threads']} -> {after['threads']}; "
                      f"fds {baseline['fds']} -> {after['fds']}; peers {after['peers']}; "
                      f"capture threads {after['capture_threads']}", flush=True)
        finally:
            player.terminate()
            server.stop()


if __name__ == "__main__":
    main()
