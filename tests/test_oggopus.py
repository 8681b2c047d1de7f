"""Ogg Opus muxing (streams/audio/oggopus.py): the pure parts directly, then whole streams of
real Opus packets checked by other implementations (FFmpeg, libogg through opusinfo)."""
import struct
import subprocess

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.audio import oggopus
from streams.audio.config import StreamConfig
from streams.audio.encoders import OpusEncoder
from tests.listener import dominant_frequency


def bitwise_crc(data):
    """RFC 3533's checksum the slow way: polynomial 0x04C11DB7, MSB first, initial 0, no final XOR."""
    crc = 0
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) & 0xFFFFFFFF if crc & 0x80000000 else (crc << 1) & 0xFFFFFFFF
    return crc


@given(st.binary(max_size=2000))
def test_crc_matches_the_bitwise_definition(data):
    assert oggopus.crc32(data) == bitwise_crc(data)


def test_crc_reproduces_the_checksums_of_pages_ffmpeg_and_opusenc_wrote(tmp_path):
    ffmpeg_file, opusenc_file, wav = tmp_path / "ffmpeg.ogg", tmp_path / "opusenc.opus", tmp_path / "tone.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=2", "-ac", "2",
                    "-c:a", "libopus", "-f", "ogg", str(ffmpeg_file)], check=True)
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=660:duration=2", str(wav)], check=True)
    subprocess.run(["opusenc", "--quiet", str(wav), str(opusenc_file)], check=True)
    for path in (ffmpeg_file, opusenc_file):
        pages, rest = oggopus.read_pages(path.read_bytes())
        assert len(pages) >= 3 and rest == b""
        assert all(page.crc_ok for page in pages)


def test_opus_head_has_rfc_7845_layout():
    head = oggopus.opus_head(2)
    assert len(head) == 19
    assert head[:8] == b"OpusHead"
    version, channels, pre_skip, rate, gain, family = struct.unpack("<BBHIhB", head[8:])
    assert (version, channels, pre_skip, rate, gain, family) == (1, 2, 3840, 48_000, 0, 0)
    with pytest.raises(ValueError):
        oggopus.opus_head(3)  # family 0 is mono or stereo


def test_opus_tags_carry_the_vendor_and_comments():
    tags = oggopus.opus_tags(["TITLE=Größe"], vendor="V")
    assert tags == b"OpusTags" + struct.pack("<I", 1) + b"V" + struct.pack("<I", 1) + struct.pack("<I", 13) + "TITLE=Größe".encode()


@pytest.mark.parametrize("length, table", [(0, b"\x00"), (1, b"\x01"), (254, b"\xfe"), (255, b"\xff\x00"),
                                           (256, b"\xff\x01"), (510, b"\xff\xff\x00")])
def test_lacing_ends_each_packet_with_a_value_below_255(length, table):
    assert oggopus.lacing(length) == table


@pytest.mark.parametrize("packet, samples", [
    (bytes([31 << 3]), 960),  # CELT fullband 20 ms, one frame
    (bytes([31 << 3 | 4]), 960),  # stereo
    (bytes([31 << 3 | 1]), 1920),  # two frames
    (bytes([31 << 3 | 3, 3]), 2880),  # code 3: three frames
    (bytes([1 << 3]), 960),  # SILK narrowband 20 ms
    (bytes([3 << 3]), 2880),  # SILK 60 ms
    (bytes([13 << 3]), 960),  # hybrid 20 ms
    (bytes([16 << 3]), 120),  # CELT 2.5 ms
])
def test_packet_duration_comes_from_the_toc_byte(packet, samples):
    assert oggopus.packet_samples(packet) == samples


def celt_packet(size=100, stereo=True):
    return bytes([31 << 3 | (4 if stereo else 0)]) + bytes(size - 1)


def test_each_listener_stream_starts_with_its_own_header_pages():
    muxer = oggopus.OggOpusMuxer(0xDEADBEEF, 2, ["TITLE=x"])
    pages, rest = oggopus.read_pages(muxer.headers() + muxer.audio([(123_456, celt_packet())]))
    assert rest == b""
    assert [(p.sequence, p.serial, p.granule, p.flags) for p in pages] == [
        (0, 0xDEADBEEF, 0, oggopus.FLAG_BOS), (1, 0xDEADBEEF, 0, 0), (2, 0xDEADBEEF, 960, 0)]
    assert pages[0].packets == (oggopus.opus_head(2),)
    assert pages[1].packets == (oggopus.opus_tags(["TITLE=x"]),)
    assert all(page.crc_ok for page in pages)


