"""Source to ear through real players: the Ogg stream in ffplay, GStreamer and mpv (installed if missing)
beside WebRTC in Chromium, all at once on the same stream.

A private PulseAudio (tests/rigs/pulseaudio.py) with one null sink for the source, "virt", whose
monitor a device profile captures (the default Opus settings but DTX off), and one null sink per
player, "ear-<name>", that the player plays into. Coded clicks (tests/rigs/clicks.py: ClickWriter, one a second) are
written into "virt"; each ear sink's monitor is recorded with parec (MonitorRecorder: its sample
count is its clock), the onsets found there and paired with the clicks by their codes (`pair`).
A latency is from the moment a click plays in the source sink to the moment the player's sound
reaches its sink: capture, encoding, the server, the player's network buffer, decoder and output
buffer, as a listener's ear meets them (the sound card's own buffer, absent here, is not counted).

The players:
  webrtc     Chromium (Debian) on the listen page (/listen/desk/), at the page's default latency
             choice, its <audio> output played into PulseAudio sink "ear-webrtc" (the reference)
  ffplay     ffplay -nodisp -autoexit -acodec libopus <url>   (PULSE_SINK=ear-ffplay, SDL's pulseaudio driver)
  gstreamer  gst-launch-1.0 playbin uri=<url> audio-sink="pulsesink device=ear-gstreamer"
  mpv        mpv --no-video --ad=libopus --ao=pulse --audio-device=pulse/ear-mpv <url>   (if installed)
where <url> is the server's /stream/desk.ogg. Each round starts every player afresh, waits until
each ear hears the stream and Chromium's jitter buffer has settled, clicks for --seconds, then
stops them all. Also recorded: the source sink's own monitor, a check of the clock (its clicks
should come back at about 0 ms).

    .venv/bin/python bench/player_latency.py
    .venv/bin/python bench/player_latency.py --seconds 20 --rounds 1     # a quick check
"""
import argparse
import contextlib
import dataclasses
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from bench.latency import code_version, load, setup_django  # noqa: E402
from bench.systempackages import ensure_command  # noqa: E402
from tests.rigs.browser_sound import chromium_sound_into  # noqa: E402
from tests.rigs.chromium import chromium_page  # noqa: E402
from tests.rigs.clicks import (  # noqa: E402
    RATE, ClickWriter, MonitorRecorder, pair, percentile, settle, start_listening)
from tests.rigs.daphne import DaphneServer  # noqa: E402
from tests.rigs.process import stop_process  # noqa: E402
from tests.rigs.pulseaudio import PulseAudioRig  # noqa: E402
from tests.waiting import wait_for  # noqa: E402

REFERENCE = "webrtc"
SOURCE_SINK = "virt"  # ClickWriter's sink; the "desk" profile of bench/latency.py captures its monitor
HEARING_DB = -60  # the clicks' noise floor is -40 dBFS: an ear above this hears the stream
START_TIMEOUT_S = 60
LATE_LIMIT_S = 15  # after the last click plays in the source sink, how long its way to every ear may take
CHECK_WINDOW_MS = 50  # the source's own monitor may deliver a click this much before its nominal time
POLL_EVERY_S = 1.0  # finding onsets in every recording is too costly for wait_for's 50 ms


@dataclasses.dataclass
class Player:
    name: str  # it plays into sink "ear-<name>"
    command: list
    env: dict
    package: str  # Debian's, for the message when it is missing


def ogg_players(url, rig_env):
    """The Ogg players to run, in order (installed if missing). ffplay and mpv decode with
    libopus, as docs/listening.md tells their users to: FFmpeg 5.1's own Opus decoder gets this
    stereo stream with FEC wrong (the clicks' chords come out at other frequencies and hardly a
    code can be read; libopus decodes the same pages right, and both give the onsets the same times)."""
    pulse = {"PULSE_SERVER": rig_env["PULSE_SERVER"]}
    players = [
        Player("ffplay", ["ffplay", "-nodisp", "-autoexit", "-acodec", "libopus", url],
               {**pulse, "PULSE_SINK": "ear-ffplay", "SDL_AUDIODRIVER": "pulseaudio"}, "ffmpeg"),
        Player("gstreamer", ["gst-launch-1.0", "playbin", f"uri={url}", 'audio-sink=pulsesink device=ear-gstreamer'],
               pulse, "gstreamer1.0-tools"),
    ]
    command = ["mpv", "--no-video", "--ad=libopus", "--ao=pulse", "--audio-device=pulse/ear-mpv", url]
    players.append(Player("mpv", command, pulse, "mpv"))
    for player in players:
        ensure_command(player.command[0], player.package)
    return players


