"""Source-to-browser latency with coded clicks: played into PulseAudio, found in the page, paired.

A `ClickWriter` plays into the null sink "virt" (whose monitor a device profile captures) in
10 ms chunks paced by the clock: a quiet noise floor (-40 dBFS, so the codec always has sound
to code) and, once a second, a click. It writes through libpulse-simple, as pacat does, and
asks PulseAudio how much is queued before each click, so a click's time is when it plays in the
sink: the rig's own buffer (40 ms at most) is not counted, and a rig that fell behind (an
underrun delays everything after it) does not pass for a slow server. In the page a
MediaStreamTrackProcessor (`install_detector`) gets every 10 ms of the remote track as
Chromium's playout takes it from the jitter buffer, stamped by the browser; at each onset the
page notes that time and keeps the next 100 ms of samples, which Python decodes
(`decode_code`). `pair` matches clicks with onsets.

Pairing rule: a click is paired with an onset by its code, never by its place in time. Every
click is a sharp marker (5 ms at +0.8, 5 ms at -0.8: the onset the page times) followed by a
60 ms chord of 6 of 12 tones. The tones sit one to an Opus (CELT) band, so each tone's presence
survives the codec as its band's energy; "6 of 12" is a constant-weight code, so a tone lost or
gained makes a chord of 5 or 7 clear tones, which decodes as unreadable, never as another code
(and a code misread all the same would point at a click that has its own onset, or none yet:
ambiguous or stray, not a wrong pair).
There are C(12, 6) = 924 codes and click k carries code k mod 924, so at a click a second a code
comes back only after 15 min 24 s. Click k is paired with an onset only if that onset carries
its code, comes after the click played in the sink and before the code plays again, and is
the only such onset: only a latency of over 15 minutes could pair a click with a wrong onset.

Nothing is dropped quietly: a click with no such onset is *unpaired*; one whose onset came less
than PHYSICAL_FLOOR_MS after it played in the sink (sooner than capture, a 20 ms Opus frame and
Chromium's 10 ms audio blocks allow) is *suspicious* and not taken as a latency; onsets whose
chord does not decode are *unreadable*, and readable onsets that no click claims are *stray*.
All are counted and reported.

What a latency includes: the null sink's monitor, the server's capture, ring, encode and send,
loopback, and Chromium's jitter buffer and decoder, up to the moment its playout takes the
samples for the <audio> element (the output device's own buffer, absent headless, is not
included). Both ends read the same wall clock (Python's time.time(), the page's Date.now()).
PulseAudio's account of the queue was checked against a recorder on the monitor: they agreed
within 4 ms.

Chromium's jitter buffer adapts by itself: on a sound server it was seen to step from 30 to 60 ms
within two minutes, and the click latency with it, while an aiortc listener on the same kind of
stream heard no growth. So the jitter buffer is also read every second (`getStats()`),
and each click's latency *net of the jitter buffer* (minus the buffer's delay in the second of
its onset) shows the rest of the path on its own: a server that falls behind grows that.

Outside a browser, what a player plays into a PulseAudio null sink is recorded from the sink's
monitor (`MonitorRecorder`, parec; its sample count is its clock) and its onsets found the same
way (`find_onsets`), then paired by the same rule (bench/player_latency.py).
"""
import ctypes
import itertools
import os
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from streams.audio.priority import make_capture_thread_real_time
from tests.rigs.process import stop_process
from tests.waiting import wait_for

RATE = 48_000
CHUNK = RATE // 100  # the writer's 10 ms
CLICK_EVERY_S = 1.0
# The rig's own buffer, left out of every click's time. An underrun delays all after it and moves
# the clicks against the server's 20 ms frames, which moves every later latency by up to a frame:
# 10 ms underran again and again on a 2-core VM. 100 ms leaves room for a writer held up by a busy
# machine (it also runs real-time where allowed); measured quietly, a click's time in the sink was
# as exact with 100 ms as with 40 (each click within 0.5 ms of its frame's arrival from capture, once settled).
SINK_BUFFER_MS = 100
PHYSICAL_FLOOR_MS = 15
FLOOR_RMS = 0.01  # -40 dBFS

