"""Live numbers per stream for admin and `manage.py stats`: listeners and encoder bitrate.

Multi-process mode (REDIS_URL): listeners added up over every worker's report
(`rtc:listeners:<worker>`), bitrates from the media owner (`rtc:stats:<stream>`).
Single-process mode: this process's own hubs (admin runs in the server process).
"""
from django.conf import settings


class Unavailable(Exception):
    """Redis does not answer: the numbers cannot be known now."""


def collect():
    """{slug: {"listeners": n, "variants": [{"codec", "channels", "bitrate"}, ...]}};
    Unavailable when Redis (multi-process mode) does not answer."""
    if settings.REDIS_URL:
        return _from_redis(settings.REDIS_URL)
    from .runtime import current_runtime

    return from_hubs(current_runtime().hubs.hubs() if current_runtime() else [])


def add(stats, slug, listeners=0, variant=None):
    """Count `listeners` and a variant ({"codec", "channels", "bitrate"}) towards `slug`'s row."""
    row = stats.setdefault(slug, {"listeners": 0, "variants": []})
    row["listeners"] += listeners
    if variant is not None:
        row["variants"].append(variant)
    return stats


def from_hubs(hubs):
    stats = {}
    for hub in hubs:
        variant = {"codec": hub.config.codec, "channels": hub.config.channels, "bitrate": hub.bitrate}
        add(stats, hub.config.slug, hub.listener_count, variant)
    return stats


def _from_redis(url):
    import redis

    from .relay import wire

    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2, decode_responses=True)
    stats = {}
    try:
        for key in client.scan_iter(match=wire.LISTENERS_PREFIX + "*", count=500):
            for slug, count in client.hgetall(key).items():
                add(stats, slug, int(count))
        for key in client.scan_iter(match=wire.STATS_PREFIX + "*", count=500):
            variant = client.hgetall(key)
            if "slug" in variant:
                add(stats, variant["slug"], variant={"codec": variant["codec"], "channels": int(variant.get("channels", 0)),
                                                     "bitrate": int(variant["bitrate"])})
    except redis.RedisError as error:
        raise Unavailable(f"Redis at {url} does not answer ({error})") from None
    finally:
        client.close()
    return stats


def describe_all(slug):
    """The admin's one line for a profile, or why there is none."""
    try:
        return describe(collect().get(slug))
    except Unavailable as error:
        return f"unknown: {error}"


def describe(row):
    """'3 listeners · opus 95.8 kb/s' for admin."""
    if not row:
        return "no listeners"
    listeners = row["listeners"]
    text = f"{listeners} listener{'s' if listeners != 1 else ''}"
    rates = [f"{v['codec']} {v['bitrate'] / 1000:.1f} kb/s" for v in row["variants"]]
    return text + (" · " + ", ".join(rates) if rates else "")