def shown(player):
    """The player's command as a shell would take it, with the variables it is given."""
    variables = " ".join(f"{name}={value}" for name, value in player.env.items() if name != "PULSE_SERVER")
    return f"{variables} {shlex.join(player.command)}".strip()


@contextlib.contextmanager
def running(player, log_dir, round_number):
    log = open(Path(log_dir) / f"{player.name}-{round_number}.log", "wb")
    process = subprocess.Popen(player.command, env={**os.environ, **player.env}, stdin=subprocess.DEVNULL,
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        stop_process(process, timeout=5)
        log.close()


def log_tail(log_dir, name, round_number, lines=5):
    text = (Path(log_dir) / f"{name}-{round_number}.log").read_text(errors="replace").replace("\r", "\n")
    return " | ".join([line.strip() for line in text.splitlines() if line.strip()][-lines:])


# -- the machine --------------------------------------------------------------------------------


def cpu_model():
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def version(command, line=0):
    try:
        output = subprocess.run(command, capture_output=True, text=True, timeout=20).stdout.splitlines()
        return output[line].strip() if len(output) > line else "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def print_machine(players):
    print(f"machine: nproc {len(os.sched_getaffinity(0))}, {cpu_model()}; load average {load()}")
    versions = [version(["chromium", "--version"]), version(["ffplay", "-version"]),
                version(["gst-launch-1.0", "--version"], line=1)]
    if any(p.name == "mpv" for p in players):
        versions.append(version(["mpv", "--version"]))
    print("players: " + "; ".join(versions))
    print(f"code: {code_version()}")


# -- PulseAudio ---------------------------------------------------------------------------------


def playback_streams(rig):
    """{sink name: [application name of each playback stream into it]}."""
    sinks = (line.split("\t") for line in rig.pactl("list", "short", "sinks").splitlines())
    names = {fields[0]: fields[1] for fields in sinks}
    streams = {name: [] for name in names.values()}
    for block in rig.pactl("list", "sink-inputs").split("\n\n"):
        sink = re.search(r"^\s*Sink: (\d+)$", block, re.M)
        application = re.search(r'^\s*application\.name = "(.*)"$', block, re.M)
        if sink:
            streams[names[sink[1]]].append(application[1] if application else "?")
    return streams


def check_routing(rig, names):
    """Each sink of the rig hears one application (Chromium opens two streams: its <audio>
    element's and the page's AudioContext), and no application plays into two; returns the routing."""
    streams = {sink: apps for sink, apps in playback_streams(rig).items()
               if sink in [SOURCE_SINK, *(f"ear-{name}" for name in names)]}
    applications = [set(apps) for apps in streams.values()]
    if any(len(apps) != 1 for apps in applications) or len(set.union(*applications)) != len(applications):
        raise RuntimeError(f"each sink should hear one application of its own, found {streams}")
    return "; ".join(f"{sink} ← {apps[0]}" + (f" ×{len(apps)}" if len(apps) > 1 else "")
                     for sink, apps in streams.items())


# -- one round ----------------------------------------------------------------------------------


def throttled(condition, every_s=POLL_EVERY_S):
    last = [0.0]

    def check():
        if time.monotonic() - last[0] < every_s:
            return False
        last[0] = time.monotonic()
        return condition()

    return check


@dataclasses.dataclass
class Ear:
    pairing: object  # tests.rigs.clicks.Pairing
    recorder_lag_ms: float  # the largest lag of a read behind the recording's clock


def heard_last_click(recorder, clicks):
    last = clicks[-1]
    return any(onset.code == last.code and onset.at_ms > last.at_sink_ms for onset in recorder.onsets())


def source_check(clicks, onsets):
    """The source sink's own monitor against the writer's account: a pairing whose latencies are
    the monitor's onset minus the click's nominal time (negative: the sink rendered it early)."""
    early = [dataclasses.replace(click, at_sink_ms=click.at_sink_ms - CHECK_WINDOW_MS) for click in clicks]
    pairing = pair(early, onsets, floor_ms=float("-inf"))
    pairing.paired = [(click, latency - CHECK_WINDOW_MS) for click, latency in pairing.paired]
    return pairing


def save(recorder, path):
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(recorder.samples().tobytes())


def one_round(number, server, rig, players, seconds, log_dir, keep=None):
    names = [REFERENCE, *(p.name for p in players)]
    env = rig.child_env()
    with contextlib.ExitStack() as stack:
        writer = stack.enter_context(ClickWriter(env, sink=SOURCE_SINK))
        source = stack.enter_context(MonitorRecorder(env, f"{SOURCE_SINK}.monitor"))
        ears = {name: stack.enter_context(MonitorRecorder(env, f"ear-{name}.monitor")) for name in names}
        stack.enter_context(chromium_sound_into(rig))  # Chromium plays into the default sink: ear-webrtc
        page = stack.enter_context(chromium_page())
        start_listening(page, server.url("/listen/desk/"))
        choice = page.evaluate("() => window.rtcCaster.latency")
        processes = {p.name: stack.enter_context(running(p, log_dir, number)) for p in players}

        def all_hear():
            for name, process in processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited with {process.returncode}: {log_tail(log_dir, name, number)}")
            for recorder in [source, *ears.values()]:
                recorder.check()
            return all(recorder.level_db() > HEARING_DB for recorder in ears.values())

        started = time.monotonic()
        wait_for(all_hear, START_TIMEOUT_S, "every player's sound to reach its sink")
        hearing_after = time.monotonic() - started
        settling = settle(page)
        routing = check_routing(rig, names)
        writer.start_clicks(seconds)
        wait_for(lambda: writer.check() or len(writer.clicks) >= seconds, seconds + 30, "the clicks to be written")
        try:
            wait_for(throttled(lambda: all(heard_last_click(r, writer.clicks) for r in ears.values())),
                     LATE_LIMIT_S, "the last click to reach every ear")
        except TimeoutError:
            pass  # its players' clicks show as unpaired
        exited = {name: process.returncode for name, process in processes.items() if process.poll() is not None}
        clicks = list(writer.clicks)
        results = {name: Ear(pair(clicks, recorder.onsets()), max(recorder.read_lag_ms()))
                   for name, recorder in ears.items()}
        check = Ear(source_check(clicks, source.onsets()), max(source.read_lag_ms()))
        if keep:
            keep.mkdir(parents=True, exist_ok=True)
            for name, recorder in [("source", source), *ears.items()]:
                save(recorder, keep / f"{name}-{number}.wav")
            for name in processes:
                shutil.copy(Path(log_dir) / f"{name}-{number}.log", keep)
    return {"results": results, "check": check, "choice": choice, "settling": settling,
            "hearing_after": hearing_after, "exited": exited, "clicks": clicks, "routing": routing}


# -- reporting ----------------------------------------------------------------------------------


def describe(pairing, clicks):
    values = pairing.latencies()
    counts = (f"paired {len(values)}/{len(clicks)}"
              + "".join(f", {len(items)} {what}" for what, items in
                        [("unpaired", pairing.unpaired), ("suspicious", pairing.suspicious),
                         ("unreadable onsets", pairing.unreadable), ("stray", pairing.stray)] if items))
    if not values:
        return counts, None
    median = statistics.median(values)
    return f"{counts}; median {median:.0f} ms, p95 {percentile(values, 0.95):.0f} ms", median


def drift(pairing, first=10):
    """Median of the last `first` paired clicks minus that of the first `first` (ms)."""
    values = pairing.latencies()
    if len(values) < 2 * first:
        return None
    return statistics.median(values[-first:]) - statistics.median(values[:first])


def print_round(number, measured):
    clicks = measured["clicks"]
    print(f"round {number}: every ear heard the stream {measured['hearing_after']:.1f} s after the players started; "
          f"Chromium at latency choice {measured['choice']!r}, {measured['settling'].describe()}; "
          f"{len(clicks)} clicks (rig's queue before a click, not counted: "
          f"{min(c.queued_ms for c in clicks):.0f}–{max(c.queued_ms for c in clicks):.0f} ms)")
    print(f"  playback streams: {measured['routing']}")
    reference = statistics.median(measured["results"][REFERENCE].pairing.latencies() or [float("nan")])
    for name, ear in measured["results"].items():
        text, median = describe(ear.pairing, clicks)
        ratio = "" if median is None or name == REFERENCE else \
            f"; {median / reference:.2f}× WebRTC's median ({median - reference:+.0f} ms)"
        change = drift(ear.pairing)
        moved = "" if change is None else f"; last 10 minus first 10 clicks {change:+.0f} ms"
        print(f"  {name:>9}: {text}{ratio}{moved}; recorder's largest read lag {ear.recorder_lag_ms:.0f} ms")
    text, _ = describe(measured["check"].pairing, clicks)
    values = measured["check"].pairing.latencies()
    extent = f", min {min(values):.0f}, max {max(values):.0f}" if values else ""
    print(f"  {'check':>9}: the source sink's own monitor against the writer's clock: {text}{extent}")
    for name, code in measured["exited"].items():
        print(f"  {name} had exited (code {code}) before the end of the round")


def spread(values, digits=0):
    if not values:
        return "no values"
    return (f"median {statistics.median(values):.{digits}f}  min {min(values):.{digits}f}  "
            f"max {max(values):.{digits}f}  (n={len(values)})")


def print_spread(rounds, names):
    print("over the rounds (each figure one round's):")
    for name in names:
        medians, p95s, ratios = [], [], []
        for measured in rounds:
            values = measured["results"][name].pairing.latencies()
            reference = measured["results"][REFERENCE].pairing.latencies()
            if values:
                medians.append(statistics.median(values))
                p95s.append(percentile(values, 0.95))
                if reference:
                    ratios.append(statistics.median(values) / statistics.median(reference))
        line = f"  {name:>9}  median ms: {spread(medians)};  p95 ms: {spread(p95s)}"
        if name != REFERENCE:
            line += f";  × WebRTC: {' '.join(f'{r:.2f}' for r in ratios)}  {spread(ratios, 2)}"
        print(line)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=60, help="clicks (one a second) per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each with every player started afresh")
    parser.add_argument("--keep", type=Path, help="a folder to keep each round's recordings (WAV) and player logs in")
    args = parser.parse_args()
    print("command:", shlex.join([".venv/bin/python", "bench/player_latency.py", *sys.argv[1:]]), f"(in {PROJECT})")
    with tempfile.TemporaryDirectory() as workdir, PulseAudioRig(default_sink=SOURCE_SINK) as rig:
        db = Path(workdir) / "player_latency.sqlite3"
        setup_django(db)
        server = DaphneServer(db, Path(workdir) / "app.log", extra_env=rig.env).start()
        try:
            players = ogg_players(server.url("/stream/desk.ogg"), rig.env)
            print_machine(players)
            for name in [REFERENCE, *(p.name for p in players)]:
                rig.load_null_sink(f"ear-{name}")
            rig.pactl("set-default-sink", f"ear-{REFERENCE}")  # where Chromium plays: it is given no PULSE_SINK
            print(f"webrtc: Chromium on {server.url('/listen/desk/')}, its <audio> output into PulseAudio sink "
                  f"ear-{REFERENCE}")
            for player in players:
                print(f"{player.name}: {shown(player)}")
            rounds = []
            for number in range(1, args.rounds + 1):
                rounds.append(one_round(number, server, rig, players, args.seconds, workdir, args.keep))
                print_round(number, rounds[-1])
            print_spread(rounds, [REFERENCE, *(p.name for p in players)])
            print(f"load average at the end: {load()} (other work on the machine shows here)")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
