"""The per-stream encoders honour the profile: measured on what they produce and on its decoding."""
import numpy as np
import opuslib_next
import pytest

from streams.audio.config import StreamConfig
from streams.audio.encoders import OpusEncoder, create_encoder
from tests import signals
from tests.opus_bitstream import has_lbrr


def opus(**settings):
    return OpusEncoder(StreamConfig(slug="t", source="sine", channels=2, codec="opus", **settings))


def encode_all(encoder, samples):
    return [packet for frame in signals.frames(samples) for packet in encoder.encode(frame)]


def bitrate(packets, seconds):
    return sum(len(p.payload) for p in packets) * 8 / seconds


def decode(packets, channels=2):
    decoder = opuslib_next.Decoder(48_000, channels)
    pcm = b"".join(decoder.decode(p.payload, 960) for p in packets)
    return np.frombuffer(pcm, dtype=np.int16).reshape(-1, channels)


@pytest.mark.parametrize("target", [32_000, 64_000, 96_000, 128_000])
def test_vbr_bitrate_on_music_is_within_15_percent(target):
    packets = encode_all(opus(opus_bitrate=target, opus_dtx=False), signals.music_like(5))
    assert bitrate(packets, 5) == pytest.approx(target, rel=0.15)


@pytest.mark.parametrize("target", [32_000, 96_000])
def test_cbr_bitrate_is_within_5_percent_with_every_packet_the_same_size(target):
    packets = encode_all(opus(opus_bitrate=target, opus_cbr=True, opus_dtx=False), signals.tone(3, 440))
    assert bitrate(packets, 3) == pytest.approx(target, rel=0.05)
    assert len({len(p.payload) for p in packets}) == 1


def test_vbr_packets_vary_in_size_on_music():
    packets = encode_all(opus(opus_bitrate=96_000, opus_dtx=False), signals.music_like(3))
    assert len({len(p.payload) for p in packets}) > 10


def test_fec_with_packet_loss_puts_lbrr_data_in_the_packets():
    packets = encode_all(opus(opus_bitrate=64_000, opus_fec=True, opus_packet_loss_percent=10), signals.music_like(3))
    assert sum(has_lbrr(p.payload) for p in packets) > len(packets) // 2


@pytest.mark.parametrize("settings", [dict(opus_fec=False), dict(opus_fec=True, opus_packet_loss_percent=0)])
def test_without_fec_or_without_expected_loss_no_packet_carries_lbrr(settings):
    packets = encode_all(opus(opus_bitrate=64_000, **settings), signals.music_like(3))
    assert not any(has_lbrr(p.payload) for p in packets)


def spectrum_db_above(samples, hz):
    """Energy above `hz` relative to the energy below it, in dB."""
    spectrum = np.abs(np.fft.rfft(samples[:, 0].astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(samples), 1 / 48_000)
    return 10 * np.log10(spectrum[freqs > hz].sum() / spectrum[(freqs > 200) & (freqs < hz)].sum())


def test_max_playback_rate_16k_leaves_nothing_above_8_khz_on_white_noise():
    decoded = decode(encode_all(opus(opus_max_playback_rate=16_000, opus_dtx=False), signals.white_noise(2)))
    # 8-9 kHz is the decoder's 16 -> 48 kHz resampling filter rolling off; above it, nothing.
    assert spectrum_db_above(decoded[4800:], 9_000) < -45


def test_max_playback_rate_48k_keeps_the_highs_of_white_noise():
    decoded = decode(encode_all(opus(opus_max_playback_rate=48_000, opus_dtx=False), signals.white_noise(2)))
    assert spectrum_db_above(decoded[4800:], 9_000) > -10


def test_dtx_stops_packets_during_digital_silence_and_resumes_on_the_first_sound_frame():
    encoder = opus(opus_dtx=True)
    encode_all(encoder, signals.tone(1, 440))
    silent = [len(encoder.encode(frame)) for frame in signals.frames(signals.silence(4))]
    sent_per_second = sum(silent[-150:]) / 3  # after DTX has settled
    assert sent_per_second <= 3  # libopus refreshes comfort noise every 400 ms: 2.5 packets/s
    assert len(encoder.encode(signals.frames(signals.tone(0.02, 440))[0])) == 1


def test_without_dtx_silence_is_sent_as_50_packets_per_second():
    encoder = opus(opus_dtx=False)
    assert sum(len(encoder.encode(f)) for f in signals.frames(signals.silence(2))) == 100


def test_dtx_keeps_the_rtp_clock_running_across_silence():
    encoder = opus(opus_dtx=True)
    packets = encode_all(encoder, np.concatenate([signals.tone(1, 440), signals.silence(2), signals.tone(1, 440)]))
    assert all(b.timestamp - a.timestamp >= 960 for a, b in zip(packets, packets[1:]))
    assert packets[-1].timestamp == (200 - 1) * 960


def test_the_encoder_reports_the_settings_it_applies():
    applied = opus(
        opus_bitrate=64_000, opus_cbr=True, opus_fec=True, opus_packet_loss_percent=15, opus_dtx=True,
        opus_max_playback_rate=16_000,
    ).applied_settings()
    assert applied == {
        "bitrate": 64_000, "vbr": 0, "inband_fec": 1, "packet_loss_perc": 15, "dtx": 1,
        "max_bandwidth": opuslib_next.BANDWIDTH_WIDEBAND,
    }


def test_a_mono_variant_encodes_a_stereo_source_as_one_channel():
    encoder = OpusEncoder(StreamConfig(slug="t", source="sine", channels=1, codec="opus", opus_dtx=False))
    packets = encode_all(encoder, signals.tone(1, 440))
    assert all(not p.payload[0] & 0x04 for p in packets)  # TOC stereo bit clear


@pytest.mark.parametrize("codec, bytes_per_packet", [("pcmu", 160), ("pcma", 160), ("g722", 160)])
def test_g711_and_g722_make_one_20_ms_packet_per_frame(codec, bytes_per_packet):
    encoder = create_encoder(StreamConfig(slug="t", source="sine", channels=1, codec=codec))
    packets = encode_all(encoder, signals.tone(1, 440, channels=1))
    assert len(packets) >= 48 and {len(p.payload) for p in packets} == {bytes_per_packet}
    assert [p.timestamp for p in packets[:3]] == [0, 160, 320]
