"""Fault soak (issue #17, item 8): listeners on a device profile in multi-process mode for hours,
while faults come one after another. After each the stream must come back by itself, and at the
end nothing may have leaked.

What runs, all on 127.0.0.1 and all of its own: a PulseAudio rig (tests/rigs/pulseaudio.py) with
a 1 kHz tone looping into its null sink "virt"; a device profile "desk" on the sink's monitor
(Opus 96 kb/s, DTX off, so that the silence sent while the device is gone is still packets); a
redis-server (tests/rigs/private_redis.py); one media owner (`manage.py media_owner`) and
`--workers` daphne workers (`manage.py serve` with REDIS_URL), each worker on a port of its own
(as bench/workers.py: the listeners stay spread evenly, so every worker kill takes the same
share); `--listeners` real aiortc listeners in client processes of this file (`--client`),
spread evenly over the workers.

The faults, in this order and again, one every `--fault-every-minutes`:
  profile-change  the profile's bitrate 96 <-> 64 kb/s, saved in admin over HTTP (same codec:
                  the listeners move to the new stream without reconnecting)
  device-unplug   the null sink unloaded (the device gone) for 3 s, then loaded again
  redis-restart   redis-server stopped and started again: every key, group and subscription gone
  owner-kill      the media owner SIGKILLed and started again at once, as supervisord does (the
                  new one takes the lock when the dead one's lapses, within 4 s)
  worker-kill     the last worker SIGKILLed and started again at once on its port, as supervisord
                  does. Its listeners are NOT re-added by the bench: each reconnects by itself
                  the way the listener page does (static/streams/signaling.js: the same URL,
                  backoff from 0.5 s doubling to 10 s with +-20 % jitter, at once on close
                  4426). A listener whose connection ends for good before the final stop is
                  counted as lost.
A fault's window runs from just before it is injected until it is undone (the device back, the
process started again) and the last listener receives steadily again (5 s without a gap over
200 ms); every listener must get there within 120 s.

Measured: each listener's gaps over 200 ms between RTP packets (across its reconnections), each
attributed to the fault whose window it overlaps, or to none; the client process's own event-loop
stalls, to tell its gaps from the server's; the packets' pub/sub channel itself (a tap at the
workers' priority), to tell a gap begun upstream of the workers (owner, Redis); once a minute, RSS, threads and open files of the
owner, every worker and redis-server (/proc), each worker's /status.json (peers, hub states,
supervised restarts) and /metrics (the owner's restarts, owner_up); the processes' logs
(supervised restarts, tasks given up, tasks whose exception was never retrieved, tracebacks); and
whether every listener gets "stream stopped" when the profile is switched off at the end.

Targets (issue #17): no dead task; every listener reached by the final "stream stopped"; RSS flat
after the first 10 minutes (here: every owner and worker process that ran 10 minutes, measured
from its own 10th minute and the run's, grows less than 5 MB an hour by least squares over at
least 5 minutes); threads and open files back at their idle baseline once the listeners are
gone (the baseline is taken after a warm-up that does what the end does: as many listeners,
stopped by the operator; the figures of the fresh processes are printed too); no gap over
200 ms outside the fault windows, leaving out those the listener's own client process made
(its event loop stalled for enough of the gap that without the stall there would be none).

    .venv/bin/python bench/faultsoak.py                                   # 2 hours, 100 listeners, 2 workers
    .venv/bin/python bench/faultsoak.py --hours 0.1 --listeners 10        # a 6-minute check
    # one owner for nearly the whole run (its RSS judged over 100 minutes): the owner kill last
    .venv/bin/python bench/faultsoak.py --faults $(printf 'profile-change,device-unplug,redis-restart,worker-kill,%.0s' 1 2 3 4 5)profile-change,device-unplug,redis-restart,owner-kill
"""
import argparse
import asyncio
import bisect
import contextlib
import json
import math
import os
import platform
import random
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import wave
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

GAP_SECONDS = 0.2  # the bar for a gap between packets
STEADY_SECONDS = 5.0  # receiving this long without a gap: recovered
RECOVERY_TIMEOUT_SECONDS = 120
UNPLUG_SECONDS = 3
SETTLE_MINUTES = 10  # RSS is judged after this, in the run and in the process's own life
RSS_FLAT_MB_PER_HOUR = 5.0
RSS_MIN_SPAN_MINUTES = 5
GAPS_KEPT = 20_000  # per listener (and as many statuses and closes): a report stays a few MB
CLIENT_STALL_SECONDS = 0.03  # the client's loop woke this late: it, not the server, may have made a gap
PROFILE_SLUG = "desk"
BITRATES = (96_000, 64_000)
TONE_HZ = 1000
FAULT_KINDS = ("profile-change", "device-unplug", "redis-restart", "owner-kill", "worker-kill")
ADMIN_PASSWORD = "bench-only-password"  # what bench.listeners.prepare_database gives bootstrap

# Close codes of the signaling socket (streams/consumers.py), as the page reads them.
CLOSE_FORBIDDEN, CLOSE_PROFILE_GONE, CLOSE_RENEGOTIATE = 4403, 4404, 4426


# --- the client side: listeners that behave as the page does ----------------------------------------


def retry_delay_seconds(attempt):
    """The page's backoff (signaling.js retryDelaySeconds): 0.5 s doubling to 10 s, +-20 % jitter."""
    base = min(10.0, 0.5 * 2 ** max(0, attempt - 1))
    return min(10.0, max(0.5, base * (0.8 + 0.4 * random.random())))


