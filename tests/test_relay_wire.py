"""The multi-process wire format and the timestamp rules, as pure functions."""
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.audio.config import StreamConfig
from streams.relay import wire

CONFIG = StreamConfig(slug="desk", source="device", channels=2, codec="opus", device_name="PulseAudio: virt.monitor",
                      sine_frequencies=(440.0, 660.0))


def test_a_config_goes_through_json_unchanged_and_keeps_its_key():
    again = wire.config_from_json(wire.config_to_json(CONFIG))
    assert again == CONFIG
    assert wire.stream_key(again) == wire.stream_key(CONFIG)
    assert len(wire.stream_key(CONFIG)) == 16


def test_any_setting_changes_the_key():
    assert wire.stream_key(replace(CONFIG, opus_bitrate=32_000)) != wire.stream_key(CONFIG)
    assert wire.stream_key(replace(CONFIG, channels=1)) != wire.stream_key(CONFIG)


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1), st.binary(max_size=1500))
def test_pack_and_unpack(sequence, pts, payload):
    key = wire.stream_key(CONFIG)
    assert wire.unpack_packet(wire.pack_packet(key, sequence, pts, payload)) == (key, sequence, pts, payload)


@pytest.mark.parametrize("data", [b"", b"\x01short", bytes([9]) + bytes(20)])
def test_what_is_not_a_packet_is_refused(data):
    with pytest.raises(wire.BadPacket):
        wire.unpack_packet(data)


@pytest.mark.parametrize("previous, sequence, gap", [
    (5, 6, 0), (5, 9, 3), (2**32 - 1, 0, 0), (2**32 - 2, 1, 2),
    (5, 5, None),  # repeated
    (1000, 3, None),  # went back: the owner restarted
])
def test_sequence_gap(previous, sequence, gap):
    assert wire.sequence_gap(previous, sequence) == gap


FRAME = 960


def test_restamp_starts_at_zero_and_follows_the_owner_while_it_runs_on():
    assert wire.restamp(None, None, 123_456, 0, FRAME) == (0, True)
    assert wire.restamp(9600, 500_000, 500_960, 960, FRAME) == (10_560, False)
    assert wire.restamp(9600, 500_000, 502_880, 2880, FRAME) == (12_480, True)  # two packets lost: same gap here


def test_restamp_goes_by_the_clock_when_the_owner_restarts_or_was_away():
    # The owner restarted: its pts went back to 0. 3.2 s passed: 160 frames on.
    assert wire.restamp(9600, 500_000, 0, 3.2 * 48_000, FRAME) == (9600 + 160 * FRAME, True)
    # A jump forward of more than a second is not followed either; it came in a burst, so our
    # timeline runs on by one frame, and the packet is still marked: the sound does not run on.
    assert wire.restamp(9600, 500_000, 900_000, 960, FRAME) == (9600 + FRAME, True)
    # Never less than a frame on, even if no time seems to have passed.
    assert wire.restamp(9600, 500_000, 500_000, 0, FRAME) == (9600 + FRAME, True)


def test_the_audio_channel_names_the_database_for_pub_sub_is_one_namespace_per_server():
    import redis.asyncio as aioredis

    key = wire.stream_key(StreamConfig(slug="default", source="sine", channels=2, codec="opus"))
    first, second = (aioredis.from_url(f"redis://127.0.0.1:6379/{n}") for n in (3, 4))
    assert (wire.database_of(first), wire.database_of(second)) == (3, 4)
    assert wire.database_of(aioredis.from_url("redis://127.0.0.1:6379")) == 0
    assert wire.audio_channel(key, 3) == f"rtc:audio:3:{key}" != wire.audio_channel(key, 4)
