"""The latency clicks' pure parts: codes, pairing, per-minute figures, jitter-buffer deltas."""
import numpy as np
import opuslib_next
import pytest

from tests.rigs.clicks import (
    CODE_CYCLE_MS, CODE_TONES_HZ, CODES, DETECTOR_THRESHOLD, FLOOR_RMS, RATE, TONE_AMPLITUDE, Click, Onset,
    click_waveform, decode_code, growth, jitter_buffer, net_of_jitter_buffer, pair, per_minute, samples_in, steady,
)


def with_floor(wave, seed=0):
    return wave + np.random.default_rng(seed).normal(0, FLOOR_RMS, len(wave))


def through_opus(signal, bitrate):
    """Mono float signal -> stereo Opus at `bitrate` -> the left channel, as floats."""
    encoder = opuslib_next.Encoder(RATE, 2, opuslib_next.APPLICATION_AUDIO)
    encoder.bitrate = bitrate
    decoder = opuslib_next.Decoder(RATE, 2)
    pcm = np.repeat((np.clip(signal, -1, 1) * 32767).astype(np.int16)[:, None], 2, axis=1)
    frames = [pcm[i:i + 960] for i in range(0, len(pcm) - 959, 960)]
    decoded = [decoder.decode(encoder.encode(frame.tobytes(), 960), 960) for frame in frames]
    return np.frombuffer(b"".join(decoded), np.int16).reshape(-1, 2)[:, 0] / 32767


def chord(tones):
    t = np.arange(samples_in(100)) / RATE
    wave = TONE_AMPLITUDE * sum((np.sin(2 * np.pi * CODE_TONES_HZ[i] * t) for i in tones), np.zeros(len(t)))
    return with_floor(wave)


def test_every_code_decodes_from_its_own_click_over_the_noise_floor():
    assert len(CODES) == 924
    for code in range(len(CODES)):
        assert decode_code(with_floor(np.pad(click_waveform(code), (0, 480)), seed=code) * 32767, RATE) == code