class SoakListener:
    """One listener for the whole run, over as many connections as it takes. It reconnects as the
    listener page does and counts every gap over GAP_SECONDS between packets, across reconnections."""

    def __init__(self, url):
        self.url = url
        self.last_packet = None  # time.monotonic(): one clock for every process of the machine
        self.receiving_since = None  # the first packet after the latest gap
        self.packets = 0
        self.gaps = []  # (start, end); the first GAPS_KEPT, all counted in gap_count
        self.gap_count = 0
        self.statuses = []  # (time, state): "status" messages and "renegotiate"
        self.closes = []  # (time, close code, the last error message's code)
        self.connections = 0  # answers received
        self.open = False  # a socket answered and not closed
        self.ended = None  # (time, "stopped" | "not-found" | "forbidden")
        self._session_packets = 0

    async def on_packet(self, packet, arrival_time_ms):
        now = time.monotonic()
        if self.last_packet is not None and now - self.last_packet > GAP_SECONDS:
            self.gap_count += 1
            if len(self.gaps) < GAPS_KEPT:
                self.gaps.append((self.last_packet, now))
            self.receiving_since = now
        elif self.receiving_since is None:
            self.receiving_since = now
        self.last_packet = now
        self.packets += 1
        self._session_packets += 1
        return False  # counted only: no jitter buffer, no decoding

    async def run(self, gate):
        attempt = 0
        while True:
            code, error, connected_for = await self._session(gate)
            gate = None  # only first connections are paced; reconnections come when they come
            now = time.monotonic()
            self.closes.append((now, code, error))
            if code == CLOSE_PROFILE_GONE:
                self.ended = (now, "stopped" if error == "stream-stopped" else "not-found")
                return
            if code == CLOSE_FORBIDDEN:
                self.ended = (now, "forbidden")
                return
            if code == CLOSE_RENEGOTIATE:
                attempt = 0
                continue
            attempt = 1 if connected_for >= 10 else attempt + 1  # the page's stable timer resets the backoff
            await asyncio.sleep(retry_delay_seconds(attempt))

    async def _session(self, gate):
        """One signaling socket and its peer, until either ends: (close code, error code, seconds connected)."""
        from aiortc import RTCConfiguration, RTCPeerConnection

        from streams.webrtc import rtcinternals
        from tests.listener import ask_for_stereo, connect_like_a_browser

        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self._session_packets = 0
        ws, state = None, {"error": None, "connected_at": None}
        try:
            async with gate or contextlib.nullcontext():
                ws = await asyncio.wait_for(connect_like_a_browser(self.url), 10)
                receiver = pc.addTransceiver("audio", direction="recvonly").receiver
                rtcinternals.on_received_rtp(receiver, self.on_packet)
                await pc.setLocalDescription(await pc.createOffer())
                await ws.send(json.dumps({"type": "offer", "sdp": ask_for_stereo(pc.localDescription.sdp)}))
            reading = asyncio.ensure_future(self._read(ws, pc, state))
            watching = asyncio.ensure_future(self._watch(pc, state))
            done, _ = await asyncio.wait([reading, watching], return_when=asyncio.FIRST_COMPLETED)
            for task in (reading, watching):
                task.cancel()
            await asyncio.gather(reading, watching, return_exceptions=True)
            if reading not in done:  # the peer failed: the page gives up on this socket and starts again
                await ws.close()
            code = ws.close_code if ws.close_code is not None else 1006
        except Exception:  # unreachable (worker restarting), refused, timed out: the page retries
            code = 1006
        finally:
            self.open = False
            await pc.close()
            if ws is not None:
                with contextlib.suppress(Exception):
                    await ws.close()
        connected_at = state["connected_at"]
        return code, state["error"], 0.0 if connected_at is None else time.monotonic() - connected_at

    async def _read(self, ws, pc, state):
        import websockets
        from aiortc import RTCSessionDescription

        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in ws:
                message = json.loads(raw)
                kind = message.get("type")
                if kind == "answer":
                    await pc.setRemoteDescription(RTCSessionDescription(sdp=message["sdp"], type="answer"))
                    self.connections += 1
                    self.open = True
                elif kind == "error":
                    state["error"] = message.get("code")
                elif kind == "status":
                    self.statuses.append((time.monotonic(), message.get("state")))
                elif kind == "renegotiate":
                    self.statuses.append((time.monotonic(), "renegotiate"))

    async def _watch(self, pc, state):
        """Returns when the page would give up on this peer: failed, disconnected for 3 s, or no
        packet at all 30 s after the offer (the server's own ICE timeout comes sooner)."""
        began, disconnected_since = time.monotonic(), None
        while True:
            await asyncio.sleep(0.25)
            now, connection = time.monotonic(), pc.connectionState
            if connection == "connected" and state["connected_at"] is None:
                state["connected_at"] = now
            if connection in ("failed", "closed"):
                return
            if connection == "disconnected":
                disconnected_since = disconnected_since or now
                if now - disconnected_since > 3:
                    return
            else:
                disconnected_since = None
            if self._session_packets == 0 and now - began > 30:
                return

    def state(self, now):
        fresh = self.last_packet is not None and now - self.last_packet <= GAP_SECONDS
        return [self.receiving_since if fresh else None, self.open, self.ended is not None, self.connections]

    def report(self):
        return {"packets": self.packets, "gaps": self.gaps[:GAPS_KEPT], "gap_count": self.gap_count,
                "statuses": self.statuses[:GAPS_KEPT], "closes": self.closes[:GAPS_KEPT],
                "connections": self.connections, "ended": self.ended}


async def watch_own_loop(stalls):
    """This process's event-loop stalls over CLIENT_STALL_SECONDS: (due, woke) pairs."""
    while True:
        due = time.monotonic() + 0.02
        await asyncio.sleep(0.02)
        woke = time.monotonic()
        if woke - due > CLIENT_STALL_SECONDS and len(stalls) < 200_000:
            stalls.append((due, woke))


async def client_main(url, count):
    """One client process. Parent -> client, one line each: "state", "report", "bye"; the client
    answers "state" and "report" with one JSON line."""
    from streams.webrtc.ice import restrict_host_addresses

    restrict_host_addresses(["127.0.0.1"])
    loop = asyncio.get_running_loop()
    stalls = []
    watcher = loop.create_task(watch_own_loop(stalls))
    gate = asyncio.Semaphore(5)
    listeners = [SoakListener(url) for _ in range(count)]
    tasks = [loop.create_task(listener.run(gate)) for listener in listeners]
    print(json.dumps({"started": count}), flush=True)
    while True:
        word = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
        if word == "state":
            now = time.monotonic()
            print(json.dumps({"now": now, "listeners": [listener.state(now) for listener in listeners]}), flush=True)
        elif word == "report":
            print(json.dumps({"stalls": stalls, "listeners": [listener.report() for listener in listeners]}), flush=True)
        else:  # "bye", or the parent is gone
            break
    for task in (*tasks, watcher):
        task.cancel()
    await asyncio.gather(*tasks, watcher, return_exceptions=True)


