"""What a browser really plays: Chromium's sound into the PulseAudio rig (tests/rigs/pulseaudio.py),
recorded from the monitor of the rig's null sink.

tests/rigs/chromium.py gives the browser no PULSE_* variables, so that it plays into nothing
by default. It does pass XDG_RUNTIME_DIR, which is the rig's directory while the rig runs, and
libpulse looks for its server at $XDG_RUNTIME_DIR/pulse/native: a link there to the rig's
socket lets a Chromium started meanwhile play into the rig's default sink.
"""
import contextlib
import os
import subprocess
from pathlib import Path

import numpy as np

RATE = 48_000


@contextlib.contextmanager
def chromium_sound_into(pulse):
    """While inside, a Chromium started by chromium_page() plays into `pulse`'s default sink."""
    if os.environ.get("XDG_RUNTIME_DIR") != pulse.dir:
        raise RuntimeError("the PulseAudio rig is not the one this process points XDG_RUNTIME_DIR at")
    link = Path(pulse.dir) / "pulse" / "native"
    link.parent.mkdir(exist_ok=True)
    link.symlink_to(pulse.socket)
    try:
        yield
    finally:
        link.unlink()


def played_levels_db(pulse, seconds=0.3, source="virt.monitor"):
    """RMS in dBFS of each channel (left, right) of what the sink plays in the next `seconds`;
    -inf for digital silence."""
    recorder = subprocess.Popen(
        ["parec", f"--device={source}", "--raw", "--format=s16le", f"--rate={RATE}", "--channels=2",
         "--latency-msec=20"],
        env=pulse.child_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    wanted = int(RATE * seconds) * 4
    try:
        data = recorder.stdout.read(wanted)
    finally:
        recorder.terminate()
        recorder.wait()
        recorder.stdout.close()
    if len(data) < wanted:
        raise RuntimeError(f"parec on {source} gave {len(data)} of {wanted} bytes (exit {recorder.returncode})")
    samples = np.frombuffer(data, dtype=np.int16).reshape(-1, 2).astype(np.float64)
    rms = np.sqrt(np.mean(samples ** 2, axis=0))
    with np.errstate(divide="ignore"):
        return [float(level) for level in 20 * np.log10(rms / 32768)]