# One tone in each of 12 CELT bands (band edges 200, 400, ... 1600, 2000, 2400, 2800, 3200, 4000 Hz).
CODE_TONES_HZ = (300, 500, 700, 900, 1100, 1300, 1500, 1800, 2200, 2600, 3000, 3600)
CODE_WEIGHT = 6
CODES = tuple(itertools.combinations(range(len(CODE_TONES_HZ)), CODE_WEIGHT))
CODE_OF_TONES = {tones: code for code, tones in enumerate(CODES)}
CODE_CYCLE_MS = len(CODES) * CLICK_EVERY_S * 1000

MARKER_AMPLITUDE = 0.8
MARKER_MS = 10
CHORD_START_MS, CHORD_END_MS = 30, 90  # after the marker's first sample; the gap lets the codec settle
TONE_AMPLITUDE = 0.03  # six tones peak below the detector's threshold: only the marker sets it off
ANALYSIS_WINDOWS_MS = ((40, 85), (55, 88))  # after the onset, inside the chord
CODE_GAP = 3.0  # the weakest tone of the six must be 9.5 dB over the strongest of the rest

DETECTOR_THRESHOLD = 0.3
DETECTOR_KEEP_MS = 100  # samples kept after each onset, for the code
DETECTOR_DEAD_MS = 300  # no new onset this soon after one: the marker rings for a few ms

SETTLE_WINDOW_S = 1.0
SETTLE_TOLERANCE_MS = 5  # three 1 s figures this close: the buffer no longer drains or fills
SETTLE_TIMEOUT_S = 120  # a 400 ms target is reached from 100 ms in about a minute

GRACE_MS = 5000  # after the last click plays in the sink, how long its onset may take


def samples_in(milliseconds, rate=RATE):
    return int(round(milliseconds * rate / 1000))


def click_waveform(code, rate=RATE):
    """Mono float click carrying `code`: the marker, a gap, then the code's chord (faded in and out)."""
    wave = np.zeros(samples_in(CHORD_END_MS, rate))
    half = samples_in(MARKER_MS / 2, rate)
    wave[:half] = MARKER_AMPLITUDE
    wave[half:2 * half] = -MARKER_AMPLITUDE
    start = samples_in(CHORD_START_MS, rate)
    t = np.arange(len(wave) - start) / rate
    chord = sum(np.sin(2 * np.pi * CODE_TONES_HZ[i] * t) for i in CODES[code])
    fade = np.minimum(1, np.minimum(np.arange(len(t)), np.arange(len(t))[::-1]) / samples_in(2.5, rate))
    wave[start:] = TONE_AMPLITUDE * chord * fade
    return wave


def decode_code(samples, rate):
    """The code of a click from the samples that follow its onset (int16 or float), or None.

    The chord is read in an early and a late window, so that a splice of Chromium's jitter
    buffer (it stretches or cuts sound to grow or shrink) in one of them does not lose the click;
    a window that shows exactly six clear tones gives a code, and two windows that give codes
    must agree."""
    samples = np.asarray(samples, dtype=np.float64)
    codes = {_code_in(samples[samples_in(start, rate):samples_in(end, rate)], rate, end - start)
             for start, end in ANALYSIS_WINDOWS_MS} - {None}
    return codes.pop() if len(codes) == 1 else None


def _code_in(window, rate, window_ms):
    if len(window) < samples_in(window_ms, rate) - 1:
        return None
    t = np.arange(len(window)) / rate
    shaped = window * np.hanning(len(window))
    magnitudes = np.array([abs(np.dot(shaped, np.exp(-2j * np.pi * hz * t))) for hz in CODE_TONES_HZ])
    order = np.argsort(magnitudes)[::-1]
    on, off = magnitudes[order[CODE_WEIGHT - 1]], magnitudes[order[CODE_WEIGHT]]
    if on <= 0 or on < CODE_GAP * off:
        return None
    return CODE_OF_TONES[tuple(sorted(int(i) for i in order[:CODE_WEIGHT]))]


# -- writing ---------------------------------------------------------------------------------


class _Spec(ctypes.Structure):
    _fields_ = [("format", ctypes.c_int), ("rate", ctypes.c_uint32), ("channels", ctypes.c_uint8)]