# --- the parent side ---------------------------------------------------------------------------------


class Clients:
    """The client processes: `count` listeners, at least one process per worker, spread evenly."""

    def __init__(self, urls, count, size, logdir):
        processes = max(len(urls), math.ceil(count / size))
        shares = [count // processes + (1 if i < count % processes else 0) for i in range(processes)]
        self.urls = [urls[i % len(urls)] for i in range(processes)]
        self.processes = []
        for index, share in enumerate(shares):
            log = open(Path(logdir) / f"client-{index}.log", "w")
            self.processes.append(subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--client", "--url", self.urls[index],
                 "--count", str(share)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, cwd=PROJECT))
            log.close()
        for process in self.processes:
            json.loads(process.stdout.readline())

    def _ask(self, word):
        for process in self.processes:
            process.stdin.write(word + "\n")
            process.stdin.flush()
        return [json.loads(process.stdout.readline()) for process in self.processes]

    def state(self):
        """(the clients' time, [receiving_since or None, open, ended, connections] per listener)."""
        answers = self._ask("state")
        return min(a["now"] for a in answers), [entry for a in answers for entry in a["listeners"]]

    def report(self):
        """Per listener its report with "stalls" (its process's loop stalls) and "worker" (index)."""
        listeners = []
        for index, answer in enumerate(self._ask("report")):
            for listener in answer["listeners"]:
                listeners.append({**listener, "stalls": answer["stalls"], "worker": index % len(set(self.urls))})
        return listeners

    def close(self):
        for process in self.processes:
            with contextlib.suppress(OSError):
                process.stdin.write("bye\n")
                process.stdin.flush()
        for process in self.processes:
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_steady(clients, since, timeout):
    """Until every listener not yet ended has received without a gap for STEADY_SECONDS:
    (True, when the last of them resumed, at least `since`), or (False, now) after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now, listeners = clients.state()
        resumed = [entry[0] for entry in listeners if not entry[2]]
        if resumed and all(r is not None and r <= now - STEADY_SECONDS for r in resumed):
            return True, max([since, *resumed])
        time.sleep(0.5)
    return False, time.monotonic()


class Cluster:
    """Redis, the media owner and the workers, with the faults that can be done to them."""

    def __init__(self, workdir, db, rig):
        from tests.rigs.daphne import DaphneServer, free_port
        from tests.rigs.owner import MediaOwnerProcess
        from tests.rigs.private_redis import PrivateRedis

        self.workdir = Path(workdir)
        self.redis = PrivateRedis(self.workdir)
        self.db = db
        self.env = {"RTC_LOG_LEVEL": "INFO", "RTC_MAX_LISTENERS_PER_ADDRESS": "0", "RTC_MAX_SOCKETS_PER_ADDRESS": "0",
                    "RTC_CAPTURE_LINGER_SECONDS": "1", "RTC_ICE_ADDRESSES": "127.0.0.1", **rig.env}
        self._owner_class, self._worker_class, self._free_port = MediaOwnerProcess, DaphneServer, free_port
        self.owner = None
        self.workers = []

    def start(self, workers):
        self.redis.start()
        url = self.redis.url(0)
        self.owner = self._owner_class(self.db, self.workdir / "owner.log", url, extra_env=self.env).start()
        for index in range(workers):
            # SUPERVISOR_PROCESS_NAME: the stable label a worker has under ./run.sh (streams/ops/livestats.py)
            env = {**self.env, "REDIS_URL": url, "SUPERVISOR_PROCESS_NAME": f"worker-{index}"}
            self.workers.append(self._worker_class(self.db, self.workdir / f"worker-{index}.log",
                                                   port=self._free_port(), extra_env=env).start())
        return self

    def pids(self):
        """{process label: pid} of what runs now."""
        found = {"owner": self.owner.process.pid}
        found.update({f"worker-{i}": worker.process.pid for i, worker in enumerate(self.workers)})
        if self.redis.process is not None:
            found["redis"] = self.redis.process.pid
        return found

    def logs(self):
        return sorted(self.workdir.glob("owner.log*")) + sorted(self.workdir.glob("worker-*.log*"))

    def kill_owner(self):
        self.owner.kill()
        self.owner.start()  # waits until it holds the lock

    def kill_worker(self, index):
        worker = self.workers[index]
        worker.kill()
        worker.start()  # the same port: its listeners reconnect to the URL they had

    def stop(self):
        for process in (*self.workers, self.owner):
            if process is not None:
                with contextlib.suppress(Exception):
                    process.stop()
        self.redis.stop()


class ToneLoop:
    """A 1 kHz tone into the null sink, again and again; while the sink is gone each try fails and
    the next comes 0.5 s later, so the tone is back soon after the sink is."""

    def __init__(self, rig, directory):
        path = Path(directory) / "tone.wav"
        rate, seconds = 48_000, 60
        import numpy as np

        t = np.arange(rate * seconds) / rate
        samples = (0.5 * 32767 * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.int16)
        with wave.open(str(path), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(rate)
            wav.writeframes(samples.tobytes())
        loop = f"while :; do paplay --device=virt {shlex.quote(str(path))} || sleep 0.5; done"
        self.process = subprocess.Popen(["sh", "-c", loop], env=rig.child_env(), start_new_session=True,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait()


class RedisTap(threading.Thread):
    """Every packet the owner publishes, as a worker gets it (pub/sub `rtc:audio:*`): its gaps over
    GAP_SECONDS tell a listener's gap that began upstream of the workers (the owner or Redis) from
    one that began in a worker or on the way to the listener. It runs at the workers' priority."""

    def __init__(self, redis_url):
        super().__init__(daemon=True)
        self.redis_url = redis_url
        self.gaps = []
        self._done = threading.Event()

    def run(self):
        import redis

        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), -11)  # as the servers (streams/audio/priority.py)
        last = None
        while not self._done.is_set():
            try:
                with redis.Redis.from_url(self.redis_url, socket_timeout=2) as client, client.pubsub() as pubsub:
                    pubsub.psubscribe("rtc:audio:*")
                    while not self._done.is_set():
                        message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.05)
                        now = time.monotonic()
                        if message is not None:
                            if last is not None and now - last > GAP_SECONDS:
                                self.gaps.append((last, now))
                            last = now
            except (redis.RedisError, OSError):  # Redis restarting: a fault's window covers it
                time.sleep(0.2)

    def stop(self):
        self._done.set()
        self.join(10)