def test_granule_positions_count_the_48_khz_samples_sent():
    muxer = oggopus.OggOpusMuxer(1, 2)
    muxer.headers()
    data = b"".join(muxer.audio([(pts, celt_packet(50 + pts % 7))]) for pts in range(10_000, 10_000 + 960 * 50, 960))
    pages, _ = oggopus.read_pages(data)
    assert [page.granule for page in pages] == [960 * n for n in range(1, 51)]
    assert [page.sequence for page in pages] == list(range(2, 52))


def test_a_dtx_gap_is_filled_with_concealment_packets():
    muxer = oggopus.OggOpusMuxer(1, 2)
    first, after_gap = celt_packet(), celt_packet(80)
    data = muxer.audio([(0, first)]) + muxer.audio([(960 * 5, after_gap)])  # 4 frames left out
    pages, _ = oggopus.read_pages(data)
    assert pages[1].packets == (bytes([31 << 3 | 4]),) * 4 + (after_gap,)
    assert pages[1].granule == 960 * 6
    assert muxer.concealed == 4


def test_a_gap_over_a_second_is_not_filled():
    muxer = oggopus.OggOpusMuxer(1, 2)
    data = muxer.audio([(0, celt_packet())]) + muxer.audio([(960 * 200, celt_packet())])
    pages, _ = oggopus.read_pages(data)
    assert [len(page.packets) for page in pages] == [1, 1]
    assert pages[1].granule == 1920 and muxer.skipped_samples == 960 * 199


def test_end_marks_the_last_page_end_of_stream():
    muxer = oggopus.OggOpusMuxer(1, 2)
    pages, _ = oggopus.read_pages(muxer.headers() + muxer.audio([(0, celt_packet())]) + muxer.end())
    assert pages[-1].flags == oggopus.FLAG_EOS and pages[-1].granule == 1920
    assert [page.flags & oggopus.FLAG_EOS for page in pages[:-1]] == [0, 0, 0]


def test_packets_beyond_255_segments_go_on_the_next_page():
    muxer = oggopus.OggOpusMuxer(1, 2)
    packets = [(960 * n, celt_packet(600)) for n in range(100)]  # 3 segments each
    pages, _ = oggopus.read_pages(muxer.audio(packets))
    assert [len(page.packets) for page in pages] == [85, 15]
    assert [page.granule for page in pages] == [960 * 85, 960 * 100]


def stereo_tone_packets(seconds, left_hz=440, right_hz=660, **opus):
    """Real Opus packets of a 440 Hz left / 660 Hz right tone from the project's encoder."""
    encoder = OpusEncoder(StreamConfig(slug="t", source="sine", channels=2, codec="opus", **opus))
    t = np.arange(int(seconds * 48_000)) / 48_000
    pcm = (np.stack([np.sin(2 * np.pi * left_hz * t), np.sin(2 * np.pi * right_hz * t)], axis=1) * 12_000).astype(np.int16)
    return [(p.timestamp, p.payload) for start in range(0, len(pcm), 960)
            for p in encoder.encode(pcm[start:start + 960], start)]


def decode_with_ffmpeg(path):
    pcm = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "s16le", "-ac", "2", "-ar", "48000", "-"],
                         check=True, capture_output=True).stdout
    return np.frombuffer(pcm, dtype=np.int16).reshape(-1, 2)


def test_ffmpeg_decodes_a_muxed_stream_to_the_tones_in_each_channel(tmp_path):
    muxer = oggopus.OggOpusMuxer(7, 2)
    path = tmp_path / "tone.ogg"
    path.write_bytes(muxer.headers() + b"".join(muxer.audio([p]) for p in stereo_tone_packets(3)) + muxer.end())
    samples = decode_with_ffmpeg(path)
    assert len(samples) == pytest.approx(3 * 48_000 - oggopus.PRE_SKIP + 960, abs=960)
    assert dominant_frequency(samples[4800:, 0], 48_000) == pytest.approx(440, abs=2)
    assert dominant_frequency(samples[4800:, 1], 48_000) == pytest.approx(660, abs=2)


def test_opusinfo_finds_nothing_wrong_with_a_muxed_stream_with_dtx_gaps(tmp_path):
    packets = stereo_tone_packets(2)
    del packets[20:23], packets[60:62]  # as DTX leaves frames out
    muxer = oggopus.OggOpusMuxer(9, 2, ["TITLE=Tone"])
    path = tmp_path / "gaps.opus"
    path.write_bytes(muxer.headers() + b"".join(muxer.audio([p]) for p in packets) + muxer.end())
    report = subprocess.run(["opusinfo", str(path)], capture_output=True, text=True, check=True)
    text = report.stdout + report.stderr
    assert "WARNING" not in text and "ERROR" not in text, text
    assert "Playback length: 0m:01.9" in text  # 2 s of packets and fillers, less the 80 ms pre-skip, plus the end's frame
    assert muxer.concealed == 5
