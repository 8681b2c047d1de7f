"""The RTP timing measures of tests/rigs/rtptiming.py, on made-up packet records."""
import numpy as np
import pytest

from tests.rigs.rtptiming import busiest_window, dropouts, lower_envelope_slope, rtp_timing, timeline_steps


def packets(count, every_ms=20.0, step=960, jitter_ms=None, start_ts=4_294_000_000, start_seq=65_000):
    rng = np.random.default_rng(3)
    records = []
    for i in range(count):
        arrival = 1_000_000 + i * every_ms + (rng.uniform(0, jitter_ms) if jitter_ms else 0)
        records.append((arrival, (start_seq + i) % 65536, (start_ts + i * step) % (1 << 32), b""))
    return records


def test_a_steady_stream_runs_at_50_packets_per_second_without_drift_or_spread():
    timing = rtp_timing(packets(1500), 48_000)
    assert timing["packet_rate"] == pytest.approx(50.0)
    assert timing["drift_ms_per_minute"] == pytest.approx(0, abs=0.1)
    assert timing["spread_p95_ms"] == pytest.approx(0, abs=0.01)
    assert timing["timeline_jumps"] == timing["lost"] == 0  # across the wraps of both counters


def test_a_timeline_one_percent_ahead_of_the_wall_clock_drifts_600_ms_a_minute():
    timing = rtp_timing(packets(3000, every_ms=20.0 / 1.01), 48_000)
    assert timing["packet_rate"] == pytest.approx(50.5)
    assert timing["drift_ms_per_minute"] == pytest.approx(600, rel=0.01)
    assert timing["spread_p95_ms"] > 500  # early packets keep coming earlier: a receiver buffers it all


def test_arrival_jitter_shows_as_spread_and_missing_packets_as_lost():
    records = packets(500, jitter_ms=30)
    del records[100:103]
    timing = rtp_timing(records, 48_000)
    assert 20 < timing["spread_p95_ms"] <= 30
    assert timing["lost"] == 3 and timing["timeline_jumps"] == 1


def test_dropouts_are_windows_20_db_under_a_steady_tone():
    t = np.arange(48_000) / 48_000
    tone = (10_000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)
    assert dropouts(tone, 48_000) == 0
    tone[9600:9600 + 1920] = 0  # 40 ms of silence
    assert dropouts(tone, 48_000) == 2


def test_late_packets_at_the_start_do_not_show_as_drift():
    records = [(arrival + (40 if i < 100 else 0), seq, ts, payload)
               for i, (arrival, seq, ts, payload) in enumerate(packets(1500, jitter_ms=15))]
    assert rtp_timing(records, 48_000)["drift_ms_per_minute"] == pytest.approx(0, abs=2)


def test_latency_change_is_the_drift_over_the_recording():
    timing = rtp_timing(packets(3000, every_ms=20.0 / 1.001), 48_000)  # 60 s, timeline 0.1 % ahead
    assert timing["latency_change_ms"] == pytest.approx(-60, rel=0.02)  # arrivals come 60 ms sooner
    assert timing["floor_scatter_ms"] == pytest.approx(0, abs=0.5)


def test_floor_scatter_measures_how_far_the_seconds_floors_wander():
    steady, wandering = packets(1500), packets(1500)
    for i, (arrival, seq, ts, payload) in enumerate(wandering):
        wandering[i] = (arrival + (6 if (i // 50) % 2 else 0), seq, ts, payload)  # every other second 6 ms late
    assert rtp_timing(steady, 48_000)["floor_scatter_ms"] == 0
    assert rtp_timing(wandering, 48_000)["floor_scatter_ms"] == pytest.approx(3, abs=0.5)


def test_timeline_steps_name_each_jump_and_its_marker():
    records = [(*packet[:4], False) for packet in packets(10)]
    for i in range(5, 10):  # the timeline jumps by 200 ms before packet 5, which carries the marker
        arrival, seq, ts, payload, _ = records[i]
        records[i] = (arrival, seq, (ts + 9600) % (1 << 32), payload, i == 5)
    assert timeline_steps(records) == [(960 + 9600, True)]
    assert timeline_steps([(*p[:4], False) for p in packets(10)]) == []


def test_the_busiest_window_counts_a_burst():
    steady = packets(100)
    assert busiest_window(steady) == 5
    burst = steady[:50] + [(steady[50][0] + i * 0.5, *steady[50 + i][1:]) for i in range(10)] + steady[60:]
    assert busiest_window(burst) == 4 + 10  # the burst and the four packets of the 100 ms before it


def test_the_lower_envelope_finds_the_drift_under_jitter_that_only_ever_delays():
    rng = np.random.default_rng(5)
    t = np.arange(1500) * 0.02
    delays = rng.exponential(0.004, size=t.size)  # most packets a little late, a few very late
    assert lower_envelope_slope(t, 0.0002 * t + delays) == pytest.approx(0.0002, abs=0.00002)
    assert lower_envelope_slope(t, delays) == pytest.approx(0, abs=0.00002)