class _BufferAttr(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint32) for name in ("maxlength", "tlength", "prebuf", "minreq", "fragsize")]


class SinkPlayback:
    """A playback stream into a PulseAudio sink through libpulse-simple (what pacat does), which
    also says when what is written next will play: `queued_ms()`."""

    S16LE, PLAYBACK, DEFAULT = 3, 1, 0xFFFFFFFF

    def __init__(self, server, sink, buffer_ms):
        self._lib = ctypes.CDLL("libpulse-simple.so.0")
        self._lib.pa_simple_new.restype = ctypes.c_void_p
        self._lib.pa_simple_new.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                                            ctypes.c_char_p, ctypes.POINTER(_Spec), ctypes.c_void_p,
                                            ctypes.POINTER(_BufferAttr), ctypes.POINTER(ctypes.c_int)]
        self._lib.pa_simple_write.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t,
                                              ctypes.POINTER(ctypes.c_int)]
        self._lib.pa_simple_get_latency.restype = ctypes.c_uint64
        self._lib.pa_simple_get_latency.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)]
        self._lib.pa_simple_free.argtypes = [ctypes.c_void_p]
        self._error = ctypes.c_int()
        attr = _BufferAttr(self.DEFAULT, samples_in(buffer_ms) * 4, self.DEFAULT, self.DEFAULT, self.DEFAULT)
        self._stream = self._lib.pa_simple_new(
            server.encode() if server else None, b"rtc-caster clicks", self.PLAYBACK, sink.encode(), b"clicks",
            ctypes.byref(_Spec(self.S16LE, RATE, 2)), None, ctypes.byref(attr), ctypes.byref(self._error))
        if not self._stream:
            raise RuntimeError(f"cannot play into PulseAudio sink {sink}: error {self._error.value}")

    def queued_ms(self):
        """How long until the next sample written plays in the sink: the stream's buffer plus the sink's."""
        return self._lib.pa_simple_get_latency(self._stream, ctypes.byref(self._error)) / 1000

    def write(self, pcm):
        data = pcm.tobytes()
        if self._lib.pa_simple_write(self._stream, data, len(data), ctypes.byref(self._error)) < 0:
            raise RuntimeError(f"writing into PulseAudio failed: error {self._error.value}")

    def close(self):
        if self._stream:
            self._lib.pa_simple_free(self._stream)
            self._stream = None


@dataclass(frozen=True)
class Click:
    index: int
    code: int
    at_sink_ms: float  # time.time() in ms when its marker plays in the sink: written + queued
    queued_ms: float = 0.0  # the rig's own buffer at that moment, left out of the latency


class ClickWriter(threading.Thread):
    """Writes a noise floor into sink "virt" from start() on; clicks once a second after
    start_clicks(count). `clicks` lists the clicks written so far."""

    def __init__(self, env, sink="virt", seed=1):
        super().__init__(daemon=True, name="click-writer")
        self.playback = SinkPlayback(env.get("PULSE_SERVER"), sink, SINK_BUFFER_MS)
        self.floor = np.random.default_rng(seed).normal(0, FLOOR_RMS, RATE)  # 1 s, repeated
        self.clicks = []
        self.count = 0
        self.first_chunk = None
        self.stopping = threading.Event()
        self.failure = None
        self.priority = None
        self._lock = threading.Lock()
        self._chunk = 0

    def start_clicks(self, count, after_s=0.5):
        """Click `count` times, one a second, the first `after_s` from now."""
        with self._lock:
            self.count = count
            self.first_chunk = self._chunk + int(after_s * RATE / CHUNK)

    def run(self):
        try:
            self.priority = make_capture_thread_real_time()  # as the server's capture: a busy machine cannot starve it
            self._write_in_real_time()
        except Exception as error:  # noqa: BLE001 - reported by check(), not lost with the thread
            self.failure = error

    def _write_in_real_time(self):
        # Paced by the clock, 10 ms a chunk: the sink's buffer stays at SINK_BUFFER_MS or less,
        # and each click's time in the sink is its writing time plus what is queued before it.
        start = time.monotonic()
        rest = np.zeros(0)  # what is still to be written of the current click
        while not self.stopping.is_set():
            delay = start + self._chunk * CHUNK / RATE - time.monotonic()
            if delay > 0 and self.stopping.wait(delay):
                break
            index = self._click_due()
            offset = (self._chunk * CHUNK) % RATE
            chunk = self.floor[offset:offset + CHUNK].copy()
            if index is not None:
                rest = click_waveform(index % len(CODES))
                queued = self.playback.queued_ms()
                written = time.time() * 1000
            part, rest = rest[:CHUNK], rest[CHUNK:]
            chunk[:len(part)] += part
            self.playback.write(np.repeat((chunk * 32767).astype(np.int16)[:, None], 2, axis=1))
            if index is not None:
                self.clicks.append(Click(index, index % len(CODES), written + queued, queued))
            self._chunk += 1

    def _click_due(self):
        """The index of the click that starts with this chunk, if one does."""
        every = int(CLICK_EVERY_S * RATE / CHUNK)
        with self._lock:
            if self.first_chunk is None or self._chunk < self.first_chunk:
                return None
            index, part = divmod(self._chunk - self.first_chunk, every)
            return index if part == 0 and index < self.count else None

    def check(self):
        if self.failure is not None:
            raise RuntimeError(f"the click writer stopped: {self.failure!r}") from self.failure

    def stop(self):
        self.stopping.set()
        self.join(5)
        self.playback.close()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()