# --- measuring the processes -------------------------------------------------------------------------


def process_figures(pid, redis_port=None):
    """RSS (MB), threads, open files and age (s) of a process (with `redis_port`, also what its
    open files are), or None if it is gone."""
    from bench.listeners import proc_status
    from tests.rigs.open_files import fd_kinds

    try:
        figures = proc_status(pid)
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        if redis_port:
            figures["fd_kinds"] = fd_kinds(pid, redis_port)
        start_ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, KeyError, ValueError, IndexError):
        return None
    return {**figures, "fds": fds, "age_s": uptime - start_ticks / os.sysconf("SC_CLK_TCK")}


def worker_status(worker):
    try:
        return worker.status()
    except Exception:  # restarting: no figures this minute
        return None


def metrics_by_process(workers):
    """From the first worker that answers /metrics: {process: {"restarts": n}} and owner_up."""
    from prometheus_client.parser import text_string_to_metric_families

    for worker in workers:
        try:
            with urllib.request.urlopen(worker.url("/metrics"), timeout=5) as response:
                text = response.read().decode()
        except Exception:
            continue
        found, owner_up = {}, None
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "rtccaster_restarts_total":
                    entry = found.setdefault(sample.labels["process"], {"restarts": 0})
                    entry["restarts"] += int(sample.value)
                elif sample.name == "rtccaster_owner_up":
                    owner_up = int(sample.value)
        return found, owner_up
    return {}, None


class Sampler(threading.Thread):
    """Once a minute from `started`: every process's figures, printed as one line and kept."""

    def __init__(self, cluster, started):
        super().__init__(daemon=True)
        self.cluster, self.started = cluster, started
        self.rows = []
        self.hub_states = set()  # every hub state seen in a worker's /status.json
        self._done = threading.Event()

    def run(self):
        minute = 1
        while not self._done.wait(max(0.0, self.started + 60 * minute - time.monotonic())):
            self.sample(minute)
            minute += 1

    def stop(self):
        self._done.set()
        self.join(30)

    def sample(self, minute):
        row = {"minute": minute, "processes": {}}
        for name, pid in self.cluster.pids().items():
            row["processes"][name] = {"pid": pid, **(process_figures(pid) or {})}
        parts = []
        for index, worker in enumerate(self.cluster.workers):
            status = worker_status(worker)
            name = f"worker-{index}"
            if status is None:
                parts.append(f"{name}: no status")
                continue
            hubs = status["hubs"]
            self.hub_states.update(h["state"] for h in hubs)
            row["processes"][name].update(peers=status["peers"], restarts=sum(h["restarts"] for h in hubs))
            lag = status["loop_lag_ms_last_minute"]
            parts.append(f"{name}: peers {status['peers']} hubs {[h['state'] for h in hubs]} "
                         f"restarts {sum(h['restarts'] for h in hubs)} lag p99 {lag['p99']} ms")
        metrics, owner_up = metrics_by_process(self.cluster.workers)
        row["owner_up"], row["owner_restarts"] = owner_up, metrics.get("owner", {}).get("restarts")
        self.rows.append(row)
        figures = "  ".join(f"{name} {p.get('rss_mb', 0):.1f} MB {p.get('threads', '?')} thr {p.get('fds', '?')} fds"
                            for name, p in row["processes"].items())
        print(f"  minute {minute:>3}: {figures}  load {os.getloadavg()[0]:.2f}\n              {'; '.join(parts)}; "
              f"owner up {owner_up}, owner restarts {row['owner_restarts']}", flush=True)


def rss_segments(rows):
    """Per process instance (label and pid), its RSS samples from the run's and its own
    SETTLE_MINUTES on: (label, pid, [(minute, rss)])."""
    segments = {}
    for row in rows:
        for name, p in row["processes"].items():
            if name == "redis" or "rss_mb" not in p:
                continue
            if row["minute"] >= SETTLE_MINUTES and p["age_s"] >= 60 * SETTLE_MINUTES:
                segments.setdefault((name, p["pid"]), []).append((row["minute"], p["rss_mb"]))
    return [(name, pid, samples) for (name, pid), samples in segments.items()]


def slope_mb_per_hour(samples):
    import numpy as np

    minutes, rss = zip(*samples)
    return float(np.polyfit(minutes, rss, 1)[0]) * 60


def figures_line(figures):
    return "; ".join(f"{name} {f['threads']} threads {f['fds']} fds ({f['fd_kinds'].get('redis', 0)} to Redis) "
                     f"{f['rss_mb']:.1f} MB" for name, f in figures.items())


def idle_figures(cluster):
    return {name: process_figures(pid, cluster.redis.port) for name, pid in cluster.pids().items() if name != "redis"}


