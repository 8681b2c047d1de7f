"""Latency as a listener meets it, measured in a real Chromium on loopback.

1. Time to first sound: the listener page opened in a fresh tab of a Chromium that keeps its own
   autoplay policy (no sound before a tap). The page connects on load and waits for the tap;
   measured from the tap on #listen to the first non-silent frame of the page's own level meters
   (a 440 Hz sine profile), over --tries tabs. A page that does not connect before the tap is
   measured the same way, connecting included, and the result says so.
2. Source to browser: coded clicks (tests/rigs/clicks.py, which explains the pairing) played into
   a PulseAudio null sink that a device profile captures, one a second, for --minutes in one
   browser session, timed to the moment Chromium's playout takes them from its jitter buffer;
   per-minute medians and p95 show growth, also net of the jitter buffer (which Chromium adapts
   by itself). Each minute also reads the browser's jitter buffer (inbound-rtp delay and target
   per emitted sample, over that minute) and the server's /status.json figures for the stream.
   --sessions browser sessions per latency choice; several choices (--latency low,robust) are
   measured alternately. A choice may name 10 ms Opus frames (`low+10ms`: a device profile
   whose frames are 10 ms instead of 20), so that both frame lengths are measured side by side.

    .venv/bin/python bench/latency.py
    .venv/bin/python bench/latency.py --minutes 1 --sessions 1 --tries 3     # a quick check
    .venv/bin/python bench/latency.py --latency low,normal,robust
    .venv/bin/python bench/latency.py --latency low,normal,robust,low+10ms   # and 10 ms frames beside 20
"""
import argparse
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from tests.rigs.chromium import chromium_page  # noqa: E402
from tests.rigs.clicks import ClickWriter, growth, measure, percentile, start_listening  # noqa: E402
from tests.rigs.daphne import DaphneServer  # noqa: E402
from tests.rigs.pulseaudio import PulseAudioRig  # noqa: E402

LATENCY_CHOICES = ("low", "normal", "robust")
FRAME_CHOICES = (20, 10)  # ms of Opus per packet: the default, and what a profile may choose
TAG = "rtc-latency-bench:"

# Reports through the console, so that the benchmark never has to query the page before the tap:
# Playwright's queries count as user activation, and one would let the page autoplay.
FIRST_SOUND_SCRIPT = """document.addEventListener("DOMContentLoaded", () => {
  const say = (text) => console.log(`%(tag)s ${text}`);
  const root = document.getElementById("listener");
  const button = document.getElementById("listen");
  say(button.hidden ? "page connects-on-load" : "page connects-on-tap");
  new MutationObserver(() => say(`playback ${root.dataset.playback}`))
    .observe(root, { attributes: true, attributeFilter: ["data-playback"] });
  let tapped = null;
  document.addEventListener("click", (event) => {
    if (event.isTrusted && tapped === null && event.target.closest("#listen")) tapped = performance.now();
  }, { capture: true });
  const watch = () => {
    const levels = window.rtcCaster.meters.levels();
    const loud = Math.max(levels.left.rmsDb, levels.right.rmsDb) > -40;
    if (loud && tapped === null) say("sound-before-tap");
    else if (loud) return say(`first-sound ${performance.now() - tapped}`);
    requestAnimationFrame(watch);
  };
  requestAnimationFrame(watch);
});""" % {"tag": TAG}


def setup_django(db_path):
    os.environ["RTC_DB_PATH"] = str(db_path)
    os.environ["RTC_ICE_ADDRESSES"] = "127.0.0.1"  # benchmarks send media over loopback only
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rtccaster_site.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", "--noinput", verbosity=0)
    from streams.models import StreamProfile

    StreamProfile.objects.create(name="Tone", slug="tone")
    # DTX off: a quiet floor between the clicks must be sent as sound, not as no packets at all.
    for frame_ms in FRAME_CHOICES:
        StreamProfile.objects.create(name=f"Desk {frame_ms} ms", slug=desk_slug(frame_ms), source="device",
                                     device_name="PulseAudio: virt.monitor", opus_dtx=False, opus_frame_ms=frame_ms)


def desk_slug(frame_ms):
    return "desk" if frame_ms == 20 else f"desk-{frame_ms}ms"


def setting_label(latency, frame_ms):
    return latency if frame_ms == 20 else f"{latency}, {frame_ms} ms frames"