# -- the page ---------------------------------------------------------------------------------

# A MediaStreamTrackProcessor hands the page every 10 ms of the remote track as Chromium's
# playout takes it from the jitter buffer (the moment the <audio> element's output gets it),
# stamped on the performance timeline: the stamps hold however late the page's main thread reads
# them. (A Web Audio probe would hear the track through a second clock's FIFO, which was seen to
# add 10 ms steps of its own.) After an onset the next DETECTOR_KEEP_MS are kept for the code.
DETECTOR_JS = """({threshold, keepMs, deadMs}) => {
  const player = (window.rtcCaster && window.rtcCaster.player) || document.getElementById("player");
  const track = player.srcObject.getAudioTracks()[0];
  // 1 s of buffer: a main thread that falls behind loses nothing.
  const reader = new MediaStreamTrackProcessor({ track, maxBufferSize: 100 }).readable.getReader();
  const found = [];
  let keeping = null;
  let quietUntil = -Infinity;
  const scan = (data) => {
    const rate = data.sampleRate;
    const samples = new Float32Array(data.numberOfFrames);
    data.copyTo(samples, { planeIndex: 0, format: "f32-planar" });
    const start = data.timestamp / 1000 + (Date.now() - performance.now());  // the wall clock, as time.time()
    for (let i = 0; i < samples.length; i++) {
      const at = start + (i / rate) * 1000;
      if (keeping) {
        keeping.samples[keeping.filled++] = Math.round(samples[i] * 32767);
        if (keeping.filled === keeping.samples.length) {
          found.push({ at: keeping.at, rate, samples: Array.from(keeping.samples) });
          keeping = null;
        }
      } else if (Math.abs(samples[i]) > threshold && at >= quietUntil) {
        quietUntil = at + deadMs;
        keeping = { at, samples: new Int16Array(Math.round((keepMs / 1000) * rate)), filled: 0 };
        i--;  // keep this sample too
      }
    }
  };
  const read = () => reader.read().then(({ value, done }) => {
    if (done) return;
    try { scan(value); } finally { value.close(); }
    read();
  });
  read();
  window.__clickDetector = { reader, found };
}"""

DRAIN_JS = "() => window.__clickDetector.found.splice(0)"

# Cumulative inbound-rtp counters; minute figures are the differences between two readings.
BROWSER_STATS_JS = """async () => {
  const pc = window.rtcCaster.connection.pc;
  if (!pc) return null;
  const report = await pc.getStats();
  let result = null;
  report.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "audio") result = {
      jitterBufferDelay: s.jitterBufferDelay || 0,
      jitterBufferTargetDelay: s.jitterBufferTargetDelay || 0,
      jitterBufferMinimumDelay: s.jitterBufferMinimumDelay || 0,
      jitterBufferEmittedCount: s.jitterBufferEmittedCount || 0,
      concealedSamples: s.concealedSamples || 0,
      totalSamplesReceived: s.totalSamplesReceived || 0,
      packetsLost: s.packetsLost || 0,
    };
  });
  return result;
}"""