def test_codes_survive_opus_at_32_kbps_found_where_the_page_finds_the_onset():
    rng = np.random.default_rng(5)
    for code in rng.choice(len(CODES), 20, replace=False):
        signal = with_floor(np.zeros(RATE // 2), seed=int(code))
        at = int(rng.integers(2_000, 10_000))
        signal[at:at + len(click_waveform(code))] += click_waveform(code)
        heard = through_opus(signal, 32_000)
        onset = np.flatnonzero(np.abs(heard) > DETECTOR_THRESHOLD)[0]
        assert decode_code(heard[onset:onset + samples_in(100)], RATE) == code


def test_the_chord_alone_stays_under_the_detectors_threshold():
    chord_part = slice(samples_in(20), None)
    assert max(np.abs(with_floor(click_waveform(code))[chord_part]).max() for code in range(0, 924, 11)) < DETECTOR_THRESHOLD


@pytest.mark.parametrize("tones", [(0, 1, 2, 3, 4), (0, 1, 2, 3, 4, 5, 6), ()])
def test_a_chord_without_exactly_six_clear_tones_is_unreadable_not_another_code(tones):
    assert decode_code(chord(tones), RATE) is None


def test_a_chord_spliced_early_is_still_read_in_its_late_window():
    heard = with_floor(np.pad(click_waveform(500), (0, 480)))
    early = slice(samples_in(42), samples_in(52))
    heard[early] = np.random.default_rng(3).normal(0, 0.2, early.stop - early.start)  # broadband, like a splice
    assert decode_code(heard, RATE) == 500


def test_a_cut_off_capture_is_unreadable():
    assert decode_code(click_waveform(7)[:samples_in(50)], RATE) is None


def test_a_click_decodes_at_a_44_1_khz_page_rate():
    wave = with_floor(np.pad(click_waveform(321), (0, 480)))
    resampled = np.interp(np.arange(0, len(wave), RATE / 44_100), np.arange(len(wave)), wave)
    assert decode_code(resampled, 44_100) == 321


def clicks(*written, first=0):
    return [Click(first + i, (first + i) % len(CODES), w) for i, w in enumerate(written)]


def test_pairing_goes_by_code_even_when_latency_exceeds_the_click_spacing():
    # Latency 1.5 s with a click a second: each onset arrives after the next click was written.
    written = clicks(0, 1000, 2000)
    onsets = [Onset(1500, 0), Onset(2500, 1), Onset(3500, 2)]
    result = pair(written, onsets)
    assert result.latencies() == [1500, 1500, 1500]
    assert not (result.unpaired or result.suspicious or result.stray or result.unreadable)


def test_a_missing_onset_leaves_its_click_unpaired_and_no_neighbour_is_borrowed():
    written = clicks(0, 1000, 2000)
    result = pair(written, [Onset(80, 0), Onset(2080, 2)])
    assert [(c.index, latency) for c, latency in result.paired] == [(0, 80), (2, 80)]
    assert [c.index for c in result.unpaired] == [1]


def test_an_onset_sooner_than_the_physical_floor_is_suspicious_not_a_latency():
    result = pair(clicks(0, 1000), [Onset(10, 0), Onset(1090, 1)])
    assert [(c.index, latency) for c, latency in result.suspicious] == [(0, 10)]
    assert result.latencies() == [90]


def test_an_onset_before_its_click_was_written_is_stray():
    result = pair(clicks(1000), [Onset(900, 0)])
    assert [c.index for c in result.unpaired] == [0]
    assert result.stray == [Onset(900, 0)]


def test_two_onsets_with_one_code_leave_the_click_unpaired_rather_than_guess():
    result = pair(clicks(0), [Onset(80, 0), Onset(95, 0)])
    assert [c.index for c in result.unpaired] == [0]
    assert len(result.stray) == 2


def test_unreadable_onsets_are_counted():
    result = pair(clicks(0), [Onset(80, None), Onset(90, 0)])
    assert result.latencies() == [90] and len(result.unreadable) == 1


def test_a_code_comes_back_only_after_a_full_cycle_and_then_pairs_with_its_own_click():
    first, again = Click(0, 0, 0), Click(len(CODES), 0, CODE_CYCLE_MS)
    result = pair([first, again], [Onset(100, 0), Onset(CODE_CYCLE_MS + 120, 0)])
    assert result.latencies() == [100, 120]


def test_per_minute_gives_median_p95_and_counts_by_click_index():
    written = clicks(*[1000 * i for i in range(6)])
    onsets = [Onset(1000 * i + latency, i) for i, latency in [(0, 100), (1, 110), (2, 120), (3, 200), (4, 5)]]
    minutes = per_minute(pair(written, onsets), clicks_per_minute=3)
    assert [(m.minute, m.clicks, m.paired, m.median_ms, m.p95_ms) for m in minutes] == [(1, 3, 3, 110, 120),
                                                                                      (2, 3, 1, 200, 200)]
    assert (minutes[1].suspicious, minutes[1].unpaired) == (1, 1)


def test_a_minute_with_no_paired_click_still_shows_its_unpaired_clicks():
    written = clicks(0, 1000, 2000, 3000)
    minutes = per_minute(pair(written, [Onset(100, 0), Onset(3100, 3)]), clicks_per_minute=1)
    assert [(m.paired, m.unpaired, m.median_ms) for m in minutes] == [(1, 0, 100), (0, 1, None), (0, 1, None),
                                                                      (1, 0, 100)]


def test_growth_is_the_last_minutes_median_minus_the_firsts():
    written = clicks(*[1000 * i for i in range(4)])
    onsets = [Onset(1000 * i + latency, i) for i, latency in enumerate([100, 100, 130, 130])]
    assert growth(per_minute(pair(written, onsets), clicks_per_minute=2)) == 30
    assert growth(per_minute(pair(written[:2], onsets[:2]), clicks_per_minute=2)) is None


def test_jitter_buffer_figures_are_over_the_span_not_since_the_start():
    before = {"jitterBufferDelay": 100.0, "jitterBufferTargetDelay": 50.0, "jitterBufferEmittedCount": 1_000_000,
              "concealedSamples": 0, "totalSamplesReceived": 1_000_000}
    after = {"jitterBufferDelay": 100.0 + 0.04 * 480_000, "jitterBufferTargetDelay": 50.0 + 0.02 * 480_000,
             "jitterBufferEmittedCount": 1_480_000, "concealedSamples": 4_800, "totalSamplesReceived": 1_480_000}
    figures = jitter_buffer(before, after)
    assert figures["delay_ms"] == pytest.approx(40)
    assert figures["target_ms"] == pytest.approx(20)
    assert figures["concealed_pct"] == pytest.approx(1)
    assert jitter_buffer(None, after)["delay_ms"] is None


def buffer(*delays, target=20):
    return [{"delay_ms": delay, "target_ms": target} for delay in delays]


def test_a_draining_jitter_buffer_has_not_settled_and_a_level_one_has():
    assert not steady(buffer(465, 445, 425, 405))
    assert steady(buffer(465, 445, 31, 29, 33))
    assert not steady(buffer(None, 30, 31))
    assert not steady(buffer(30, 31))


def test_a_jitter_buffer_still_filling_up_to_its_target_has_not_settled():
    assert not steady(buffer(100, 102, 104, target=400))
    assert steady(buffer(398, 401, 400, target=400))


def stats(delay_s, emitted):
    return {"jitterBufferDelay": delay_s, "jitterBufferTargetDelay": 0, "jitterBufferEmittedCount": emitted,
            "concealedSamples": 0, "totalSamplesReceived": emitted}


def test_net_of_jitter_buffer_takes_off_the_buffer_of_the_second_that_holds_the_onset():
    # 30 ms of buffer in the first second, 60 ms in the second: each sample emitted waited that long.
    readings = [(0, stats(0, 0)), (1000, stats(0.03 * 48_000, 48_000)), (2000, stats(0.03 * 48_000 + 0.06 * 48_000, 96_000))]
    written = clicks(0, 900, 1990)
    paired = [(written[0], 80), (written[1], 1090), (written[2], 80)]  # onsets at 80, 1990 and 2070 ms
    assert [(c.index, round(net)) for c, net in net_of_jitter_buffer(paired, readings)] == [(0, 50), (1, 1030)]


def test_per_minute_can_summarise_other_values_than_the_latencies():
    written = clicks(0, 1000)
    result = pair(written, [Onset(100, 0), Onset(1100, 1)])
    minutes = per_minute(result, clicks_per_minute=2, values=[(written[0], 40), (written[1], 60)])
    assert (minutes[0].median_ms, minutes[0].paired) == (50, 2)
