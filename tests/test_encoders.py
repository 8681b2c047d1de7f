"""The per-stream encoders honour the profile: measured on what they produce and on its decoding."""
import numpy as np
import opuslib_next
import pytest

from streams.audio.config import StreamConfig
from streams.audio.encoders import OpusEncoder, create_encoder
from streams.audio.oggopus import packet_samples
from tests import signals
from tests.listener import dominant_frequency
from tests.opus_bitstream import has_lbrr, mode, toc


def opus(**settings):
    return OpusEncoder(StreamConfig(slug="t", source="sine", channels=2, codec="opus", **settings))


def encode_all(encoder, samples, first_pts=0):
    """Encode 20 ms frames of `samples`, stamped on from `first_pts` as a source would."""
    return [packet for i, frame in enumerate(signals.frames(samples))
            for packet in encoder.encode(frame, first_pts + i * frame.shape[0])]


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


@pytest.mark.parametrize("target", [32_000, 64_000, 96_000, 128_000])
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


# At 20 kb/s in voice mode libopus codes music as SILK+CELT hybrid with or without FEC, so the
# SILK header (where LBRR would be flagged) is there to read in every packet.
LOW_RATE_VOICE = dict(opus_bitrate=20_000, opus_application="voip", opus_dtx=False)


@pytest.mark.parametrize("settings", [dict(opus_fec=True, opus_packet_loss_percent=10),
                                      dict(opus_fec=False), dict(opus_fec=True, opus_packet_loss_percent=0)])
def test_lbrr_data_is_there_only_with_fec_and_an_expected_loss(settings):
    packets = encode_all(opus(**LOW_RATE_VOICE, **settings), signals.music_like(3))
    assert {mode(toc(p.payload)[0]) for p in packets} <= {"silk", "hybrid"}
    carrying = sum(has_lbrr(p.payload) for p in packets)
    if settings["opus_fec"] and settings.get("opus_packet_loss_percent"):
        assert carrying > len(packets) // 2
    else:
        assert carrying == 0


def snr_db(reference, other):
    reference, other = reference.astype(np.float64), other.astype(np.float64)
    return 10 * np.log10((reference ** 2).sum() / max(((reference - other) ** 2).sum(), 1e-9))


def decoder_after(packets):
    decoder = opuslib_next.Decoder(48_000, 2)
    for packet in packets:
        decoder.decode(packet.payload, 960)
    return decoder


def losses_recovered(packets, lost):
    """For each lost packet k: (libopus's FEC decoding of it from packet k+1, its loss
    concealment, its own decoding), each as int16 samples from a decoder that had packets < k."""
    decoded = decode(packets).reshape(len(packets), -1)
    results = []
    for k in lost:
        from_fec = decoder_after(packets[:k]).decode(packets[k + 1].payload, 960, decode_fec=True)
        concealed = decoder_after(packets[:k]).decode(b"", 960)
        results.append((np.frombuffer(from_fec, np.int16), np.frombuffer(concealed, np.int16), decoded[k]))
    return results


def test_with_fec_libopus_rebuilds_a_lost_packet_from_the_next_one_better_than_it_conceals_it():
    packets = encode_all(opus(opus_bitrate=64_000, opus_fec=True, opus_packet_loss_percent=10, opus_dtx=False),
                         signals.music_like(3))
    results = losses_recovered(packets, range(20, 140, 10))
    fec = np.median([snr_db(original, from_fec) for from_fec, _, original in results])
    concealment = np.median([snr_db(original, concealed) for _, concealed, original in results])
    assert fec > concealment + 3  # measured: about 5 dB against 0 dB


def test_without_fec_the_next_packet_holds_nothing_to_rebuild_a_lost_one_from():
    packets = encode_all(opus(opus_bitrate=64_000, opus_fec=False, opus_dtx=False), signals.music_like(3))
    for from_fec, concealed, _ in losses_recovered(packets, range(20, 140, 10)):
        assert np.array_equal(from_fec, concealed)  # libopus fell back to concealment