@dataclass(frozen=True)
class Onset:
    at_ms: float
    code: int | None  # None: the chord did not decode


def install_detector(page):
    """Start finding click onsets in the page's stream."""
    page.evaluate(DETECTOR_JS, {"threshold": DETECTOR_THRESHOLD, "keepMs": DETECTOR_KEEP_MS, "deadMs": DETECTOR_DEAD_MS})


def drain_onsets(page):
    """Onsets found since the last call, decoded."""
    return [Onset(found["at"], decode_code(found["samples"], found["rate"])) for found in page.evaluate(DRAIN_JS)]


def browser_stats(page):
    return page.evaluate(BROWSER_STATS_JS)


def jitter_buffer(before, after):
    """Chromium's jitter buffer over the span between two readings of BROWSER_STATS_JS: mean
    delay and target per emitted sample (ms) and the share of samples concealed (%)."""
    if not before or not after:
        return {"delay_ms": None, "target_ms": None, "concealed_pct": None}
    emitted = after["jitterBufferEmittedCount"] - before["jitterBufferEmittedCount"]
    received = after["totalSamplesReceived"] - before["totalSamplesReceived"]

    def per_sample(name):
        return 1000 * (after[name] - before[name]) / emitted if emitted > 0 else None

    concealed = after["concealedSamples"] - before["concealedSamples"]
    return {
        "delay_ms": per_sample("jitterBufferDelay"),
        "target_ms": per_sample("jitterBufferTargetDelay"),
        "concealed_pct": 100 * concealed / received if received > 0 else None,
    }


# -- pairing and summaries (pure) -----------------------------------------------------------


@dataclass
class Pairing:
    paired: list = field(default_factory=list)  # (Click, latency ms)
    suspicious: list = field(default_factory=list)  # (Click, latency ms): below the physical floor
    unpaired: list = field(default_factory=list)  # Click: not exactly one onset with its code in its span
    unreadable: list = field(default_factory=list)  # Onset whose chord did not decode
    stray: list = field(default_factory=list)  # readable Onset that no click claimed

    def latencies(self):
        return [latency for _, latency in self.paired]


def pair(clicks, onsets, floor_ms=PHYSICAL_FLOOR_MS, cycle_ms=CODE_CYCLE_MS):
    """Pair each click with the one onset that carries its code between the click's playing in
    the sink and the next playing of that code (cycle_ms later). The module docstring has the rule."""
    result = Pairing(unreadable=[onset for onset in onsets if onset.code is None])
    by_code = {}
    for onset in onsets:
        if onset.code is not None:
            by_code.setdefault(onset.code, []).append(onset)
    claimed = set()
    for click in clicks:
        candidates = [o for o in by_code.get(click.code, ()) if click.at_sink_ms < o.at_ms < click.at_sink_ms + cycle_ms]
        if len(candidates) != 1:  # none heard, or (the detector firing twice) more than one: no guessing
            result.unpaired.append(click)
            continue
        onset = candidates[0]
        claimed.add(id(onset))
        latency = onset.at_ms - click.at_sink_ms
        (result.suspicious if latency < floor_ms else result.paired).append((click, latency))
    result.stray = [o for o in onsets if o.code is not None and id(o) not in claimed]
    return result


def percentile(values, fraction):
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


@dataclass(frozen=True)
class Minute:
    minute: int  # 1-based
    clicks: int
    paired: int
    median_ms: float | None
    p95_ms: float | None
    unpaired: int
    suspicious: int

    def describe(self):
        figures = (f"median {self.median_ms:.0f} ms, p95 {self.p95_ms:.0f} ms" if self.paired else "no click paired")
        extra = "".join(f", {n} {what}" for n, what in [(self.unpaired, "unpaired"), (self.suspicious, "suspicious")] if n)
        return f"{figures} ({self.paired}/{self.clicks} paired{extra})"


