"""Test signals: music-like material, white noise, silence (int16, shape (n, channels), 48 kHz)."""
import numpy as np

RATE = 48_000
SCALE = [0, 2, 4, 5, 7, 9, 11, 12]


def music_like(seconds, channels=2, seed=7):
    """Chords of harmonic notes with attack/decay envelopes, a bass line and noise hits: busy like music."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    out = np.zeros((n, channels))
    step = int(0.25 * RATE)
    envelope = np.exp(-np.arange(step) / (0.12 * RATE)) * np.minimum(1, np.arange(step) / 240)
    for start in range(0, n, step):
        end = min(n, start + step)
        span = t[start:end]
        for channel in range(channels):
            for _ in range(3):
                note = 57 + rng.choice(SCALE) + 12 * rng.integers(0, 2)
                f0 = 440 * 2 ** ((note - 69) / 12)
                voice = sum(np.sin(2 * np.pi * f0 * k * span + rng.uniform(0, 6)) / k**1.3 for k in range(1, 8))
                out[start:end, channel] += voice * envelope[: end - start]
        bass = 110 * 2 ** (rng.choice(SCALE) / 12)
        out[start:end] += (0.8 * np.sin(2 * np.pi * bass * span) * envelope[: end - start])[:, None]
        if (start // step) % 2 == 0:
            hit = rng.normal(0, 1, end - start) * np.exp(-np.arange(end - start) / (0.03 * RATE))
            out[start:end] += 0.6 * hit[:, None]
    out *= 0.5 / np.max(np.abs(out))
    return np.round(out * 32767).astype(np.int16)


def white_noise(seconds, channels=2, seed=3, level=0.3):
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, level, (int(seconds * RATE), channels)).clip(-1, 1)
    return np.round(noise * 32767).astype(np.int16)


def tone(seconds, hz, channels=2, level=0.5):
    t = np.arange(int(seconds * RATE)) / RATE
    return np.round(np.repeat(np.sin(2 * np.pi * hz * t)[:, None], channels, axis=1) * level * 32767).astype(np.int16)


def silence(seconds, channels=2):
    return np.zeros((int(seconds * RATE), channels), dtype=np.int16)


def frames(samples, size=960):
    """Split into 20 ms frames (drops a partial tail)."""
    return [samples[i:i + size] for i in range(0, len(samples) - size + 1, size)]
