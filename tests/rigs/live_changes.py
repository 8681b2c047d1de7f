"""Listening while the operator changes things: a bitrate change followed at the listener, and
`manage.py stats` read while listeners play (single-process and multi-process tests alike)."""
import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from aiortc.clock import current_ms

from tests.helpers import run
from tests.listener import Listener
from tests.waiting import until

PROJECT = Path(__file__).resolve().parents[2]


def cbr_bitrate(packets):
    """Payload bit/s of 20 ms packets."""
    return np.mean([len(p[3]) for p in packets]) * 8 * 50


def follow_a_bitrate_change(listen_url, admin, profile, other_listen_url=None):
    """Listen (on one or two servers), change 96 -> 32 kb/s CBR in admin, return what each heard
    and when the change was saved (aiortc's arrival clock, ms)."""
    async def scenario():
        listeners = [Listener(url) for url in (listen_url, other_listen_url) if url]
        await asyncio.gather(*(listener.connect() for listener in listeners))
        await until(lambda: all(len(listener.heard.packets) >= 50 for listener in listeners), 20, "1 s of packets")
        saved_at = current_ms()
        await asyncio.get_running_loop().run_in_executor(None, lambda: admin.save_profile(profile, audio_bitrate=32_000))
        await until(lambda: all(len([p for p in listener.heard.packets if p[0] > saved_at + 2500]) >= 50
                                for listener in listeners), 15, "1 s of packets, 2.5 s after the save")
        await asyncio.gather(*(listener.close() for listener in listeners))
        return [listener.heard for listener in listeners], saved_at

    return run(scenario())


def assert_followed_within_2_s(heard, saved_at):
    before = [p for p in heard.packets if p[0] < saved_at]
    switched = next(p for p in heard.packets if p[0] >= saved_at and len(p[3]) < 100)
    after = [p for p in heard.packets if p[0] > switched[0] + 200]
    assert cbr_bitrate(before[-25:]) == pytest.approx(96_000, rel=0.05)
    assert switched[0] - saved_at < 2000, f"the new bitrate arrived {switched[0] - saved_at} ms after the save"
    assert cbr_bitrate(after) == pytest.approx(32_000, rel=0.05)
    # One connection throughout, its RTP clock running on without a jump.
    assert [m["type"] for m in heard.messages].count("answer") == 1
    assert set(np.diff([p[2] for p in heard.packets]) % (1 << 32)) == {960}


def stats_json(extra_env=None, *args):
    """What `manage.py stats --json` prints, run with os.environ plus `extra_env`."""
    result = subprocess.run([sys.executable, "manage.py", "stats", "--json", *args], cwd=PROJECT, check=True,
                            capture_output=True, text=True, env={**os.environ, **(extra_env or {})})
    return json.loads(result.stdout)


def while_listening(urls, action, packets=100):
    """Run `action()` (in a thread) while listeners on `urls` play; return its result."""
    async def scenario():
        listeners = [Listener(url) for url in urls]
        await asyncio.gather(*(listener.connect() for listener in listeners))
        await until(lambda: all(len(listener.heard.packets) >= packets for listener in listeners), 20, "packets")
        try:
            return await asyncio.get_running_loop().run_in_executor(None, action)
        finally:
            await asyncio.gather(*(listener.close() for listener in listeners))

    return run(scenario())
