"""Server CPU per listener-packet: RTC Caster beside Janus 1.1.2's streaming plugin, in one run.

Both serve the same stream, a 440 Hz sine as 20 ms stereo Opus at 96 kb/s (VBR, in-band FEC
for 10 % loss), to the same listeners: bench/swarm.py's counting aiortc clients in their own
processes (bench/janus_client.py gives them Janus's signaling). They take turns, only one running
at a time, A then B in each of R rounds; in its turn a server serves each N of --steps:
  - RTC Caster: `manage.py serve` (daphne) with the default profile, which encodes in-process;
  - Janus: a child process with a configuration of its own (written to a temporary folder:
    the streaming plugin with one Opus mountpoint, the WebSocket transport, nothing else),
    fed RTP by ffmpeg (lavfi sine -> libopus), whose CPU is reported apart, as the source.
Per server, N and round: the server's CPU seconds over the window (/proc), packets per listener
per second (about 50 when it keeps up), CPU microseconds per listener-packet; then the ratio
RTC Caster / Janus per round, and a summary of median, min and max over the rounds.

Every address is loopback: Janus's WebSocket, its RTP input and its ICE candidates on
127.0.0.1 (ice_enforce_list; Janus skips loopback interfaces when gathering, so the bench
preloads bench/janus_loopback_shim.c, built with gcc at start); no STUN, no 1:1 NAT, no UPnP.
Janus is installed (apt-get) if it is missing: a benchmark-only dependency.

    .venv/bin/python bench/janus.py                                   # --steps 100,200 --rounds 3 --seconds 20
    .venv/bin/python bench/janus.py --steps 20 --rounds 1 --seconds 10   # a quick check of the harness
    .venv/bin/python bench/janus.py --janus-event-loops 2 --json out.json
"""
import argparse
import glob
import json
import os
import platform
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from bench.janus_client import MOUNTPOINT_ID, JanusSwarms  # noqa: E402
from bench.listeners import delivery, keeps_up, machine_busy_seconds, prepare_database, proc_cpu_seconds, proc_status  # noqa: E402
from bench.swarm import Swarms  # noqa: E402
from bench.systempackages import ensure_command  # noqa: E402
from tests.rigs.daphne import DaphneServer, free_port  # noqa: E402
from tests.rigs.process import ServerProcess, accepts_tcp, stop_process  # noqa: E402

LOOPBACK = "127.0.0.1"
SHIM_SOURCE = PROJECT / "bench" / "janus_loopback_shim.c"
SINE_HZ = 440
SINE_VOLUME = 4  # lavfi's sine is at 1/8 of full scale: x4 is RTC Caster's 0.5 (-6 dBFS)
OPUS_BITRATE = "96k"
SERVERS = ("rtc-caster", "janus")


def ensure_janus():
    """Install Janus from the system's packages if it is missing: only this benchmark needs it."""
    if shutil.which("janus"):
        return
    ensure_command("janus", "janus")
    if Path("/run/systemd/system").is_dir():
        # The package enables a system-wide Janus (HTTP on port 8088, RTC Caster's own): not wanted.
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        subprocess.run([*sudo, "systemctl", "disable", "--now", "janus"], capture_output=True)


def janus_version():
    banner = subprocess.run(["janus", "--help"], capture_output=True, text=True).stdout
    # "Janus version: 1102 (1.1.2)"
    return next((line.rpartition("(")[2].rstrip(")") for line in banner.splitlines() if line.startswith("Janus version")), "?")


def janus_library_folder():
    """/usr/lib/<multiarch>/janus, where the package puts its plugins and transports."""
    found = glob.glob("/usr/lib/*/janus/plugins/libjanus_streaming.so") + glob.glob("/usr/lib/janus/plugins/libjanus_streaming.so")
    if not found:
        raise SystemExit("janus is installed but its streaming plugin (libjanus_streaming.so) is not: reinstall janus")
    return Path(found[0]).parents[1]


