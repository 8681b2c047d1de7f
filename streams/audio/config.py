"""What the media path needs to know of a stream profile, as an immutable value.

Audio code never touches the ORM: a StreamProfile is turned into a StreamConfig
once, when a listener connects, and hubs are keyed by it. Two listeners of the
same profile with the same settings share one hub; after an operator edits the
profile, new listeners get a hub built from the new settings.
"""
from dataclasses import dataclass, replace

from ..webrtc import sdp
from .health import HealthLimits

OPUS_PLAYBACK_RATES = (8_000, 12_000, 16_000, 24_000, 48_000)
# The bitrates a listener's limit is rounded down to: clients cannot make an encoder each by asking
# for 31,999, 31,998, ... bit/s. With mono/stereo and the five playback rates, a stream has few
# possible variants, and HubRegistry caps how many run at once.
VARIANT_BITRATES = (6_000, 16_000, 24_000, 32_000, 48_000, 64_000, 96_000, 128_000, 192_000, 256_000)
SAMPLE_RATE = 48_000
FRAME_MS = 20  # a frame's length unless an Opus profile asks for 10 ms (G.711 and G.722 always 20)
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000
OPUS_FRAME_MS_CHOICES = (10, 20)


@dataclass(frozen=True)
class StreamConfig:
    slug: str
    source: str  # "sine" or "device"
    channels: int
    codec: str  # "opus", "pcmu", "pcma", "g722"
    sine_frequencies: tuple = (440.0,)  # one per channel
    device_name: str = ""
    sample_rate: int = SAMPLE_RATE
    opus_bitrate: int = 96_000
    opus_max_playback_rate: int = 48_000
    opus_cbr: bool = False
    opus_fec: bool = True
    opus_packet_loss_percent: int = 10
    opus_dtx: bool = True
    opus_application: str = "audio"  # "audio" (music) or "voip" (voice)
    # The length of a frame, and so of an RTP packet: 10 ms halves the time a sample waits for its
    # frame to fill, for twice the packets (what it does to latency: docs/benchmarks.md).
    frame_ms: int = FRAME_MS
    # The profile it comes from (its primary key): whom the stream's news is for (runtime.status_group),
    # stable when the slug is renamed. None for a stream that belongs to no profile (tests, benches).
    profile_id: int = None
    # Source health alarms (audio/health.py)
    silence_dbfs: float = -60.0
    silence_seconds: float = 10.0
    clipping_percent: float = 0.1

    def __post_init__(self):
        allowed = OPUS_FRAME_MS_CHOICES if self.codec == "opus" else (FRAME_MS,)
        if self.frame_ms not in allowed:
            raise ValueError(f"{self.codec} frames are {' or '.join(map(str, allowed))} ms, not {self.frame_ms!r}")

    @property
    def frame_samples(self):
        """Samples (at SAMPLE_RATE) in one of this stream's frames."""
        return SAMPLE_RATE * self.frame_ms // 1000

    def frames_in(self, milliseconds):
        """How many of this stream's frames (or packets) make `milliseconds`."""
        return milliseconds // self.frame_ms

    def answer_fmtp(self):
        """The a=fmtp parameters an answer carries for this stream (none for G.711/G.722)."""
        if self.codec != "opus":
            return {}
        return sdp.opus_fmtp_params(
            channels=self.channels,
            max_average_bitrate=self.opus_bitrate,
            max_playback_rate=self.opus_max_playback_rate,
            cbr=self.opus_cbr,
            fec=self.opus_fec,
            dtx=self.opus_dtx,
        )

    def health_limits(self):
        return HealthLimits(self.silence_dbfs, self.silence_seconds, self.clipping_percent)

    def unlimited(self):
        """This stream without what listeners' limits change: variants of one stream have the same."""
        return replace(self, channels=0, opus_bitrate=0, opus_max_playback_rate=0)

    def limited_by(self, limits):
        """The variant of this stream that a listener's Opus limits (sdp.opus_receiver_limits) allow.

        Listeners with the same limits get the same variant, so it is encoded once for all of them.
        """
        if self.codec != "opus":
            return self
        channels = self.channels if limits["stereo"] else 1
        bitrate = self.opus_bitrate
        if limits["max_average_bitrate"] and limits["max_average_bitrate"] < bitrate:
            bitrate = max([rate for rate in VARIANT_BITRATES if rate <= limits["max_average_bitrate"]] or [6_000])
        playback_rate = self.opus_max_playback_rate
        if limits["max_playback_rate"]:
            allowed = [rate for rate in OPUS_PLAYBACK_RATES if rate <= limits["max_playback_rate"]] or [8_000]
            playback_rate = min(playback_rate, allowed[-1])
        return replace(self, channels=channels, opus_bitrate=bitrate, opus_max_playback_rate=playback_rate)
