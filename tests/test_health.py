"""Source health alarms (streams/audio/health.py): levels, silence after its time, clipping over
a second, hysteresis, one change at a time."""
import numpy as np

from streams.audio.health import (CLIPPING, SILENT, SILENT_DBFS, HealthLimits, SourceHealth, clipped_samples,
                                  frame_level_dbfs)

FRAME = 960 * 2  # 20 ms of stereo samples


def sine(amplitude):
    """A 440 Hz frame; past 1.0 it is driven into full scale, as an overdriven input is."""
    t = np.arange(FRAME) / 48000
    return np.clip(amplitude * 32767 * np.sin(2 * np.pi * 440 * t), -32767, 32767).astype(np.int16)


def feed(health, frames, start=0.0):
    """Frames 20 ms apart from `start`; the changes `observe` reported, with their times."""
    changes = []
    for index, pcm in enumerate(frames):
        now = start + index * 0.02
        change = health.observe(now, frame_level_dbfs(pcm), len(pcm), clipped_samples(pcm))
        if change:
            changes.append((round(now, 2), change))
    return changes


def test_levels_of_a_sine_silence_and_full_scale():
    assert abs(frame_level_dbfs(sine(0.5)) - (-9.03)) < 0.1  # -6 dB amplitude, -3 dB for RMS
    assert frame_level_dbfs(np.zeros(FRAME, np.int16)) == SILENT_DBFS
    assert clipped_samples(np.array([32767, -32768, 0, 100], np.int16)) == 2


def test_silence_is_an_alarm_after_its_time_and_ends_with_the_first_sound():
    health = SourceHealth(HealthLimits(silence_dbfs=-60, silence_seconds=10))
    quiet = [sine(0.0001)] * 600  # -89 dBFS for 12 s
    assert feed(health, quiet) == [(10.0, SILENT)]
    assert feed(health, [sine(0.5)], start=12.0) == [(12.0, "playing")]


def test_a_short_pause_is_no_alarm():
    health = SourceHealth(HealthLimits(silence_seconds=10))
    frames = [sine(0.0)] * 450 + [sine(0.5)] + [sine(0.0)] * 450  # 9 s, a blip, 9 s
    assert feed(health, frames) == []


def test_clipping_over_a_tenth_of_a_percent_in_a_second_is_an_alarm_and_ends_after_a_clean_second():
    health = SourceHealth(HealthLimits(clipping_percent=0.1))
    clipped = sine(1.2)
    changes = feed(health, [sine(0.5)] * 10 + [clipped] * 10 + [sine(0.5)] * 150)
    assert changes[0] == (0.2, CLIPPING)
    # The clipped frames (0.2-0.38 s) leave the one-second window at 1.4 s; a clean second later it ends.
    assert changes[1][1] == "playing" and 2.35 <= changes[1][0] <= 2.45 and len(changes) == 2


def test_a_single_full_scale_sample_a_second_is_below_the_threshold():
    health = SourceHealth(HealthLimits(clipping_percent=0.1))
    frame = sine(0.5)
    frame[0] = 32767
    assert feed(health, [frame] + [sine(0.5)] * 49) == []


def test_an_alarm_set_to_zero_is_off():
    health = SourceHealth(HealthLimits(silence_seconds=0, clipping_percent=0))
    assert feed(health, [np.full(FRAME, 32767, np.int16)] * 100 + [np.zeros(FRAME, np.int16)] * 600) == []
