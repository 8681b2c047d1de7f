"""aiortc keeps no packet history for our audio senders (see streams/webrtc/rtphistory.py)."""
import aiortc.rtcrtpsender
from aiortc.codecs import CODECS

from streams.webrtc import rtphistory


def test_installed_by_the_app():
    assert aiortc.rtcrtpsender.RTP_HISTORY_SIZE == rtphistory.AUDIO_RTP_HISTORY == 1


def test_audio_codecs_negotiate_no_nack_so_nothing_is_ever_retransmitted():
    """The reason the history may go: no audio codec of aiortc offers NACK feedback."""
    assert CODECS["audio"]
    for codec in CODECS["audio"]:
        assert not [fb for fb in codec.rtcpFeedback if fb.type == "nack"], codec.mimeType
