"""StreamProfile.clean(): each rule rejects what it should and accepts what it should."""
import pytest
from django.core.exceptions import ValidationError

from streams.audio.config import StreamConfig
from streams.models import StreamProfile


def profile(**fields):
    defaults = {"name": "Hall", "slug": "hall"}
    return StreamProfile(**{**defaults, **fields})


def errors_of(candidate):
    try:
        candidate.full_clean(validate_unique=False, validate_constraints=False)
    except ValidationError as error:
        return error.message_dict
    return {}


def test_the_defaults_are_the_prototypes_and_valid():
    p = profile()
    assert (p.source, p.sine_frequency, p.channels, p.sample_rate) == ("sine", 440, 2, 48000)
    assert (p.codec, p.audio_bitrate, p.opus_max_playback_rate) == ("opus", 96000, 48000)
    assert (p.opus_cbr, p.opus_inband_fec, p.opus_dtx) == (False, True, True)
    assert errors_of(p) == {}


@pytest.mark.parametrize("bitrate", [5_999, 510_001])
def test_it_rejects_an_opus_bitrate_outside_6_to_510_kbps(bitrate):
    assert "6–510 kb/s" in errors_of(profile(audio_bitrate=bitrate))["audio_bitrate"][0]
    assert "6–510 kb/s" in errors_of(profile(opus_max_average_bitrate=bitrate))["opus_max_average_bitrate"][0]


@pytest.mark.parametrize("bitrate", [6_000, 510_000])
def test_it_accepts_opus_bitrates_at_the_limits(bitrate):
    assert errors_of(profile(audio_bitrate=bitrate, opus_max_average_bitrate=bitrate)) == {}


@pytest.mark.parametrize("codec", ["pcmu", "pcma", "g722"])
def test_it_rejects_stereo_with_a_mono_codec(codec):
    message = errors_of(profile(codec=codec, channels=2, audio_bitrate=64000))["channels"][0]
    assert "mono only" in message


@pytest.mark.parametrize("codec", ["pcmu", "pcma", "g722"])
def test_it_accepts_mono_g711_and_g722_at_64_kbps(codec):
    assert errors_of(profile(codec=codec, channels=1, audio_bitrate=64000)) == {}


def test_it_rejects_a_b_as_below_what_g711_sends():
    assert "64,000" in errors_of(profile(codec="pcmu", channels=1, audio_bitrate=32000))["audio_bitrate"][0]


@pytest.mark.parametrize(
    "field, value",
    [
        ("opus_max_average_bitrate", 32000),
        ("opus_max_playback_rate", 16000),
        ("opus_cbr", True),
        ("opus_inband_fec", False),
        ("opus_dtx", False),
        ("opus_packet_loss_percent", 0),
        ("opus_application", "voip"),
        ("opus_frame_ms", 10),
    ],
)
def test_it_rejects_opus_settings_changed_on_a_g711_profile(field, value):
    errors = errors_of(profile(codec="pcma", channels=1, audio_bitrate=64000, **{field: value}))
    assert list(errors) == [field]
    assert "Opus setting" in errors[field][0]


def test_it_rejects_a_device_source_without_a_device():
    assert "needs a device" in errors_of(profile(source="device"))["device_name"][0]
    assert errors_of(profile(source="device", device_name="PulseAudio: virt.monitor")) == {}


@pytest.mark.parametrize("frequency, ok", [(19, False), (20, True), (20_000, True), (20_001, False)])
def test_sine_frequency_is_20_to_20000_hz(frequency, ok):
    assert ("sine_frequency" not in errors_of(profile(sine_frequency=frequency))) is ok


def test_answer_fmtp_carries_the_profile_and_none_for_g711():
    fmtp = profile(channels=1, audio_bitrate=64000, opus_cbr=True).answer_fmtp()
    assert fmtp["maxaveragebitrate"] == "64000" and fmtp["cbr"] == "1" and fmtp["stereo"] == "0"
    assert profile(opus_max_average_bitrate=48000).answer_fmtp()["maxaveragebitrate"] == "48000"
    assert profile(codec="pcmu", channels=1).answer_fmtp() == {}


def test_stream_config_is_a_hashable_snapshot():
    config = profile(sine_frequency_right=660).stream_config()
    assert isinstance(config, StreamConfig)
    assert config.sine_frequencies == (440.0, 660.0)
    assert hash(config) == hash(profile(sine_frequency_right=660).stream_config())
    assert profile(channels=1).stream_config().sine_frequencies == (440.0,)


def test_an_opus_profile_may_send_10_ms_frames_and_other_codecs_only_20():
    assert errors_of(profile(opus_frame_ms=10)) == {}
    config = profile(opus_frame_ms=10).stream_config()
    assert (config.frame_ms, config.frame_samples) == (10, 480)
    assert profile().stream_config().frame_samples == 960
    assert config != profile().stream_config()  # a hub of its own
    with pytest.raises(ValueError, match="pcmu frames are 20 ms, not 10"):
        StreamConfig(slug="t", source="sine", channels=1, codec="pcmu", frame_ms=10)
    with pytest.raises(ValueError, match="opus frames are 10 or 20 ms, not 40"):
        StreamConfig(slug="t", source="sine", channels=1, codec="opus", frame_ms=40)
