"""One encoder per stream: 20 ms of int16 PCM in, RTP-ready payloads out.

`encode(pcm, pts)` stamps what it makes with the frame's pts (48 kHz samples on the
stream's one clock, see sources.py) converted to the codec's RTP clock, so a frame that DTX
leaves out, or a jump in the source's timeline, moves the timestamps on exactly. It returns
a list of EncodedPacket (usually one, none when the frame is suppressed or the resampler
is still filling).
"""
import collections
import fractions
from dataclasses import dataclass

import av
import numpy as np
import opuslib_next

from .config import FRAME_SAMPLES, SAMPLE_RATE

# Max playback rate (RFC 7587 maxplaybackrate) -> the encoder's bandwidth cutoff.
OPUS_BANDWIDTH_FOR_PLAYBACK_RATE = {
    8_000: opuslib_next.BANDWIDTH_NARROWBAND,
    12_000: opuslib_next.BANDWIDTH_MEDIUMBAND,
    16_000: opuslib_next.BANDWIDTH_WIDEBAND,
    24_000: opuslib_next.BANDWIDTH_SUPERWIDEBAND,
    48_000: opuslib_next.BANDWIDTH_FULLBAND,
}
OPUS_APPLICATIONS = {"audio": opuslib_next.APPLICATION_AUDIO, "voip": opuslib_next.APPLICATION_VOIP}
# With DTX on, libopus returns a 1-2 byte packet for a silent frame; such packets are not sent.
OPUS_DTX_MAX_BYTES = 2


def match_channels(pcm, channels):
    """(n, c) int16 -> (n, channels): average to mono, or duplicate mono to stereo."""
    if pcm.shape[1] == channels:
        return pcm
    if channels == 1:
        return (pcm.astype(np.int32).sum(axis=1, keepdims=True) // pcm.shape[1]).astype(np.int16)
    return np.repeat(pcm[:, :1], channels, axis=1)


@dataclass(frozen=True)
class EncodedPacket:
    payload: bytes
    timestamp: int  # in the codec's RTP clock


class OpusEncoder:
    clock_rate = SAMPLE_RATE

    def __init__(self, config):
        self.channels = config.channels
        self._encoder = opuslib_next.Encoder(SAMPLE_RATE, config.channels, OPUS_APPLICATIONS[config.opus_application])
        self._encoder.bitrate = config.opus_bitrate
        self._encoder.vbr = 0 if config.opus_cbr else 1
        self._encoder.inband_fec = 1 if config.opus_fec else 0
        self._encoder.packet_loss_perc = config.opus_packet_loss_percent
        self._encoder.dtx = 1 if config.opus_dtx else 0
        self._encoder.max_bandwidth = OPUS_BANDWIDTH_FOR_PLAYBACK_RATE[config.opus_max_playback_rate]

    def applied_settings(self):
        """What libopus reports it is doing: read back, not assumed."""
        return {
            "application": self._encoder.application,
            "bitrate": self._encoder.bitrate,
            "vbr": self._encoder.vbr,
            "inband_fec": self._encoder.inband_fec,
            "packet_loss_perc": self._encoder.packet_loss_perc,
            "dtx": self._encoder.dtx,
            "max_bandwidth": self._encoder.max_bandwidth,
        }

    def encode(self, pcm, pts):
        pcm = np.ascontiguousarray(match_channels(pcm, self.channels), dtype=np.int16)
        payload = self._encoder.encode(pcm.tobytes(), len(pcm))
        if len(payload) <= OPUS_DTX_MAX_BYTES:
            return []
        return [EncodedPacket(payload, pts)]


class _PyAVMonoEncoder:
    """G.711 and G.722 through FFmpeg, after a resample of the 48 kHz frame to the codec's rate."""

    codec_name = ""
    codec_rate = 8_000
    clock_rate = 8_000

    def __init__(self, config):
        self._codec = av.CodecContext.create(self.codec_name, "w")
        self._codec.format = "s16"
        self._codec.layout = "mono"
        self._codec.sample_rate = self.codec_rate
        self._codec.time_base = fractions.Fraction(1, self.codec_rate)
        self._samples_per_packet = self.codec_rate * FRAME_SAMPLES // SAMPLE_RATE
        self._resampler = av.AudioResampler(
            format="s16", layout="mono", rate=self.codec_rate, frame_size=self._samples_per_packet
        )
        self._pts = 0  # the resampler's own running count: it wants contiguous input
        self._waiting_pts = collections.deque()  # RTP time of frames given to the resampler, not yet out

    def encode(self, pcm, pts):
        mono = match_channels(pcm, 1)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(mono.T), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        self._pts += len(pcm)
        # The resampler holds a frame back: each packet carries the oldest frame not yet sent.
        self._waiting_pts.append(pts * self.clock_rate // SAMPLE_RATE)
        return [EncodedPacket(bytes(packet), self._waiting_pts.popleft())
                for resampled in self._resampler.resample(frame) for packet in self._codec.encode(resampled)]


class PcmuEncoder(_PyAVMonoEncoder):
    codec_name = "pcm_mulaw"


class PcmaEncoder(_PyAVMonoEncoder):
    codec_name = "pcm_alaw"


class G722Encoder(_PyAVMonoEncoder):
    codec_name = "g722"
    codec_rate = 16_000
    clock_rate = 8_000  # RFC 3551: G.722's RTP clock is 8 kHz although it samples at 16 kHz


ENCODERS = {"opus": OpusEncoder, "pcmu": PcmuEncoder, "pcma": PcmaEncoder, "g722": G722Encoder}


def create_encoder(config):
    return ENCODERS[config.codec](config)


def rtp_clock_rate(codec):
    """The RTP clock of a codec's timestamps (what an encoder's packets count in)."""
    return ENCODERS[codec].clock_rate
