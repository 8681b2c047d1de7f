"""FrameTiming: what /status.json and the log's minute line say of a stream's frames."""
import logging
from types import SimpleNamespace

from streams.audio.frametiming import FrameTiming, log_minute


def test_it_summarises_capture_to_send_and_counts_dropped_silence_and_jumps():
    timing = FrameTiming(window=100)
    for delay in range(1, 101):
        timing.sent(delay_ms=float(delay))
    timing.sent(silence=True, jumped=True)
    timing.sent(delay_ms=1.0, jumped=True, dropped_before=3)
    summary = timing.summary()
    assert summary["frames"] == 102
    assert (summary["dropped_frames"], summary["silence_frames"], summary["timeline_jumps"]) == (3, 1, 2)
    delays = summary["capture_to_send_ms"]
    assert delays["max"] == 100.0 and 49 <= delays["p50"] <= 52 and delays["p99"] >= 98  # the last 100 frames only


def test_a_generated_stream_has_no_capture_figures_and_no_minute_line(caplog):
    sine, device = FrameTiming(), FrameTiming()
    for _ in range(50):
        sine.sent()
        device.sent(delay_ms=2.0)
    assert sine.summary()["capture_to_send_ms"] is None
    hubs = [SimpleNamespace(config=SimpleNamespace(slug=slug), timing=t) for slug, t in (("tone", sine), ("desk", device))]
    with caplog.at_level(logging.INFO, logger="streams.audio.frametiming"):
        log_minute(hubs)
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 1 and lines[0].startswith("stream desk, last minute: capture to send p50 2.0 ms")