def wait_idle(cluster, baseline, timeout=45):
    """After the listeners: until no worker holds a peer or a hub and threads and open files of every
    process are at or under the baseline, or `timeout` (then the counts are what they are)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        statuses = [worker_status(worker) for worker in cluster.workers]
        idle = all(s is not None and s["peers"] == 0 and not s["hubs"] for s in statuses)
        now = idle_figures(cluster)
        back = all(now[name] and now[name]["threads"] <= baseline[name]["threads"]
                   and now[name]["fds"] <= baseline[name]["fds"] for name in baseline)
        if idle and back:
            break
        time.sleep(1)
    time.sleep(3)  # the owner gives back memory 2 s into being idle (streams/relay/owner.py)
    return idle_figures(cluster)


LOG_PATTERNS = {
    "supervised restarts": re.compile(r"failed \(.*\); restart \d+ in"),
    "tasks given up": re.compile(r"giving up"),
    "task exceptions never retrieved": re.compile(r"Task exception was never retrieved|Exception in callback"),
    "tracebacks": re.compile(r"^Traceback"),
    "ERROR lines": re.compile(r"^\S+ \S+ ERROR "),
}


OWNER_MINUTE = re.compile(r"capture to send p50 [\d.]+ ms, p99 ([\d.]+) ms, max ([\d.]+) ms; since start: \d+ frames, "
                          r"(\d+) dropped")


def read_logs(paths):
    """{log name: {pattern name: count}}, the distinct ERROR messages (without time stamps), and the
    owner's minutes: (capture-to-send p99 ms, max ms, whether frames were dropped since the last)."""
    counts, errors, minutes = {}, {}, []
    for path in paths:
        found = counts.setdefault(path.name.split(".log")[0], dict.fromkeys(LOG_PATTERNS, 0))
        dropped = 0
        for line in path.read_text(errors="replace").splitlines():
            if path.name.startswith("owner") and (minute := OWNER_MINUTE.search(line)):
                total = int(minute[3])
                minutes.append((float(minute[1]), float(minute[2]), (total - dropped if total >= dropped else total) > 0))
                dropped = total
            for name, pattern in LOG_PATTERNS.items():
                if pattern.search(line):
                    found[name] += 1
            if LOG_PATTERNS["ERROR lines"].search(line):
                message = line.split(" ERROR ", 1)[1][:160]
                errors[message] = errors.get(message, 0) + 1
    return counts, errors, minutes


# --- faults ------------------------------------------------------------------------------------------


class Faults:
    """The faults of the run, done one at a time and each waited out; `done` lists them."""

    def __init__(self, cluster, rig, admin, profile_pk):
        self.cluster, self.rig, self.admin = cluster, rig, admin
        self.profile_path = f"/admin/streams/streamprofile/{profile_pk}/change/"
        self.bitrate = BITRATES[0]
        self.done = []  # one dict per fault

    def inject(self, kind):
        """Do the fault `kind` and undo it; returns a few words on how it went."""
        began = time.monotonic()
        if kind == "profile-change":
            self.bitrate = BITRATES[1] if self.bitrate == BITRATES[0] else BITRATES[0]
            self.admin.save_form(self.profile_path, audio_bitrate=str(self.bitrate))
            detail = f"bitrate now {self.bitrate // 1000} kb/s"
        elif kind == "device-unplug":
            self.rig.unload_null_sink("virt")
            time.sleep(UNPLUG_SECONDS)  # the fault is the device staying away this long
            self.rig.load_null_sink("virt")
            detail = f"sink away {UNPLUG_SECONDS} s"
        elif kind == "redis-restart":
            self.cluster.redis.restart()
            detail = "redis restarted"
        elif kind == "owner-kill":
            self.cluster.kill_owner()
            detail = f"new owner holds the lock after {time.monotonic() - began:.1f} s"
        elif kind == "worker-kill":
            index = len(self.cluster.workers) - 1
            self.cluster.kill_worker(index)
            detail = f"worker-{index} accepting again after {time.monotonic() - began:.1f} s"
        else:
            raise ValueError(kind)
        return detail

    def run(self, kind, clients, minute):
        _, before = clients.state()
        started = time.monotonic()
        detail = self.inject(kind)
        undone = time.monotonic()
        recovered, resumed = wait_steady(clients, started, RECOVERY_TIMEOUT_SECONDS)
        _, after = clients.state()
        interrupted = sum(1 for b, a in zip(before, after) if a[0] is None or a[0] > started)
        reconnected = sum(1 for b, a in zip(before, after) if a[3] > b[3])
        # Its window: until it is undone (the device back, say) and every listener receives again.
        fault = {"index": len(self.done) + 1, "kind": kind, "minute": minute, "started": started,
                 "resumed": resumed, "ended": max(resumed, undone), "recovered": recovered, "detail": detail}
        self.done.append(fault)
        print(f"fault {fault['index']:>2} at minute {minute:5.1f}: {kind:<14} ({detail}); "
              + (f"all listeners receiving again {resumed - started:.1f} s after it began"
                 if recovered else f"NOT all listeners receiving {RECOVERY_TIMEOUT_SECONDS} s after it began")
              + f"; interrupted {interrupted}/{len(after)}, new connections {reconnected}", flush=True)
        return fault


def default_fault_every(hours, kinds):
    """Every 5 minutes, or often enough that each kind comes once in a shorter run (not under 45 s)."""
    usable = hours * 60 - 1.5
    return max(0.75, min(5.0, usable / len(kinds)))


# --- analysis ----------------------------------------------------------------------------------------


def window_of(gap, faults):
    start, end = gap
    for fault in faults:
        if end > fault["started"] - 0.2 and start < fault["ended"] + 0.5:
            return fault
    return None


def during_own_stall(gap, stalls, woke):
    """Whether the listener's process stalled for enough of the gap that without it there would be none.
    `stalls` in time order (one ticker: they do not overlap), `woke` their ends."""
    start, end = gap
    overlap = 0.0
    for index in range(bisect.bisect_right(woke, start), len(stalls)):
        s_start, s_end = stalls[index]
        if s_start >= end:
            break
        overlap += min(end, s_end) - max(start, s_start)
    return (end - start) - overlap <= GAP_SECONDS


def gap_events(gaps):
    """Gaps of several listeners that overlap in time are one event: [(start, end, listeners)]."""
    events = []
    for number, (start, end) in sorted(gaps, key=lambda item: item[1][0]):
        if events and start < events[-1][1]:
            events[-1][1] = max(events[-1][1], end)
            events[-1][2].add(number)
        else:
            events.append([start, end, {number}])
    return events


