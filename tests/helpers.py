"""Small helpers shared by the tests."""
import asyncio

from streams.models import StreamProfile


def make_profile(slug, **fields):
    """A validated, saved profile (name = slug unless given)."""
    profile = StreamProfile(**{"name": slug, "slug": slug, **fields})
    profile.full_clean()
    profile.save()
    return profile


def run(coroutine, timeout=90):
    """Run a test scenario on a fresh event loop, failing it after `timeout` seconds."""
    return asyncio.run(asyncio.wait_for(coroutine, timeout))


def counted_listeners(redis_client, slug):
    """Listeners of `slug` as every worker has counted them in Redis (streams/relay/admission.py)."""
    from streams.relay import wire

    return sum(int(redis_client.hget(key, slug) or 0) for key in redis_client.scan_iter(wire.LISTENERS_PREFIX + "*"))


def live_opus_kbps(admin_page, listeners):
    """The Opus bitrate admin shows in its "Live now" text for a row of `listeners` listeners."""
    import re

    found = re.search(rf"{listeners} listeners · opus ([0-9.]+) kb/s", admin_page)
    assert found, f"no '{listeners} listeners · opus … kb/s' in the admin page"
    return float(found.group(1))
