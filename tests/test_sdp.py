"""sdp.py on real SDP: an answer made by aiortc and an offer made by Chromium 156."""
from pathlib import Path

import pytest

from streams.webrtc import sdp

DATA = Path(__file__).parent / "data"
AIORTC_ANSWER = (DATA / "aiortc_answer.sdp").read_text()
CHROMIUM_OFFER = (DATA / "chromium_offer.sdp").read_text()
AIORTC_OFFER = (DATA / "aiortc_offer.sdp").read_text()

PROFILE_FMTP = sdp.opus_fmtp_params(
    channels=2, max_average_bitrate=64000, max_playback_rate=24000, cbr=True, fec=True, dtx=False
)


def audio_lines(text):
    _, sections = sdp._split(text)
    return sections[0]


def test_opus_fmtp_params_describe_a_stereo_profile():
    assert PROFILE_FMTP == {
        "maxaveragebitrate": "64000",
        "maxplaybackrate": "24000",
        "cbr": "1",
        "useinbandfec": "1",
        "usedtx": "0",
        "stereo": "1",
        "sprop-stereo": "1",
    }


def test_opus_fmtp_params_say_mono_for_one_channel():
    params = sdp.opus_fmtp_params(channels=1, max_average_bitrate=32000, max_playback_rate=48000, cbr=False, fec=False, dtx=True)
    assert (params["stereo"], params["sprop-stereo"], params["usedtx"], params["useinbandfec"]) == ("0", "0", "1", "0")


def test_parse_and_format_fmtp_round_trip():
    assert sdp.parse_fmtp("minptime=10; useinbandfec=1") == {"minptime": "10", "useinbandfec": "1"}
    assert sdp.format_fmtp({"minptime": "10", "useinbandfec": "1"}) == "minptime=10;useinbandfec=1"


def test_it_adds_an_opus_fmtp_line_after_the_rtpmap_in_an_aiortc_answer():
    edited = sdp.set_codec_fmtp(AIORTC_ANSWER, "opus", PROFILE_FMTP)
    lines = audio_lines(edited)
    rtpmap = lines.index("a=rtpmap:96 opus/48000/2")
    assert lines[rtpmap + 1] == "a=fmtp:96 " + sdp.format_fmtp(PROFILE_FMTP)
    assert sdp.codec_fmtp(edited, "opus") == PROFILE_FMTP


def test_it_merges_into_an_existing_fmtp_line_keeping_other_parameters():
    edited = sdp.set_codec_fmtp(CHROMIUM_OFFER, "opus", {"stereo": "1", "useinbandfec": "0"})
    assert sdp.codec_fmtp(edited, "opus") == {"minptime": "10", "useinbandfec": "0", "stereo": "1"}
    assert edited.count("a=fmtp:111 ") == 1


def test_it_leaves_other_codecs_fmtp_alone():
    edited = sdp.set_codec_fmtp(CHROMIUM_OFFER, "opus", {"stereo": "1"})
    assert "a=fmtp:63 111/111" in edited


def test_codec_fmtp_is_none_for_an_absent_codec_and_empty_without_a_line():
    assert sdp.codec_fmtp(AIORTC_ANSWER, "iLBC") is None
    assert sdp.codec_fmtp(AIORTC_ANSWER, "PCMU") == {}


def test_it_puts_b_as_after_the_connection_line():
    lines = audio_lines(sdp.set_audio_bandwidth(AIORTC_ANSWER, 96))
    assert lines[lines.index("c=IN IP4 127.0.0.1") + 1] == "b=AS:96"


def test_it_replaces_an_existing_b_as_line():
    twice = sdp.set_audio_bandwidth(sdp.set_audio_bandwidth(CHROMIUM_OFFER, 96), 32)
    assert [line for line in audio_lines(twice) if line.startswith("b=")] == ["b=AS:32"]


def test_edits_keep_crlf_line_endings_and_the_rest_of_the_sdp():
    edited = sdp.set_audio_bandwidth(sdp.set_codec_fmtp(AIORTC_ANSWER, "opus", PROFILE_FMTP), 64)
    assert edited.endswith("\r\n") and "\n" not in edited.replace("\r\n", "")
    original = set(AIORTC_ANSWER.replace("\r\n", "\n").splitlines())
    assert original <= set(edited.split("\r\n"))


def test_missing_transport_attributes():
    assert sdp.missing_transport_attributes(CHROMIUM_OFFER) == []
    assert sdp.missing_transport_attributes(AIORTC_OFFER) == []
    no_fingerprint = "\n".join(line for line in CHROMIUM_OFFER.splitlines() if not line.startswith("a=fingerprint"))
    assert sdp.missing_transport_attributes(no_fingerprint) == ["fingerprint"]
    at_session_level = "v=0\r\ns=-\r\nt=0 0\r\na=fingerprint:sha-256 AB\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=ice-ufrag:u\r\na=ice-pwd:p\r\n"
    assert sdp.missing_transport_attributes(at_session_level) == []
    assert sdp.missing_transport_attributes("not sdp at all") == ["ice-ufrag", "ice-pwd", "fingerprint"]