def build_loopback_shim(workdir):
    library = Path(workdir) / "janus_loopback_shim.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-Wall", "-o", str(library), str(SHIM_SOURCE), "-ldl"], check=True)
    return library


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def write_janus_config(folder, ws_port, rtp_port, event_loops):
    """janus.jcfg, the WebSocket transport's and the streaming plugin's configuration in `folder`,
    with plugin and transport folders holding only the two that are wanted."""
    folder = Path(folder)
    libraries = janus_library_folder()
    for kind, wanted in (("plugins", "libjanus_streaming.so"), ("transports", "libjanus_websockets.so"),
                         ("events", None), ("loggers", None)):
        (folder / kind).mkdir(parents=True, exist_ok=True)
        if wanted:
            (folder / kind / wanted).symlink_to(libraries / kind / wanted)
    loops = f"\tevent_loops = {event_loops}\n" if event_loops else ""
    (folder / "janus.jcfg").write_text(f"""general: {{
\tconfigs_folder = "{folder}"
\tplugins_folder = "{folder / 'plugins'}"
\ttransports_folder = "{folder / 'transports'}"
\tevents_folder = "{folder / 'events'}"
\tloggers_folder = "{folder / 'loggers'}"
\tlog_to_stdout = false
\tlog_to_file = "{folder / 'janus.log'}"
\tdebug_level = 3
\tinterface = "{LOOPBACK}"
\tserver_name = "rtc-caster-bench"
\tsession_timeout = 60
{loops}}}
certificates: {{
}}
media: {{
}}
nat: {{
\tnice_debug = false
\tfull_trickle = false
\tice_lite = false
\tice_tcp = false
\tignore_mdns = true
\tice_enforce_list = "{LOOPBACK}"
}}
plugins: {{
}}
transports: {{
}}
loggers: {{
}}
events: {{
\tbroadcast = false
}}
""")
    (folder / "janus.transport.websockets.jcfg").write_text(f"""general: {{
\tjson = "compact"
\tws = true
\tws_port = {ws_port}
\tws_ip = "{LOOPBACK}"
\twss = false
}}
admin: {{
\tadmin_ws = false
\tadmin_wss = false
}}
""")
    (folder / "janus.plugin.streaming.jcfg").write_text(f"""general: {{
\tevents = false
}}
opus-sine: {{
\ttype = "rtp"
\tid = {MOUNTPOINT_ID}
\tdescription = "{SINE_HZ} Hz sine, stereo Opus {OPUS_BITRATE}b/s, from ffmpeg"
\tmedia = (
\t\t{{
\t\t\ttype = "audio"
\t\t\tmid = "a"
\t\t\tport = {rtp_port}
\t\t\tiface = "{LOOPBACK}"
\t\t\tpt = 111
\t\t\tcodec = "opus"
\t\t\tfmtp = "stereo=1;sprop-stereo=1"
\t\t}}
\t)
}}
""")
    return folder / "janus.jcfg"


class FfmpegOpusSource:
    """ffmpeg: a 440 Hz sine at -6 dBFS, stereo, libopus at 96 kb/s VBR in 20 ms frames (FEC for 10 % loss,
    as RTC Caster's default profile), sent in real time as RTP to 127.0.0.1:port."""

    def __init__(self, port):
        self.port = port
        self.process = None

    def command(self):
        return ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-re",
                "-f", "lavfi", "-i", f"sine=frequency={SINE_HZ}:sample_rate=48000:samples_per_frame=960,volume={SINE_VOLUME}",
                "-ac", "2", "-c:a", "libopus", "-application", "audio", "-b:a", OPUS_BITRATE, "-vbr", "on",
                "-frame_duration", "20", "-fec:a", "1", "-packet_loss:a", "10",
                "-f", "rtp", "-payload_type", "111", f"rtp://{LOOPBACK}:{self.port}?localaddr={LOOPBACK}&pkt_size=1200"]

    def start(self):
        self.process = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        return self

    def stop(self):
        stop_process(self.process)


class JanusServer(ServerProcess):
    """Janus as a child process, configured in `folder`, its ICE on loopback through the shim."""

    def __init__(self, folder, shim, event_loops=0):
        super().__init__(Path(folder) / "janus.log")
        self.folder = Path(folder)
        self.shim = shim
        self.ws_port = free_port()
        self.rtp_port = free_udp_port()
        self.config = write_janus_config(self.folder, self.ws_port, self.rtp_port, event_loops)

    def start(self, timeout=30):
        env = {**os.environ, "LD_PRELOAD": str(self.shim)}
        command = ["janus", "-C", str(self.config), "-F", str(self.folder), "-N"]
        self.launch(command, lambda: accepts_tcp(self.ws_port), f"janus on port {self.ws_port}", timeout,
                    cwd=self.folder, env=env)
        return self

    def ws_url(self):
        return f"ws://{LOOPBACK}:{self.ws_port}/"


