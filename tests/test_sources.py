import asyncio

import numpy as np

from streams.audio.config import FRAME_SAMPLES, SAMPLE_RATE, StreamConfig
from streams.audio.sources import SineSource, open_source
from tests.listener import dominant_frequency


def test_sine_frames_are_20_ms_of_int16_per_channel():
    frame = SineSource((440.0, 660.0)).read_frame()
    assert frame.shape == (FRAME_SAMPLES, 2) == (960, 2)
    assert frame.dtype == np.int16


def test_sine_phase_is_continuous_across_frames():
    source = SineSource((441.0,))
    joined = np.concatenate([source.read_frame() for _ in range(50)])[:, 0].astype(np.float64)
    expected = np.round(np.sin(2 * np.pi * 441.0 * np.arange(len(joined)) / SAMPLE_RATE) * 0.5 * 32767)
    assert np.max(np.abs(joined - expected)) <= 1  # rounding only: no jump at any frame boundary


def test_sine_has_a_tone_per_channel():
    source = SineSource((440.0, 1000.0))
    samples = np.concatenate([source.read_frame() for _ in range(50)])
    assert abs(dominant_frequency(samples[:, 0], SAMPLE_RATE) - 440) <= 1
    assert abs(dominant_frequency(samples[:, 1], SAMPLE_RATE) - 1000) <= 1


def test_a_profile_of_10_ms_frames_gets_a_sine_source_that_makes_them_every_10_ms():
    config = StreamConfig(slug="t", source="sine", channels=1, codec="opus", sine_frequencies=(440.0,), frame_ms=10)
    source = open_source(config, captures=None, on_device_state=None)
    assert source.pacer.frame_seconds == 0.01

    async def two_frames():
        return [await source.next_frame() for _ in range(2)]

    first, second = asyncio.run(two_frames())
    assert (first.pcm.shape, first.pts, second.pts) == ((480, 1), 0, 480)
