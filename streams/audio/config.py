"""What the media path needs to know of a stream profile, as an immutable value.

Audio code never touches the ORM: a StreamProfile is turned into a StreamConfig
once, when a listener connects, and hubs are keyed by it. Two listeners of the
same profile with the same settings share one hub; after an operator edits the
profile, new listeners get a hub built from the new settings.
"""
from dataclasses import dataclass

SAMPLE_RATE = 48_000
FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000


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
