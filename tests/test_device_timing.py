"""A device stream at the listener, timed from RTP: the PulseAudio null sink's monitor runs on the
system clock (exactly 48,000 samples/s), so the stream must arrive at exactly 50 packets/s (100
with 10 ms frames) with no drift, a small send spread and no dropouts, even with both cores busy."""
import pytest

from tests.conftest import MONITOR
from tests.helpers import make_profile, run
from tests.listener import Listener
from tests.rigs.cpuload import cpu_burners
from tests.rigs.rtptiming import dropouts, rtp_timing

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.times_sound]

MEASURE_SECONDS = 30
# With both cores busy the seconds' floors scatter by a few ms (floor_scatter_ms), and 30 s of them
# fix the slope only to several ms per minute: one CI run read 11.5 ms/min (6 ms over the
# recording) with no frame invented, dropped or jumped on the server. So the listener's figure is
# held to what 30 s can show, the latency moving by at most one 10 ms capture period end to end;
# the defect this guards against moved it by 1.6 s. The clock itself is the server's account:
# every frame is the device's (no silence, drops or jumps) at 50.0 packets/s.
MAX_LATENCY_CHANGE_MS = 10


@pytest.mark.parametrize("frame_ms", [20, 10])
def test_a_device_stream_keeps_the_device_clock_with_both_cores_busy(capture_server, pulse, frame_ms):
    slug = f"steady-{frame_ms}ms"
    make_profile(slug, source="device", device_name=MONITOR, opus_dtx=False, opus_frame_ms=frame_ms)
    tone = pulse.play_tone(1000, seconds=MEASURE_SECONDS + 60)
    before = []

    def server_frames():
        status = capture_server.status()
        return next(hub["frames"] for hub in status["hubs"] if hub["slug"] == slug), status["captures"]

    async def scenario():
        async with Listener(capture_server.ws_url(slug)) as listener:
            await listener.listen_for(3)  # the capture is warm
            before.append(server_frames())
            with cpu_burners():
                packets, samples = await listener.record(MEASURE_SECONDS)
            after = server_frames()[0]
            timing = rtp_timing(packets, 48_000, 48 * frame_ms)
            return timing, dropouts(samples[:, 0], listener.heard.sample_rate), after

    try:
        timing, dropped, frames = run(scenario(), timeout=MEASURE_SECONDS + 60)
    finally:
        tone.terminate()
    print(f"device stream under load, {frame_ms} ms frames: {timing}, dropouts {dropped}; server: {frames}")
    # The tests run as root: the capture thread got what it asks for (streams/audio/priority.py).
    assert [c["priority"] for c in before[0][1]] == ["real-time (SCHED_FIFO 10)"]
    # The server's own account (/status.json) agrees with what the listener measured.
    assert frames["capture_to_send_ms"]["p50"] < 20
    for count in ("dropped_frames", "silence_frames", "timeline_jumps"):
        assert frames[count] == before[0][0][count], f"{count} while measuring"
    assert timing["packet_rate"] == pytest.approx(1000 / frame_ms, rel=0.002)  # 50.0 +- 0.1
    assert abs(timing["latency_change_ms"]) <= MAX_LATENCY_CHANGE_MS
    assert timing["spread_p95_ms"] <= 40
    assert timing["lost"] == 0 and timing["timeline_jumps"] == 0
    assert dropped == 0