def summary(values):
    if not values:
        return "no values"
    values = sorted(values)
    return (f"median {statistics.median(values):.0f} ms, p95 {percentile(values, 0.95):.0f} ms, "
            f"min {values[0]:.0f}, max {values[-1]:.0f} (n={len(values)})")


def code_version():
    described = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=PROJECT, capture_output=True, text=True)
    return described.stdout.strip() or "unknown"


def load():
    return " / ".join(f"{value:.1f}" for value in os.getloadavg()) + " (1 / 5 / 15 min)"


def figure(value, unit=" ms", sign=False):
    return "–" if value is None else f"{value:{'+' if sign else ''}.0f}{unit}"


# -- time to first sound ------------------------------------------------------------------------


def said(message, what):
    return message.text.startswith(f"{TAG} {what}")


def first_sound_in_a_new_tab(context, url):
    """(ms from the tap to the first loud meter frame, whether the page connected before the tap)."""
    page = context.new_page()
    heard = []
    page.on("console", lambda message: heard.append(message.text) if message.text.startswith(TAG) else None)
    try:
        ready = ("playback waiting-for-tap", "playback autoplay", "page connects-on-tap")
        with page.expect_console_message(lambda m: any(said(m, what) for what in ready), timeout=20_000) as first:
            page.goto(url)
        state = first.value.text.removeprefix(TAG).strip()
        if state == "playback autoplay":
            raise RuntimeError("the page autoplayed: this Chromium does not refuse autoplay")
        with page.expect_console_message(lambda m: said(m, "first-sound"), timeout=20_000) as sound:
            page.click("#listen")
        if f"{TAG} sound-before-tap" in heard:
            raise RuntimeError("the meters showed sound before the tap")
        return float(sound.value.text.split()[-1]), state != "page connects-on-tap"
    finally:
        page.close()


def time_to_first_sound(server, tries):
    times, preconnected = [], set()
    with chromium_page(autoplay=False) as page:
        page.context.add_init_script(FIRST_SOUND_SCRIPT)
        for _ in range(tries):
            elapsed, connected_first = first_sound_in_a_new_tab(page.context, server.url("/listen/tone/"))
            times.append(elapsed)
            preconnected.add(connected_first)
    return times, preconnected == {True}


# -- source to browser --------------------------------------------------------------------------


def server_figures(server, slug):
    status = server.status()
    return {"hub": next(h for h in status["hubs"] if h["slug"] == slug),
            "loop_lag": status.get("loop_lag_ms_last_minute")}


def server_minute(before, after):
    """What the server reports for one minute: its own frame timing where it has it (capture to
    send, frames dropped), else the ring wait; packets late or dropped; event loop lag."""
    hub, previous = after["hub"], before["hub"]
    parts = []
    frames = hub.get("frames")
    if frames is not None:
        delays = frames.get("capture_to_send_ms")
        parts.append("capture→send " + ("–" if not delays else f"p50 {delays['p50']:.0f} / p99 {delays['p99']:.0f} ms"))
        for name in ("dropped_frames", "silence_frames", "timeline_jumps"):
            change = frames.get(name, 0) - previous.get("frames", {}).get(name, 0)
            if change:
                parts.append(f"{name.replace('_', ' ')} +{change}")
    elif "source_backlog_ms" in hub:
        parts.append(f"ring wait {hub['source_backlog_ms']:.0f} ms")
    for name in ("late_frames", "dropped_packets"):
        change = hub.get(name, 0) - previous.get(name, 0)
        if change:
            parts.append(f"{name.replace('_', ' ')} +{change}")
    lag = after.get("loop_lag")
    if lag and lag.get("p99") is not None:
        parts.append(f"loop lag p99 {lag['p99']:.0f} ms")
    return ", ".join(parts)


def source_to_browser(server, rig, minutes, latency, frame_ms):
    slug = desk_slug(frame_ms)
    with ClickWriter(rig.child_env()) as writer, chromium_page() as page:
        chosen = start_listening(page, server.url(f"/listen/{slug}/"), latency=latency)
        session = measure(page, writer, minutes, sample=lambda: server_figures(server, slug))
    return session, chosen


