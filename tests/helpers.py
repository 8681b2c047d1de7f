"""Small helpers shared by the tests."""
import asyncio
from pathlib import Path

import numpy as np

from streams.models import StreamProfile

# An offer aiortc made (recvonly audio: Opus, G.722, PCMU, PCMA), for tests that need no peer of their own.
AIORTC_OFFER = (Path(__file__).parent / "data" / "aiortc_offer.sdp").read_text()


def make_profile(slug, **fields):
    """A validated, saved profile (name = slug unless given)."""
    profile = StreamProfile(**{"name": slug, "slug": slug, **fields})
    profile.full_clean()
    profile.save()
    return profile


def run(coroutine, timeout=90):
    """Run a test scenario on a fresh event loop, failing it after `timeout` seconds."""
    return asyncio.run(asyncio.wait_for(coroutine, timeout))


async def refusal_of(listener):
    """Connect `listener` (a tests/listener.py Listener) and close it again: the server's refusal
    ("too-many-listeners: …"), or None if it let the listener in."""
    try:
        await listener.connect()
        return None
    except ConnectionError as error:
        return str(error)
    finally:
        await listener.close()


def counted_listeners(redis_client, profile_id):
    """Listeners of the profile `profile_id` (its primary key) as every worker has counted them
    in Redis (streams/relay/admission.py)."""
    from streams.relay import wire

    return sum(int(redis_client.hget(key, str(profile_id)) or 0)
               for key in redis_client.scan_iter(wire.LISTENERS_PREFIX + "*"))


def live_opus_kbps(admin_page, listeners):
    """The Opus bitrate admin shows in its "Live now" text for a row of `listeners` listeners."""
    import re

    found = re.search(rf"{listeners} listeners · opus ([0-9.]+) kb/s", admin_page)
    assert found, f"no '{listeners} listeners · opus … kb/s' in the admin page"
    return float(found.group(1))


def assert_same_packets(a, b, at_least):
    """b joined a's stream later. Each listener's RTP timestamps start from its own random origin:
    with b's first packet found in a's, every packet both received for the same stream time
    (timestamp less the origin) carries the same bytes, and b's timestamps step by one frame."""
    start = [p[3] for p in a].index(b[0][3])
    origin_shift = (b[0][2] - a[start][2]) % (1 << 32)
    a_by_time = {p[2]: p[3] for p in a}
    pairs = [(a_by_time[(ts - origin_shift) % (1 << 32)], payload) for _, _, ts, payload, *_ in b
             if (ts - origin_shift) % (1 << 32) in a_by_time]
    assert len(pairs) >= at_least
    assert all(ours == theirs for ours, theirs in pairs)
    assert set(np.diff([p[2] for p in b]) % (1 << 32)) == {960}


def save_profile(profile, **fields):
    """Change fields of a saved profile, validated as admin would, and save it."""
    for name, value in fields.items():
        setattr(profile, name, value)
    profile.full_clean()
    profile.save()