def analyse_gaps(listeners, faults, listening_from, stop_at):
    by_fault = {fault["index"]: [] for fault in faults}
    outside, own_stall, before_start = [], [], 0
    for number, listener in enumerate(listeners):
        woke = [s_end for _, s_end in listener["stalls"]]
        for gap in listener["gaps"]:
            if gap[1] <= listening_from:
                before_start += 1
                continue
            if gap[0] >= stop_at:
                continue
            fault = window_of(gap, faults)
            if fault is not None:
                by_fault[fault["index"]].append((number, gap[1] - gap[0]))
            elif during_own_stall(gap, listener["stalls"], woke):
                own_stall.append((number, gap))
            else:
                outside.append((number, gap))
    return by_fault, outside, own_stall, before_start


def statuses_in(listeners, fault):
    seen = {}
    for listener in listeners:
        for state in {s for t, s in listener["statuses"] if fault["started"] - 0.2 <= t <= fault["ended"] + 0.5}:
            seen[state] = seen.get(state, 0) + 1
    return seen


def per_worker(numbers, listeners):
    """"w0 3/5, w1 0/5": how many of the listeners `numbers` are on each worker, of how many there."""
    workers = sorted({listener["worker"] for listener in listeners})
    return ", ".join(f"w{w} {sum(1 for n in numbers if listeners[n]['worker'] == w)}/"
                     f"{sum(1 for listener in listeners if listener['worker'] == w)}" for w in workers)


def verdict(ok):
    return "PASS" if ok else "FAIL"


