"""RealTimePacer (streams/audio/pacing.py), which paces generated streams, on an event loop whose
clock the test owns (tests/rigs/virtual_clock.py): every frame's time is exact, nothing sleeps."""
import pytest

from streams.audio.pacing import FRAME_SECONDS, MAX_CATCH_UP_SECONDS, RealTimePacer
from tests.rigs.virtual_clock import run_on_virtual_clock


async def frames(pacer, loop, count):
    """(index, time it was made) of the pacer's next `count` frames."""
    return [(await pacer.wait(), loop.time()) for _ in range(count)]


def test_frames_are_due_every_20_ms_from_the_first_which_is_due_at_once():
    async def scenario(loop):
        pacer = RealTimePacer("test")
        started = loop.time()
        return pacer, started, await frames(pacer, loop, 50)

    pacer, started, made = run_on_virtual_clock(scenario)
    assert [index for index, _ in made] == list(range(50))
    assert [when for _, when in made] == pytest.approx([started + i * FRAME_SECONDS for i in range(50)], abs=1e-9)
    assert (pacer.late_frames, pacer.skipped_frames) == (0, 0)


def test_after_a_hold_up_under_200_ms_the_missed_frames_go_out_at_once_counted_late():
    async def scenario(loop):
        pacer = RealTimePacer("test")
        before = await frames(pacer, loop, 5)  # 0..4, the last at +80 ms
        loop.hold_up(0.15)  # frames 5..10 are now over a frame period overdue, 11 is 10 ms overdue
        return pacer, before[0][1], loop.time(), await frames(pacer, loop, 10)

    pacer, started, resumed_at, after = run_on_virtual_clock(scenario)
    assert [index for index, _ in after] == list(range(5, 15))  # none skipped
    assert [when for _, when in after[:7]] == [resumed_at] * 7  # 5..11 at once
    assert [when for _, when in after[7:]] == pytest.approx([started + i * FRAME_SECONDS for i in (12, 13, 14)],
                                                            abs=1e-9)  # back on the 20 ms grid
    assert (pacer.late_frames, pacer.skipped_frames) == (6, 0)


def test_after_a_hold_up_over_200_ms_the_missed_frames_are_skipped_and_the_stream_keeps_the_clocks_time():
    async def scenario(loop):
        pacer = RealTimePacer("test")
        before = await frames(pacer, loop, 5)  # 0..4, the last at +80 ms
        loop.hold_up(0.51)  # to +590 ms: frame 5 is 490 ms overdue
        return pacer, before[0][1], loop.time(), await frames(pacer, loop, 3)

    pacer, started, resumed_at, after = run_on_virtual_clock(scenario)
    assert 0.49 > MAX_CATCH_UP_SECONDS
    # Frame 29 (due at +580 ms) goes out at once; 5..28 are never made.
    assert after[0] == (29, resumed_at)
    assert [index for index, _ in after] == [29, 30, 31]
    assert [when for _, when in after[1:]] == pytest.approx([started + i * FRAME_SECONDS for i in (30, 31)], abs=1e-9)
    assert (pacer.skipped_frames, pacer.late_frames) == (24, 0)


def test_a_pacer_of_10_ms_frames_makes_one_every_10_ms():
    async def scenario(loop):
        pacer = RealTimePacer("test", frame_seconds=0.01)
        started = loop.time()
        return started, await frames(pacer, loop, 20)

    started, made = run_on_virtual_clock(scenario)
    assert [when for _, when in made] == pytest.approx([started + i * 0.01 for i in range(20)], abs=1e-9)