class CasterTurn:
    """RTC Caster's turn: daphne with the default profile (it encodes the sine itself)."""
    name = "rtc-caster"

    def __init__(self, workdir, db):
        self.workdir, self.db = Path(workdir), db
        self.server = None

    def start(self):
        env = {"RTC_LOG_LEVEL": "WARNING", "RTC_ENCODE_PER_LISTENER": "0",
               "RTC_AUDIO_PRIORITY": "0",  # normal priority, as Janus and ffmpeg run
               # every benchmark listener comes from 127.0.0.1
               "RTC_MAX_LISTENERS_PER_ADDRESS": "0", "RTC_MAX_SOCKETS_PER_ADDRESS": "0"}
        self.server = DaphneServer(self.db, self.workdir / "rtc-caster.log", extra_env=env)
        self.server.start()  # (assigned first: stop() ends it even if it never gets ready)
        self.server.status()  # the first request's imports belong to the idle server
        return self

    @property
    def pid(self):
        return self.server.process.pid

    source_pid = None

    def swarms(self, count, seconds, swarm_size):
        return Swarms([self.server.ws_url("default")], count, seconds, swarm_size)

    def stream_kbps(self):
        """The encoder's payload bit rate over the last seconds, as the server measures it."""
        return sum(hub["measured_bitrate"] for hub in self.server.status()["hubs"]) / 1000

    def stop(self):
        if self.server:
            self.server.stop()


class JanusTurn:
    """Janus's turn: a fresh Janus and its ffmpeg source."""
    name = "janus"

    def __init__(self, workdir, shim, event_loops):
        self.workdir, self.shim, self.event_loops = Path(workdir), shim, event_loops
        self.server = self.source = None
        self.turns = 0

    def start(self):
        self.turns += 1  # a fresh configuration folder and log for each turn
        self.server = JanusServer(self.workdir / f"janus-{self.turns}", self.shim, self.event_loops)
        self.server.start()  # (assigned first: stop() ends it even if it never gets ready)
        self.source = FfmpegOpusSource(self.server.rtp_port)
        self.source.start()
        time.sleep(1.0)  # the mountpoint has a stream before the first listener asks for it
        if self.source.process.poll() is not None:
            raise RuntimeError(f"ffmpeg exited with {self.source.process.returncode}: {shlex.join(self.source.command())}")
        return self

    @property
    def pid(self):
        return self.server.process.pid

    @property
    def source_pid(self):
        return self.source.process.pid

    def swarms(self, count, seconds, swarm_size):
        return JanusSwarms([self.server.ws_url()], count, seconds, swarm_size)

    def stream_kbps(self):
        return None  # ffmpeg's is measured once, before the rounds (ffmpeg_payload)

    def stop(self):
        for process in (self.source, self.server):
            if process:
                process.stop()
        self.server = self.source = None


def measure(turn, count, seconds, swarm_size):
    """`count` listeners of `turn`'s server for `seconds`: its CPU and what the listeners received."""
    swarms = turn.swarms(count, seconds, swarm_size)
    try:
        time.sleep(1.0)  # let every listener's first packets and RTCP settle before measuring
        pids = [turn.pid] + ([turn.source_pid] if turn.source_pid else [])
        cpu_start = [proc_cpu_seconds(pid) for pid in pids]
        clients_start = sum(proc_cpu_seconds(p) for p in swarms.pids)
        busy_start, wall_start = machine_busy_seconds(), time.monotonic()
        swarms.go()
        totals = swarms.results()
        cpu = [proc_cpu_seconds(pid) - start for pid, start in zip(pids, cpu_start)]
        wall = time.monotonic() - wall_start
        clients_cpu = sum(proc_cpu_seconds(p) for p in swarms.pids) - clients_start
        machine_busy = machine_busy_seconds() - busy_start
        status = proc_status(turn.pid)
        stream_kbps = turn.stream_kbps()
    finally:
        swarms.close()
    packets = totals["packets"]
    return {
        "server": turn.name,
        "listeners": count,
        "connected": swarms.connected,
        "wall_seconds": wall,
        "server_cpu_seconds": cpu[0],
        "server_cpu_per_second": cpu[0] / wall,
        "source_cpu_seconds": cpu[1] if len(cpu) > 1 else None,
        "cpu_us_per_listener_packet": 1e6 * cpu[0] / packets if packets else None,
        "packets": packets,
        "packets_per_listener_per_second": packets / totals["listeners"] / seconds if totals["listeners"] else 0,
        **delivery(totals),
        "clients_cpu_per_second": clients_cpu / wall,
        "machine_cpu_per_second": machine_busy / wall,
        "stream_kbps": stream_kbps,
        "server_rss_mb": status["rss_mb"],
        "server_threads": status["threads"],
    }


