"""Timing of a stream as a listener meets it, from the RTP packets it received.

Pure functions over what tests/listener.py records: (arrival ms, sequence number, RTP
timestamp, payload) per packet, and the decoded samples. A 3-second FFT cannot see a clock
that runs 1 % fast or a latency that grows; these can:

- packet rate: packets per second of arrival time;
- drift: how far the stream's timeline (RTP timestamps) runs ahead of the wall clock
  (arrival times), in ms per minute: the median slope between every two seconds'
  fastest packets (each second's floor is the transport's; late packets only ever add,
  and the median of slopes ignores a few late seconds, say while a load starts);
- latency change: that slope times the recording's length, and the floors' scatter about it;
- send spread: each packet's arrival minus where its timestamp puts it, relative to the
  earliest packet; its p95 is the jitter buffer a receiver needs (it grows with drift);
- timeline steps other than one frame (and whether each carries the RTP marker), lost sequence
  numbers, and the busiest 100 ms of arrivals (a burst);
- dropouts: 20 ms windows of a steady tone more than 20 dB below its median level.
"""
import numpy as np


def rtp_timing(packets, clock_rate, frame_samples=None):
    arrival = np.array([p[0] for p in packets], dtype=np.float64) / 1000
    timestamps = _unwrap([p[2] for p in packets], 1 << 32)
    sequence = _unwrap([p[1] for p in packets], 1 << 16)
    media = timestamps / clock_rate
    elapsed = arrival - arrival[0]
    offset = arrival - media  # arrival minus where the timestamp puts it, up to a constant
    seconds = elapsed.astype(int)
    whole = np.unique(seconds)
    floors = np.array([offset[seconds == s].min() for s in whole])
    i, j = np.triu_indices(len(whole), k=1)
    lag_slope = float(np.median((floors[j] - floors[i]) / (whole[j] - whole[i]))) if len(whole) > 1 else 0.0
    residuals = floors - floors[0] - lag_slope * (whole - whole[0])
    envelope = lower_envelope_slope(elapsed, offset)
    spread = (offset - offset.min()) * 1000
    frame_samples = frame_samples or clock_rate // 50
    steps = np.diff(timestamps)
    return {
        "packets": len(packets),
        "seconds": round(float(elapsed[-1]), 2),
        "packet_rate": round(float((len(packets) - 1) / elapsed[-1]), 3),
        # The timeline runs ahead when arrivals fall behind it: offsets shrink as media runs fast.
        "drift_ms_per_minute": round(float(-lag_slope * 60_000), 1),
        # The same slope as what it did over this recording: how far the latency moved end to end.
        "latency_change_ms": round(float(lag_slope * elapsed[-1] * 1000), 1),
        # The same drift from the lower envelope of every packet (the line under all of them).
        "envelope_drift_ms_per_minute": round(float(-envelope * 60_000), 1),
        # How far the seconds' floors scatter about that slope: the noise under the estimate.
        "floor_scatter_ms": round(float(np.std(residuals - np.median(residuals)) * 1000), 1),
        "spread_p50_ms": round(float(np.percentile(spread, 50)), 1),
        "spread_p95_ms": round(float(np.percentile(spread, 95)), 1),
        "timeline_jumps": int(np.sum(steps != frame_samples)),
        "lost": int(sequence[-1] - sequence[0] + 1 - len(np.unique(sequence))),
    }


def lower_envelope_slope(t, y):
    """The slope of the line under every point (t, y) that lies closest to them overall: the
    edge of their lower convex hull above the mean t (the clock-skew estimate of Moon, Skelly
    and Towsley, 1999). Delays only ever add to a packet's offset, so its fastest packets,
    whenever they came, fix the line; no second needs a fast packet of its own."""
    hull = []  # indices of the lower hull, left to right
    for k in np.argsort(t, kind="stable"):
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            if (y[b] - y[a]) * (t[k] - t[a]) >= (y[k] - y[a]) * (t[b] - t[a]):  # b is not below a-k
                hull.pop()
            else:
                break
        hull.append(k)
    if len(hull) < 2:
        return 0.0
    middle = float(np.mean(t))
    for a, b in zip(hull, hull[1:]):
        if t[b] >= middle and t[b] > t[a]:
            return float((y[b] - y[a]) / (t[b] - t[a]))
    a, b = hull[-2], hull[-1]
    return float((y[b] - y[a]) / (t[b] - t[a])) if t[b] > t[a] else 0.0


def timeline_steps(packets, frame_samples=960):
    """Where the timeline does not run on by one frame: (timestamp step in samples, whether the
    packet after the step carries the RTP marker), in order of arrival."""
    timestamps = _unwrap([p[2] for p in packets], 1 << 32)
    return [(int(step), bool(packets[i + 1][4])) for i, step in enumerate(np.diff(timestamps)) if step != frame_samples]


def busiest_window(packets, window_ms=100):
    """The most packets that arrived within any `window_ms` (5 at 50 packets/s; more is a burst)."""
    arrival = np.sort(np.array([p[0] for p in packets], dtype=np.float64))
    return int(np.max(np.searchsorted(arrival, arrival + window_ms, side="left") - np.arange(len(arrival))))


def dropouts(samples, sample_rate, window_ms=20, below_db=20):
    """Windows of a steady tone more than `below_db` under the median window's RMS level."""
    window = sample_rate * window_ms // 1000
    usable = len(samples) // window * window
    frames = samples[:usable].astype(np.float64).reshape(-1, window)
    rms = np.sqrt(np.mean(frames ** 2, axis=1)) + 1e-9
    level_db = 20 * np.log10(rms / np.median(rms))
    return int(np.sum(level_db < -below_db))


def _unwrap(values, modulus):
    """Wrapping counters as ever-increasing integers (steps taken as the shortest way round)."""
    values = np.array(values, dtype=np.int64)
    steps = np.diff(values) % modulus
    steps[steps >= modulus // 2] -= modulus
    return np.concatenate([[values[0]], values[0] + np.cumsum(steps)])