def print_summary(args, faults, listeners, sampler, tap, baseline, final, logs, listening_from, stop_at):
    count = len(listeners)
    by_fault, outside, own_stall, before_start = analyse_gaps(listeners, faults, listening_from, stop_at)
    print("\nfaults:")
    print("   #  minute  kind            recovered  listeners with a gap > 200 ms (per worker)  longest gap  "
          "sockets closed  statuses the listeners got (listeners)")
    for fault in faults:
        gaps = by_fault[fault["index"]]
        longest = max((seconds for _, seconds in gaps), default=0.0)
        hit = {n for n, _ in gaps}
        closes = sum(1 for listener in listeners for t, code, error in listener["closes"]
                     if fault["started"] - 0.2 <= t <= fault["ended"] + 0.5)
        recovered = f"{fault['resumed'] - fault['started']:6.1f} s" if fault["recovered"] else "    NO   "
        print(f"  {fault['index']:>2}  {fault['minute']:6.1f}  {fault['kind']:<14}  {recovered}  "
              f"{len(hit):>5}/{count:<5} ({per_worker(hit, listeners)})   {longest * 1000:7.0f} ms   "
              f"{closes:>6}           {statuses_in(listeners, fault)}")
    print("  by kind (recovery: from the fault's start until every listener receives again):")
    for kind in dict.fromkeys(f["kind"] for f in faults):
        these = [f for f in faults if f["kind"] == kind]
        if not these:
            continue
        seconds = sorted(f["resumed"] - f["started"] for f in these if f["recovered"])
        longest = max((s for f in these for _, s in by_fault[f["index"]]), default=0.0)
        print(f"    {kind:<14} x{len(these)}: recovered {len(seconds)}/{len(these)}, in "
              f"{'/'.join(f'{s:.1f}' for s in seconds) or '-'} s; longest gap {longest * 1000:.0f} ms")

    unlisted = sum(listener["gap_count"] - len(listener["gaps"]) for listener in listeners)
    if unlisted:
        print(f"\n{unlisted} gaps over 200 ms beyond the first {GAPS_KEPT} of a listener were counted, not placed: "
              f"not in the figures below")
    print(f"\ngaps over 200 ms outside the fault windows: {len(outside)} "
          f"(in {len({n for n, _ in outside})} of {count} listeners)"
          + (f", longest {max(g[1] - g[0] for _, g in outside) * 1000:.0f} ms" if outside else ""))
    events = gap_events(outside)
    if events:
        sizes = [len(e[2]) for e in events]
        print(f"  as events (gaps overlapping in time): {len(events)}; of all {count} listeners at once: "
              f"{sizes.count(count)}, of several: {sum(1 for n in sizes if 1 < n < count)}, of one: {sizes.count(1)}")
        upstream = [e for e in events if any(t_end > e[0] and t_start < e[1] for t_start, t_end in tap.gaps)]
        print(f"  of them begun upstream of the workers (the owner or Redis: the tap on the packets' channel "
              f"had a gap over 200 ms at the same time): {len(upstream)}")
        print("  the longest events:")
        for start, end, hit in sorted(events, key=lambda e: e[0] - e[1])[:8]:
            where = "upstream" if any(t_end > start and t_start < end for t_start, t_end in tap.gaps) else ""
            print(f"    minute {(start - listening_from) / 60:6.2f}: {(end - start) * 1000:5.0f} ms, "
                  f"{len(hit)} listeners ({per_worker(hit, listeners)}) {where}")
    print(f"  besides: {len(own_stall)} while the listener's own client process stalled (its event loop, not the "
          f"server: not counted); {before_start} before all listeners were first receiving (not counted)")
    stalls = {tuple(s) for listener in listeners for s in listener["stalls"]}
    print(f"  client processes' loop stalls over {CLIENT_STALL_SECONDS * 1000:.0f} ms: {len(stalls)}"
          + (f", longest {max(e - s for s, e in stalls) * 1000:.0f} ms" if stalls else ""))

    ended = [listener["ended"] for listener in listeners]
    stopped = [e for e in ended if e is not None and e[1] == "stopped" and e[0] >= stop_at]
    lost = [e for e in ended if e is None or e[0] < stop_at or e[1] != "stopped"]
    print(f"\nfinal stop (profile disabled in admin): {len(stopped)}/{count} listeners got 'stream stopped' "
          + (f"within {max(e[0] for e in stopped) - stop_at:.1f} s" if stopped else "")
          + f"; lost before it or ended otherwise: {len(lost)}")
    print(f"connections per listener over the run: min {min(l['connections'] for l in listeners)}, "
          f"max {max(l['connections'] for l in listeners)}; packets per listener: "
          f"min {min(l['packets'] for l in listeners)}, max {max(l['packets'] for l in listeners)}")

    print("\nprocesses, idle baseline (after the warm-up) -> idle after the run (threads, open files, RSS):")
    for name in baseline:
        b, f = baseline[name], final.get(name)
        changed = {k: f"{b['fd_kinds'].get(k, 0)} -> {f['fd_kinds'].get(k, 0)}"
                   for k in {*b["fd_kinds"], *f["fd_kinds"]} if b["fd_kinds"].get(k, 0) != f["fd_kinds"].get(k, 0)} if f else {}
        print(f"  {name:<9} threads {b['threads']} -> {f and f['threads']}, fds {b['fds']} -> {f and f['fds']}"
              + (f" ({', '.join(f'{k} {v}' for k, v in sorted(changed.items()))})" if changed else "")
              + f", RSS {b['rss_mb']:.1f} -> {f and round(f['rss_mb'], 1)} MB")
    print("  with the listeners, once a minute (every instance of the process):")
    for name in baseline:
        seen = [row["processes"][name] for row in sampler.rows if "threads" in row["processes"].get(name, {})]
        if seen:
            print(f"  {name:<9} threads {min(p['threads'] for p in seen)}-{max(p['threads'] for p in seen)}, "
                  f"fds {min(p['fds'] for p in seen)}-{max(p['fds'] for p in seen)}, "
                  f"RSS {min(p['rss_mb'] for p in seen):.1f}-{max(p['rss_mb'] for p in seen):.1f} MB")
    at_baseline = all(final.get(n) and final[n]["threads"] <= b["threads"] and final[n]["fds"] <= b["fds"]
                      for n, b in baseline.items())

    print(f"\nRSS after minute {SETTLE_MINUTES} (each process instance that had itself run {SETTLE_MINUTES} minutes):")
    judged, flat = 0, True
    for name, pid, samples in rss_segments(sampler.rows):
        span = samples[-1][0] - samples[0][0]
        if len(samples) >= 3 and span >= RSS_MIN_SPAN_MINUTES:
            slope = slope_mb_per_hour(samples)
            judged += 1
            flat &= slope < RSS_FLAT_MB_PER_HOUR
            shown = f"slope {slope:+.2f} MB/h"
        else:
            shown = "too few minutes to judge"
        print(f"  {name:<9} pid {pid}: minutes {samples[0][0]}-{samples[-1][0]}, "
              f"{samples[0][1]:.1f} -> {samples[-1][1]:.1f} MB, {shown}")
    if not judged:
        print(f"  none: the run is too short (needs a process alive from minute {SETTLE_MINUTES} "
              f"for {RSS_MIN_SPAN_MINUTES} minutes more)")

    counts, errors, minutes = logs
    if minutes:
        p99s, maxima = [m[0] for m in minutes], [m[1] for m in minutes]
        print(f"\nthe owner's capture to send, by its minute log ({len(minutes)} minutes): p99 median "
              f"{sorted(p99s)[len(p99s) // 2]:.1f} ms, worst {max(p99s):.1f} ms; max over 200 ms in "
              f"{sum(1 for m in maxima if m > 200)} minutes (worst {max(maxima):.1f} ms); frames dropped "
              f"(backlog) in {sum(1 for m in minutes if m[2])} minutes")
    print("\nthe processes' logs (lines; repeats of a kind over 20 a minute are not logged):")
    for name, found in counts.items():
        print(f"  {name:<9} " + ", ".join(f"{k} {v}" for k, v in found.items()))
    for message, times in sorted(errors.items(), key=lambda item: -item[1])[:8]:
        print(f"    {times} x ERROR {message}")
    failed_states = {"stream-failed"} & (sampler.hub_states | {s for l in listeners for _, s in l["statuses"]})
    given_up = sum(found["tasks given up"] for found in counts.values())
    unretrieved = sum(found["task exceptions never retrieved"] for found in counts.values())
    restarts = sum(found["supervised restarts"] for found in counts.values())
    print(f"  supervised restarts in all: {restarts}; hub or listener state 'stream-failed' seen: "
          f"{'yes' if failed_states else 'no'}")

    targets = [
        ("no dead task: no supervised task given up, no stream 'stream-failed'", given_up == 0 and not failed_states),
        ("no task ended in an exception nobody retrieved (asyncio's 'never retrieved')", unretrieved == 0),
        ("every fault recovered: all listeners receiving again within "
         f"{RECOVERY_TIMEOUT_SECONDS} s", all(f["recovered"] for f in faults)),
        ("every listener reached by the final 'stream stopped'", len(stopped) == count),
        (f"RSS flat after the first {SETTLE_MINUTES} minutes (< {RSS_FLAT_MB_PER_HOUR:g} MB/h per process)",
         (flat if judged else None)),
        ("threads and fds back at the idle baseline", at_baseline),
        ("no gap over 200 ms apart from the injected faults", not outside and not unlisted),
    ]
    print(f"\ntargets ({args.hours:g} h, {count} listeners, {args.workers} workers, {len(faults)} faults):")
    for what, ok in targets:
        print(f"  {'not measured' if ok is None else verdict(ok):<12} {what}")
    return all(ok is not False for _, ok in targets)


# --- the run -----------------------------------------------------------------------------------------


def create_profile(db):
    """The device profile on the rig's monitor; returns its primary key."""
    env = {**os.environ, "RTC_DB_PATH": str(db)}
    code = ("from streams.models import StreamProfile;"
            f"p = StreamProfile(name='Desk', slug={PROFILE_SLUG!r}, source='device', "
            f"device_name='PulseAudio: virt.monitor', audio_bitrate={BITRATES[0]}, opus_dtx=False);"
            "p.full_clean(); p.save(); print(p.pk)")
    done = subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=PROJECT, env=env, check=True,
                          capture_output=True, text=True)
    return int(done.stdout.strip().splitlines()[-1])