def test_has_audio_section():
    assert sdp.has_audio_section(CHROMIUM_OFFER)
    assert not sdp.has_audio_section("v=0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n")
    assert not sdp.has_audio_section("v=0\r\ns=-\r\nt=0 0\r\nm=audio 0 UDP/TLS/RTP/SAVPF 111\r\n")
    assert not sdp.has_audio_section("not sdp at all")


def test_keep_candidates_drops_chromium_interface_candidates_when_only_loopback_is_allowed():
    assert "192.0.2.2" in CHROMIUM_OFFER
    kept = sdp.keep_candidates(CHROMIUM_OFFER, ["127.0.0.1"])
    assert not [line for line in kept.split("\r\n") if line.startswith("a=candidate:")]
    assert "a=ice-ufrag:squK" in kept


def test_keep_candidates_keeps_allowed_addresses_and_drops_mdns_names():
    offer = (
        "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
        "a=candidate:1 1 udp 2113937151 127.0.0.1 5000 typ host\r\n"
        "a=candidate:2 1 udp 2113937151 0b5c1f1e-1111.local 5001 typ host\r\n"
        "a=candidate:3 1 udp 2113937151 ::1 5002 typ host\r\n"
    )
    kept = sdp.keep_candidates(offer, ["127.0.0.1", "::1"])
    assert [sdp.candidate_address(line) for line in kept.split("\r\n") if line.startswith("a=candidate:")] == [
        "127.0.0.1",
        "::1",
    ]


@pytest.mark.parametrize(
    "addresses, expected",
    [([], False), (["127.0.0.1"], True), (["127.0.0.2", "::1"], True), (["127.0.0.1", "192.0.2.2"], False)],
)
def test_only_loopback(addresses, expected):
    assert sdp.only_loopback(addresses) is expected


@pytest.mark.parametrize("value, expected", [("32000", 32000), ("²", None), ("٣٢٠٠٠", None), ("9" * 5000, None),
                                             ("0", None), ("-5", None), ("4294967295", 4294967295)])
def test_opus_receiver_limits_take_plain_ascii_numbers_of_sane_length_only(value, expected):
    offer = sdp.set_codec_fmtp(CHROMIUM_OFFER, "opus", {"maxaveragebitrate": value})
    assert sdp.opus_receiver_limits(offer)["max_average_bitrate"] == expected


def test_limit_candidates_keeps_the_first_ones_only():
    lines = "".join(f"a=candidate:{i} 1 udp 1 127.0.0.1 {10000 + i} typ host\r\n" for i in range(50))
    offer = "\r\n".join(l for l in AIORTC_OFFER.splitlines() if not l.startswith("a=candidate:")) + "\r\n" + lines
    limited = sdp.limit_candidates(offer, 20)
    kept = [line for line in limited.split("\r\n") if line.startswith("a=candidate:")]
    assert len(kept) == 20 and kept[0].startswith("a=candidate:0 ") and kept[-1].startswith("a=candidate:19 ")
    assert sdp.media_section_count(limited) == sdp.media_section_count(offer) == 1


def test_dtls_setup_reads_the_offers_role_from_chromium_and_aiortc_sdp():
    assert sdp.dtls_setup(CHROMIUM_OFFER) == "actpass"
    assert sdp.dtls_setup(AIORTC_OFFER) == "actpass"
    assert sdp.dtls_setup(AIORTC_ANSWER) == "active"


@pytest.mark.parametrize("text, expected", [
    ("v=0\r\na=setup:passive\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n", "passive"),  # session level
    ("v=0\r\na=setup:passive\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=setup:active\r\n", "active"),  # media wins
    ("v=0\r\nm=audio 0 UDP/TLS/RTP/SAVPF 111\r\na=setup:active\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\n", None),
    ("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n", None),
])
def test_dtls_setup_takes_the_live_audio_section_then_the_session(text, expected):
    assert sdp.dtls_setup(text) == expected


def test_the_answers_payload_type_for_a_codec_is_read_from_its_audio_section():
    assert sdp.audio_payload_type(AIORTC_ANSWER, "opus") == 96
    assert sdp.audio_payload_type(AIORTC_ANSWER, "PCMU") == 0
    assert sdp.audio_payload_type(AIORTC_ANSWER, "iLBC") is None
    assert sdp.audio_payload_type("v=0\r\n", "opus") is None