def print_session(number, setting, chosen, session):
    result = session.pairing
    label = setting if chosen else f"{setting} asked, page has no choice"
    queued = [click.queued_ms for click in session.clicks]
    print(f"session {number} ({label}): {summary(result.latencies())}; growth {figure(growth(session.minutes), sign=True)}"
          f" (net of the jitter buffer {figure(growth(session.net_minutes), sign=True)}); "
          f"{len(session.clicks)} clicks: {len(result.unpaired)} unpaired, {len(result.suspicious)} suspicious, "
          f"{len(result.unreadable)} unreadable onsets, {len(result.stray)} stray; "
          f"rig's queue before a click (not counted) {min(queued):.0f}–{max(queued):.0f} ms")
    print(f"  before the clicks: {session.settling.describe()}")
    minutes = zip(session.minutes, session.net_minutes, session.jitter_buffer_minutes(),
                  zip(session.readings, session.readings[1:]))
    for minute, net, buffer, (before, after) in minutes:
        concealed = "" if not buffer["concealed_pct"] else f", {buffer['concealed_pct']:.2f} % concealed"
        print(f"  minute {minute.minute:2d}: {minute.describe()}; net of the jitter buffer "
              f"{figure(net.median_ms)}; jitter buffer {figure(buffer['delay_ms'])} "
              f"(target {figure(buffer['target_ms'])}){concealed}; server: {server_minute(before, after)}")


def print_pooled(setting, sessions):
    medians = [statistics.median(s.pairing.latencies()) for s in sessions if s.pairing.latencies()]
    pooled = [value for s in sessions for value in s.pairing.latencies()]
    unpaired = sum(len(s.pairing.unpaired) for s in sessions)
    suspicious = sum(len(s.pairing.suspicious) for s in sessions)
    clicks = sum(len(s.clicks) for s in sessions)
    spread = f"{min(medians):.0f}–{max(medians):.0f} ms" if medians else "–"
    growths = ", ".join(f"{figure(growth(s.minutes), sign=True)} (net {figure(growth(s.net_minutes), sign=True)})"
                        for s in sessions)
    print(f"source to browser ({setting}; click plays in the sink → Chromium's playout takes it), "
          f"{len(sessions)} sessions: {summary(pooled)}; session medians {spread}; growth per session {growths}; "
          f"{unpaired} of {clicks} clicks unpaired, {suspicious} suspicious")


def latency_choices(text):
    """[(latency choice, Opus frame ms)] from "low,robust,low+10ms"."""
    settings = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        latency, _, frames = item.partition("+")
        frame_ms = int(frames.removesuffix("ms")) if frames.removesuffix("ms").isdigit() else None
        if latency not in LATENCY_CHOICES or (frames and frame_ms not in FRAME_CHOICES):
            raise argparse.ArgumentTypeError(
                f"{item!r}: choose from {', '.join(LATENCY_CHOICES)}, each optionally +10ms (comma-separated)")
        settings.append((latency, frame_ms or FRAME_CHOICES[0]))
    if not settings:
        raise argparse.ArgumentTypeError("no latency choice given")
    return settings


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tries", type=int, default=20, help="tabs for time to first sound (0: skip)")
    parser.add_argument("--minutes", type=int, default=10, help="length of each source-to-browser session")
    parser.add_argument("--sessions", type=int, default=3, help="browser sessions per latency choice")
    parser.add_argument("--latency", type=latency_choices, default=[("low", 20)],
                        help="the page's latency choice(s), e.g. low,robust: measured alternately; "
                             "low+10ms: with 10 ms Opus frames")
    args = parser.parse_args()
    print("command:", shlex.join([".venv/bin/python", "bench/latency.py", *sys.argv[1:]]))
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, Chromium via Playwright, loopback; "
          f"load average {load()}")
    print(f"code: {code_version()}")
    with tempfile.TemporaryDirectory() as workdir, PulseAudioRig() as rig:
        db = Path(workdir) / "latency.sqlite3"
        setup_django(db)
        server = DaphneServer(db, Path(workdir) / "app.log", extra_env=rig.env).start()
        try:
            if args.tries:
                first, preconnected = time_to_first_sound(server, args.tries)
                how = ("pre-connected page, autoplay refused: tap → first non-silent meter frame" if preconnected
                       else "page connects on the tap: tap → first non-silent meter frame, connecting included")
                print(f"time to first sound ({how}): {summary(first)}")
            sessions = {setting: [] for setting in args.latency}
            for number in range(1, args.sessions + 1):
                for latency, frame_ms in args.latency:
                    session, chosen = source_to_browser(server, rig, args.minutes, latency, frame_ms)
                    sessions[latency, frame_ms].append(session)
                    print_session(number, setting_label(latency, frame_ms), chosen, session)
            for setting, measured in sessions.items():
                if measured:
                    print_pooled(setting_label(*setting), measured)
            print(f"load average at the end: {load()} (other work on the machine shows here)")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