def machine_line():
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "?")
    return (f"machine: {platform.node()} {platform.machine()}, nproc {os.cpu_count()}, {model}, "
            f"Python {platform.python_version()}; load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


def wait_ended(clients, timeout):
    """Until every listener has ended (the final stop reached it), or `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(entry[2] for entry in clients.state()[1]):
        time.sleep(0.5)


def warm_up(cluster, faults, count, swarm_size, logdir):
    """What the run's end does, once before the baseline: `count` listeners connect and receive,
    the operator switches the profile off (and on again), and every worker's /metrics is read.
    The idle baseline then holds what a process keeps once it has served that: thread pools and
    imports. (The Redis connections its pools opened for that many listeners at once it closes
    2 s into being idle: streams/ops/redispools.py.)"""
    from tests.waiting import wait_for

    clients = Clients([w.ws_url(PROFILE_SLUG) for w in cluster.workers], count, swarm_size, logdir)
    try:
        ok, _ = wait_steady(clients, time.monotonic(), 180)
        if not ok:
            raise RuntimeError(f"warm-up listeners did not receive; see the logs in {logdir}")
        faults.admin.save_form(faults.profile_path, enabled="")
        wait_ended(clients, 30)
    finally:
        clients.close()
    faults.admin.save_form(faults.profile_path, enabled="on")
    wait_for(lambda: all((s := worker_status(w)) and s["peers"] == 0 and not s["hubs"] for w in cluster.workers),
             30, "the workers idle after the warm-up")
    for worker in cluster.workers:  # /metrics reads on a thread of its own (asyncio.to_thread), made at first use
        with urllib.request.urlopen(worker.url("/metrics"), timeout=10) as response:
            response.read()
    time.sleep(5)  # the owner stops the stream, its capture lingers 1 s; 2 s idle, it gives back memory and connections


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, default=2.0, help="listening time, from all listeners receiving")
    parser.add_argument("--listeners", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--fault-every-minutes", type=float, default=None,
                        help="default: 5, or less in a short run so that each kind of fault comes once")
    parser.add_argument("--faults", default=",".join(FAULT_KINDS), help="the kinds of fault, in turn (default: all)")
    parser.add_argument("--swarm-size", type=int, default=25, help="listeners per client process")
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        asyncio.run(client_main(args.url, args.count))
        return 0
    kinds = args.faults.split(",")
    if set(kinds) - set(FAULT_KINDS):
        parser.error(f"--faults: unknown {', '.join(set(kinds) - set(FAULT_KINDS))}")
    every = args.fault_every_minutes or default_fault_every(args.hours, kinds)
    print("command:", shlex.join([".venv/bin/python", "bench/faultsoak.py", *sys.argv[1:]]))
    print(machine_line())
    print(f"faults every {every:.2f} min in turn: {', '.join(kinds)}", flush=True)

    from bench.listeners import prepare_database
    from tests.rigs.admin_http import AdminOverHttp
    from tests.rigs.pulseaudio import PulseAudioRig

    workdir = Path(tempfile.mkdtemp(prefix="faultsoak-"))
    print(f"logs: {workdir}", flush=True)
    with PulseAudioRig() as rig, contextlib.ExitStack() as cleanup:  # every step undone, even if one fails
        tone = ToneLoop(rig, rig.dir)
        cleanup.callback(tone.stop)
        db = prepare_database(workdir)
        profile_pk = create_profile(db)
        cluster = Cluster(workdir, db, rig)
        cleanup.callback(cluster.stop)
        cluster.start(args.workers)
        admin = AdminOverHttp(cluster.workers[0].url()).log_in("admin", ADMIN_PASSWORD)
        faults = Faults(cluster, rig, admin, profile_pk)
        print("idle, fresh: " + figures_line(idle_figures(cluster)), flush=True)
        warm_up(cluster, faults, args.listeners, args.swarm_size, workdir)
        baseline = idle_figures(cluster)
        print(f"idle baseline, after a warm-up of {args.listeners} listeners and a stop: " + figures_line(baseline),
              flush=True)

        clients = Clients([w.ws_url(PROFILE_SLUG) for w in cluster.workers], args.listeners, args.swarm_size, workdir)
        cleanup.callback(clients.close)
        ok, _ = wait_steady(clients, time.monotonic(), 180)
        if not ok:
            raise RuntimeError(f"not every listener received within 180 s; see {workdir}")
        listening_from = time.monotonic()
        end = listening_from + args.hours * 3600
        print(f"{args.listeners} listeners receiving on {args.workers} workers; listening for {args.hours:g} h",
              flush=True)
        sampler = Sampler(cluster, listening_from)
        sampler.start()
        cleanup.callback(sampler.stop)
        tap = RedisTap(cluster.redis.url(0))
        tap.start()
        cleanup.callback(tap.stop)

        due, turn = listening_from + 30, 0
        while due < end - 60:
            time.sleep(max(0.0, due - time.monotonic()))
            faults.run(kinds[turn % len(kinds)], clients, (time.monotonic() - listening_from) / 60)
            turn += 1
            due = max(due + every * 60, time.monotonic() + 10)
        time.sleep(max(0.0, end - time.monotonic()))

        steady, _ = wait_steady(clients, time.monotonic(), 60)
        print(f"before the final stop: {'every listener receiving' if steady else 'NOT every listener receiving'}",
              flush=True)
        stop_at = time.monotonic()
        admin.save_form(faults.profile_path, enabled="")  # an unchecked box: the profile switched off
        wait_ended(clients, 30)
        sampler.stop()
        tap.stop()
        listeners = clients.report()
        clients.close()
        final = wait_idle(cluster, baseline)
        logs = read_logs(cluster.logs())
        ok = print_summary(args, faults.done, listeners, sampler, tap, baseline, final, logs, listening_from, stop_at)
        print(f"load average at the end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
        return 0 if ok else 1

if __name__ == "__main__":
    sys.exit(main())