def spectrum_db_above(samples, hz):
    """Energy above `hz` relative to the energy below it, in dB."""
    spectrum = np.abs(np.fft.rfft(samples[:, 0].astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(samples), 1 / 48_000)
    return 10 * np.log10(spectrum[freqs > hz].sum() / spectrum[(freqs > 200) & (freqs < hz)].sum())


def test_max_playback_rate_16k_leaves_nothing_above_8_khz_on_white_noise():
    decoded = decode(encode_all(opus(opus_max_playback_rate=16_000, opus_dtx=False), signals.white_noise(2)))
    # Full band, white noise has more energy above 8 kHz than below (+3 dB, see the test below).
    assert spectrum_db_above(decoded[4800:], 8_000) < -18  # the whole decoder roll-off included
    # 8-8.5 kHz is the decoder's 16 -> 48 kHz resampling filter rolling off; above it, nothing.
    assert spectrum_db_above(decoded[4800:], 8_500) < -30
    assert spectrum_db_above(decoded[4800:], 9_000) < -45


def test_max_playback_rate_48k_keeps_the_highs_of_white_noise():
    decoded = decode(encode_all(opus(opus_max_playback_rate=48_000, opus_dtx=False), signals.white_noise(2)))
    assert spectrum_db_above(decoded[4800:], 8_000) > 0
    assert spectrum_db_above(decoded[4800:], 9_000) > -10


def test_dtx_stops_packets_during_digital_silence_and_resumes_on_the_first_sound_frame():
    encoder = opus(opus_dtx=True)
    encode_all(encoder, signals.tone(1, 440))
    silent = [len(encoder.encode(frame, (50 + i) * 960)) for i, frame in enumerate(signals.frames(signals.silence(4)))]
    sent_per_second = sum(silent[-150:]) / 3  # after DTX has settled
    assert sent_per_second <= 3  # libopus refreshes comfort noise every 400 ms: 2.5 packets/s
    assert len(encoder.encode(signals.frames(signals.tone(0.02, 440))[0], 250 * 960)) == 1


def test_without_dtx_silence_is_sent_as_50_packets_per_second():
    encoder = opus(opus_dtx=False)
    assert len(encode_all(encoder, signals.silence(2))) == 100


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
        "application": opuslib_next.APPLICATION_AUDIO, "bitrate": 64_000, "vbr": 0, "inband_fec": 1, "packet_loss_perc": 15, "dtx": 1,
        "max_bandwidth": opuslib_next.BANDWIDTH_WIDEBAND,
    }


def test_voice_mode_reads_back_and_codes_music_with_silk_where_music_mode_uses_celt():
    settings = dict(opus_bitrate=24_000, opus_fec=False, opus_dtx=False)  # FEC would make both use SILK
    voice, music = opus(opus_application="voip", **settings), opus(opus_application="audio", **settings)
    assert voice.applied_settings()["application"] == opuslib_next.APPLICATION_VOIP
    modes = {name: [mode(toc(p.payload)[0]) for p in encode_all(encoder, signals.music_like(3))]
             for name, encoder in (("voice", voice), ("music", music))}
    assert all(m in ("silk", "hybrid") for m in modes["voice"])
    assert modes["music"].count("celt") > len(modes["music"]) // 2


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


def test_the_opus_encoder_makes_a_10_ms_packet_of_a_10_ms_frame_that_decodes_to_the_tone():
    encoder = opus(opus_dtx=False, frame_ms=10)
    tone = signals.tone(1, 1000)
    packets = [packet for i, frame in enumerate(signals.frames(tone, size=480))
               for packet in encoder.encode(frame, i * 480)]
    assert len(packets) == 100
    assert {packet_samples(p.payload) for p in packets} == {480}  # the TOC says 10 ms
    assert [p.timestamp for p in packets[:3]] == [0, 480, 960]
    decoder = opuslib_next.Decoder(48_000, 2)
    decoded = np.frombuffer(b"".join(decoder.decode(p.payload, 480) for p in packets), dtype=np.int16)
    left = decoded.reshape(-1, 2)[4800:, 0]  # past the codec's start-up
    assert abs(dominant_frequency(left, 48_000) - 1000) <= 2