def ffmpeg_payload(seconds=3.0):
    """What ffmpeg sends Janus, received here for `seconds`: packets/s, mean payload bytes, payload kb/s."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind((LOOPBACK, 0))
        receiver.settimeout(5)
        source = FfmpegOpusSource(receiver.getsockname()[1]).start()
        try:
            receiver.recv(2048)  # the first packet starts the count
            packets, payload, start = 0, 0, time.monotonic()
            while time.monotonic() - start < seconds:
                payload += len(receiver.recv(2048)) - 12  # ffmpeg's RTP header: 12 bytes, no CSRC, no extension
                packets += 1
            elapsed = time.monotonic() - start
        finally:
            source.stop()
    return packets / elapsed, payload / max(packets, 1), 8 * payload / elapsed / 1000


def shortfall(row):
    """Why a row does not keep up (bench.listeners.keeps_up), in words; empty if it does."""
    reasons = []
    if row["connected"] < row["listeners"]:
        reasons.append(f"{row['connected']}/{row['listeners']} connected")
    if row["received_ratio"] < 0.995:
        reasons.append(f"received {100 * row['received_ratio']:.1f} % of packets")
    if row["late_or_lost_percent"] >= 0.5:
        reasons.append(f"{row['late_or_lost_percent']:.2f} % late or lost")
    return reasons


def print_row(row):
    source = f"  ffmpeg cpu={row['source_cpu_seconds']:.2f} s" if row["source_cpu_seconds"] is not None else ""
    source += f"  encoder {row['stream_kbps']:.1f} kb/s" if row["stream_kbps"] is not None else ""
    cost = row["cpu_us_per_listener_packet"]
    print(f"  round {row['round']}  {row['server']:>10}  N={row['listeners']:>4}  connected={row['connected']:>4}  "
          f"server cpu={row['server_cpu_seconds']:.2f} s over {row['wall_seconds']:.1f} s ({row['server_cpu_per_second']:.2f} s/s)  "
          f"{cost if cost is not None else float('nan'):6.1f} us/listener-packet  "
          f"pkts/listener/s={row['packets_per_listener_per_second']:5.1f}  late+lost={row['late_or_lost_percent']:.2f}%{source}  "
          f"rss={row['server_rss_mb']:.0f} MB  threads={row['server_threads']}  "
          f"clients cpu={row['clients_cpu_per_second']:.2f} s/s  machine cpu={row['machine_cpu_per_second']:.2f}/{os.cpu_count()}  "
          f"{'ok' if keeps_up(row) else 'SHORT: ' + ', '.join(shortfall(row))}", flush=True)


def spread(values):
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    return f"median {statistics.median(values):7.2f}  min {min(values):7.2f}  max {max(values):7.2f}  (n={len(values)})"


def summarize(rows, steps):
    print("\nsummary (spread over rounds; us = server CPU microseconds per listener-packet):")
    for count in steps:
        by_server = {name: [r for r in rows if r["server"] == name and r["listeners"] == count] for name in SERVERS}
        for name, mine in by_server.items():
            print(f"  N={count:>4}  {name:>10}  us/listener-packet: {spread([r['cpu_us_per_listener_packet'] for r in mine])}")
            print(f"  N={count:>4}  {name:>10}  server cpu s/s:      {spread([r['server_cpu_per_second'] for r in mine])}")
            print(f"  N={count:>4}  {name:>10}  pkts/listener/s:     {spread([r['packets_per_listener_per_second'] for r in mine])}")
            for r in mine:
                if not keeps_up(r):
                    print(f"  N={count:>4}  {name:>10}  round {r['round']} did not keep up: {', '.join(shortfall(r))}")
        janus_source = [r["source_cpu_seconds"] / r["wall_seconds"] for r in by_server["janus"]]
        print(f"  N={count:>4}  {'ffmpeg':>10}  source cpu s/s:      {spread(janus_source)}")
        ratios, ratios_with_source = [], []
        for caster, janus in zip(by_server["rtc-caster"], by_server["janus"]):
            if caster["cpu_us_per_listener_packet"] and janus["cpu_us_per_listener_packet"]:
                ratios.append(caster["cpu_us_per_listener_packet"] / janus["cpu_us_per_listener_packet"])
                with_source = 1e6 * (janus["server_cpu_seconds"] + janus["source_cpu_seconds"]) / janus["packets"]
                ratios_with_source.append(caster["cpu_us_per_listener_packet"] / with_source)
        print(f"  N={count:>4}  RTC Caster / Janus, per round:          {' '.join(f'{r:.2f}' for r in ratios) or 'n/a'}"
              f"   {spread(ratios)}")
        print(f"  N={count:>4}  RTC Caster / (Janus + ffmpeg), per round: {' '.join(f'{r:.2f}' for r in ratios_with_source) or 'n/a'}"
              f"   {spread(ratios_with_source)}")


def print_setting(args):
    import aiortc
    print("command:", shlex.join([sys.executable, *sys.argv]), f"(in {os.getcwd()})")
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "?")
    print(f"machine: {platform.node()} {platform.machine()}, nproc {len(os.sched_getaffinity(0))} "
          f"({os.cpu_count()} cores), {model}; load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    ffmpeg = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.split()[2]
    print(f"versions: Python {platform.python_version()}, aiortc {aiortc.__version__}, janus {janus_version()}, ffmpeg {ffmpeg}")
    print(f"stream: {SINE_HZ} Hz sine, stereo Opus {OPUS_BITRATE}b/s, 20 ms; RTC Caster: default profile; "
          f"Janus: streaming plugin, RTP from ffmpeg; janus event_loops={args.janus_event_loops or 'Janus default (a loop per handle)'}; "
          f"all at normal priority (RTC_AUDIO_PRIORITY=0); server logs at warning level")
    rate, payload, kbps = ffmpeg_payload()
    print(f"ffmpeg's stream for Janus, received here for 3 s: {rate:.1f} packets/s, mean payload {payload:.0f} bytes, "
          f"{kbps:.1f} kb/s (RTC Caster's encoder rate is in its rows)")
    print(f"plan: {args.rounds} rounds x ({' then '.join(SERVERS)}) x N in {args.steps}, {args.seconds:g} s windows, "
          f"{args.swarm_size} listeners per client process", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", default="100,200", help="listener counts")
    parser.add_argument("--rounds", type=int, default=3, help="turns of each server (A, B, A, B, ...)")
    parser.add_argument("--seconds", type=float, default=20, help="measuring window per step")
    parser.add_argument("--swarm-size", type=int, default=50, help="listeners per client process")
    parser.add_argument("--janus-event-loops", type=int, default=0,
                        help="Janus's event_loops setting (0: Janus's default, a thread per handle)")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    steps = [int(n) for n in args.steps.split(",")]
    ensure_janus()
    print_setting(args)
    rows = []
    with tempfile.TemporaryDirectory(prefix="janus-bench-") as workdir:
        turns = {"rtc-caster": CasterTurn(workdir, prepare_database(workdir)),
                 "janus": JanusTurn(workdir, build_loopback_shim(workdir), args.janus_event_loops)}
        for round_number in range(1, args.rounds + 1):
            for name in SERVERS:
                turn = turns[name]
                try:
                    turn.start()
                    for count in steps:
                        row = measure(turn, count, args.seconds, args.swarm_size)
                        row["round"] = round_number
                        rows.append(row)
                        print_row(row)
                        time.sleep(2)  # the previous listeners' peers close
                finally:
                    turn.stop()
    summarize(rows, steps)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