def per_minute(pairing, clicks_per_minute=int(60 / CLICK_EVERY_S), values=None):
    """Per-minute figures of a pairing, a click's minute being its index // clicks_per_minute;
    `values`, (click, ms) pairs, replace the pairing's latencies (e.g. net of the jitter buffer)."""
    minutes = {}

    def bucket(click):
        return minutes.setdefault(click.index // clicks_per_minute, {"latencies": [], "unpaired": 0, "suspicious": 0})

    for click, latency in pairing.paired if values is None else values:
        bucket(click)["latencies"].append(latency)
    for click, _ in pairing.suspicious:
        bucket(click)["suspicious"] += 1
    for click in pairing.unpaired:
        bucket(click)["unpaired"] += 1
    result = []
    for number in range(max(minutes, default=-1) + 1):
        counts = minutes.get(number, {"latencies": [], "unpaired": 0, "suspicious": 0})
        latencies = counts["latencies"]
        result.append(Minute(
            minute=number + 1,
            clicks=len(latencies) + counts["unpaired"] + counts["suspicious"],
            paired=len(latencies),
            median_ms=statistics.median(latencies) if latencies else None,
            p95_ms=percentile(latencies, 0.95) if latencies else None,
            unpaired=counts["unpaired"],
            suspicious=counts["suspicious"],
        ))
    return result


def net_of_jitter_buffer(paired, readings):
    """Each (click, latency) minus Chromium's jitter-buffer delay in the span of `readings`
    ((wall ms, BROWSER_STATS_JS reading), one a second) that holds the click's onset. Clicks
    whose onset falls outside every span, or in one without figures, are left out."""
    spans = [(t0, t1, jitter_buffer(a, b)["delay_ms"]) for (t0, a), (t1, b) in zip(readings, readings[1:])]
    result = []
    for click, latency in paired:
        onset = click.at_sink_ms + latency
        delays = [delay for t0, t1, delay in spans if t0 <= onset < t1 and delay is not None]
        if delays:
            result.append((click, latency - delays[0]))
    return result


def growth(minutes):
    """The last minute's median minus the first's (ms), over minutes that have a median."""
    medians = [m.median_ms for m in minutes if m.median_ms is not None]
    return medians[-1] - medians[0] if len(medians) >= 2 else None


# -- a session --------------------------------------------------------------------------------


def steady(figures, windows=3, tolerance_ms=SETTLE_TOLERANCE_MS):
    """Whether Chromium's jitter buffer has settled, from its figures (jitter_buffer(), one a
    second): the last `windows` delays lie within tolerance_ms, and the buffer is not still
    filling up to a higher target (a latency choice of 400 ms is reached at some 5 ms a second)."""
    recent = [f["delay_ms"] for f in figures[-windows:] if f["delay_ms"] is not None]
    if len(recent) < windows or max(recent) - min(recent) > tolerance_ms:
        return False
    target = figures[-1]["target_ms"]
    return target is None or recent[-1] >= target - 2 * tolerance_ms


@dataclass(frozen=True)
class Settling:
    seconds: float
    delays_ms: list  # the jitter buffer, second by second, while it settled
    steady: bool  # False: it had not settled by the deadline, and the clicks began anyway

    def describe(self):
        delays = [f"{d:.0f}" for d in self.delays_ms if d is not None]
        path = f"jitter buffer {delays[0]} → {delays[-1]} ms" if delays else "no jitter buffer figures"
        verdict = "settled" if self.steady else "NOT settled"
        return f"{verdict} after {self.seconds:.0f} s ({path})"


def settle(page, timeout_s=SETTLE_TIMEOUT_S):
    """Wait for Chromium's jitter buffer to settle before the clicks: a buffer that a burst at the
    start filled drains slowly (tens of ms a second), one with a high target fills slowly, and
    either would pass for latency that changes."""
    started = time.monotonic()
    readings, figures, due = [browser_stats(page)], [], [started + SETTLE_WINDOW_S]

    def settled():
        if time.monotonic() < due[0]:
            return False
        due[0] += SETTLE_WINDOW_S
        readings.append(browser_stats(page))
        figures.append(jitter_buffer(readings[-2], readings[-1]))
        return steady(figures)

    try:
        wait_for(settled, timeout_s, "the browser's jitter buffer to settle")
        done = True
    except TimeoutError:  # measured all the same, and said so
        done = False
    return Settling(time.monotonic() - started, [f["delay_ms"] for f in figures], steady=done)


@dataclass
class Session:
    settling: Settling
    clicks: list
    onsets: list
    pairing: Pairing
    minutes: list  # Minute, of the latencies
    net_minutes: list  # Minute, of the latencies net of the jitter buffer
    readings: list  # one per minute boundary, the first at the start: {"browser": ..., **sample()}
    browser_seconds: list  # (wall ms, BROWSER_STATS_JS reading), one a second

    def jitter_buffer_minutes(self):
        return [jitter_buffer(a["browser"], b["browser"]) for a, b in zip(self.readings, self.readings[1:])]


def measure(page, writer, minutes, sample=None):
    """Once the jitter buffer has settled, click for `minutes` into a page that plays the stream
    (writer already started). Reads the browser's counters every second, and at the start and
    after each minute's clicks also `sample()` if given."""
    per = int(60 / CLICK_EVERY_S)
    onsets, seconds = [], []

    def reading():
        return {"browser": browser_stats(page), **(sample() if sample else {})}

    def collect():
        writer.check()
        onsets.extend(drain_onsets(page))
        now = time.time() * 1000
        if not seconds or now - seconds[-1][0] >= SETTLE_WINDOW_S * 1000:
            seconds.append((now, browser_stats(page)))

    settling = settle(page)
    install_detector(page)
    readings = [reading()]
    writer.start_clicks(minutes * per)
    for minute in range(1, minutes + 1):
        wait_for(lambda: collect() or len(writer.clicks) >= minute * per, 60 + 30,
                 f"the clicks of minute {minute} to be written")
        readings.append(reading())

    def all_heard():
        collect()
        late = time.time() * 1000 - writer.clicks[-1].at_sink_ms > GRACE_MS
        return late or not pair(writer.clicks, onsets).unpaired

    wait_for(all_heard, GRACE_MS / 1000 + 10, "the last clicks to reach the page")
    seconds.append((time.time() * 1000, browser_stats(page)))
    pairing = pair(writer.clicks, onsets)
    net = net_of_jitter_buffer(pairing.paired, seconds)
    return Session(settling, list(writer.clicks), onsets, pairing, per_minute(pairing, per),
                   per_minute(pairing, per, values=net), readings, seconds)


# -- the listener page ----------------------------------------------------------------------


def start_listening(page, url, latency=None, timeout=20):
    """Open the listener page and have it play, in a Chromium that allows autoplay: choose
    `latency` where the page offers the choice (`#latency`), press `#listen` whenever it shows
    (the page that connects on a tap, or one that asks for a tap). Returns the choice made, or
    None if the page has no choice."""
    page.goto(url)
    page.wait_for_function("window.rtcCaster !== undefined")
    chosen = None
    if latency and page.locator("#latency").count():
        page.select_option("#latency", latency)
        chosen = latency
    tells_playback = page.evaluate("() => 'playback' in window.rtcCaster")

    def playing():
        if page.locator("#listen").is_visible():
            page.click("#listen")
        connected = page.get_attribute("#status", "data-state") == "connected"
        started = page.evaluate("() => window.rtcCaster.playback") in ("autoplay", "tap") if tells_playback else True
        return connected and started and page.evaluate("() => Boolean(window.rtcCaster.player.srcObject)")

    wait_for(playing, timeout, "the page to play")
    if chosen:
        assert page.evaluate("() => window.rtcCaster.latency") == chosen, "the page did not take the latency choice"
    return chosen


# -- what a sink plays, recorded ----------------------------------------------------------------
#
# A player's sound is heard where it reaches a sound sink: recorded by parec from the monitor of
# the null sink it plays into. A null sink renders on the system clock, and parec on its monitor
# delivers exactly RATE samples a second, so a sample's index is its time: sample i reached the
# sink at start_ms + i * 1000 / RATE. start_ms comes from the reads: a read that brings the count
# to n samples, arriving at wall time t, says the recording began no later than t - n / RATE; the
# earliest of these figures is the start (a read that came late, a busy reader, says only that).


def find_onsets(samples, rate, start_ms, threshold=DETECTOR_THRESHOLD, keep_ms=DETECTOR_KEEP_MS,
                dead_ms=DETECTOR_DEAD_MS):
    """Click onsets in a recording (mono, int16 or float in [-1, 1]) that began at wall time
    `start_ms`, found as the page's detector finds them in its stream: a sample over `threshold`
    at least `dead_ms` after the previous onset, its code decoded from the `keep_ms` that follow.
    An onset whose `keep_ms` the recording does not hold yet is left for a later call."""
    samples = np.asarray(samples)
    if samples.dtype == np.int16:
        samples = samples / 32767
    loud = np.flatnonzero(np.abs(samples) > threshold)
    keep, dead = samples_in(keep_ms, rate), samples_in(dead_ms, rate)
    onsets, position = [], 0
    while position < len(loud):
        index = int(loud[position])
        if index + keep > len(samples):
            break
        onsets.append(Onset(start_ms + index * 1000 / rate, decode_code(samples[index:index + keep], rate)))
        position = int(np.searchsorted(loud, index + dead))
    return onsets


class MonitorRecorder(threading.Thread):
    """Records a PulseAudio source (a sink's ".monitor") with parec, mono at RATE, from start()
    until stop(); `onsets()` finds the clicks in it on the wall clock (see above)."""

    def __init__(self, env, source, latency_msec=10):
        super().__init__(daemon=True, name=f"recorder:{source}")
        self.source = source
        self._command = ["parec", f"--device={source}", "--raw", "--format=s16le", f"--rate={RATE}",
                         "--channels=1", f"--latency-msec={latency_msec}"]
        self._env = env
        self._process = None
        self._data = bytearray()
        self._reads = []  # (wall ms on arrival, samples in all)
        self._lock = threading.Lock()
        self.failure = None

    def start(self):
        self._process = subprocess.Popen(self._command, env=self._env, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE)
        super().start()
        return self

    def run(self):
        try:
            fd = self._process.stdout.fileno()
            while True:
                data = os.read(fd, 1 << 16)
                arrived = time.time() * 1000
                if not data:
                    break
                with self._lock:
                    self._data += data
                    self._reads.append((arrived, len(self._data) // 2))
        except Exception as error:  # noqa: BLE001 - reported by check(), not lost with the thread
            self.failure = error

    def check(self):
        if self.failure is not None:
            raise RuntimeError(f"recording {self.source} failed: {self.failure!r}") from self.failure
        if self._process.poll() is not None:
            raise RuntimeError(f"parec on {self.source} exited with {self._process.returncode}: "
                               f"{self._process.stderr.read().decode(errors='replace').strip()}")

    def samples(self):
        with self._lock:
            return np.frombuffer(bytes(self._data[:len(self._data) // 2 * 2]), dtype=np.int16)

    def start_ms(self):
        """Wall time of the first sample: the earliest arrival time less the samples it completed."""
        with self._lock:
            reads = list(self._reads)
        return min(arrived - count * 1000 / RATE for arrived, count in reads) if reads else None

    def read_lag_ms(self):
        """How long after its last sample reached the sink each read arrived (ms; the earliest is 0):
        a recording that lost samples would show a lag that never comes down again."""
        start = self.start_ms()
        with self._lock:
            reads = list(self._reads)
        return [arrived - count * 1000 / RATE - start for arrived, count in reads]

    def level_db(self, last_ms=200):
        """RMS in dBFS of the last `last_ms` recorded; -inf for silence or nothing yet."""
        with self._lock:
            tail = bytes(self._data[max(0, len(self._data) // 2 - samples_in(last_ms)) * 2:len(self._data) // 2 * 2])
        samples = np.frombuffer(tail, dtype=np.int16).astype(np.float64)
        rms = np.sqrt(np.mean(samples ** 2)) if len(samples) else 0.0
        return 20 * np.log10(rms / 32768) if rms > 0 else float("-inf")

    def onsets(self):
        start = self.start_ms()
        return [] if start is None else find_onsets(self.samples(), RATE, start)

    def stop(self):
        if self._process is not None:
            stop_process(self._process, timeout=5)
            self.join(5)
            for stream in (self._process.stdout, self._process.stderr):
                stream.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
