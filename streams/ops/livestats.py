"""Live numbers as snapshots the event loop publishes: what admin, `manage.py stats`,
/status.json and /metrics show.

Hubs, peers and captures belong to the event loop, which changes them with every packet. A
thread reading them (admin runs in Django's sync thread) would mix figures of different
moments, and a read that tidies as it goes (a BitrateMeter drops what left its window) races
the loop's own updates: the admin's bitrate drifted. So the loop takes a `ProcessSnapshot`,
frozen, every figure of one moment (`take` never awaits), once a second and soon after a
stream starts, stops or changes state (`SnapshotPublisher`, run by streams/runtime.py), and
every other thread reads only that.

Multi-process mode (REDIS_URL): each worker also keeps its snapshot in Redis
(`rtc:snapshot:<process>`, a few seconds' TTL) for whichever worker answers /metrics, and so does
the media owner (`rtc:snapshot:owner`, streams/relay/owner.py). Admin and `manage.py stats` add up
listeners over every worker's admission counts (`rtc:listeners:<worker>`) and take each stream's
bitrate and source alarm from the owner's snapshot: the same figures /metrics shows, read the
same way as one process's own snapshot.

A profile's row goes by its primary key, as its listener limits do: an operator may rename its
slug while listeners stay, and those who came by the old one are still its listeners.
"""
import asyncio
import dataclasses
import json
import logging
import os
import time

from django.conf import settings

logger = logging.getLogger(__name__)

SNAPSHOT_SECONDS = 1.0
SNAPSHOT_PREFIX = "rtc:snapshot:"  # per process: its latest ProcessSnapshot as JSON
OWNER = "owner"  # the media owner's process label (its snapshot: SNAPSHOT_PREFIX + OWNER)
SNAPSHOT_TTL_SECONDS = 5
REDIS_TIMEOUT_SECONDS = 1.0


class Unavailable(Exception):
    """Redis does not answer: the numbers cannot be known now."""


@dataclasses.dataclass(frozen=True)
class VariantSnapshot:
    """One hub (a stream variant: one StreamConfig) at one moment."""

    profile: str
    variant: str  # the StreamConfig's wire.stream_key: the same name in the owner and every worker
    mode: str  # "encode" (this process reads and encodes) or "relay" (from the media owner)
    codec: str
    channels: int
    source: str  # "sine" or "device"
    target_bitrate: int  # what the profile asks of the encoder, bit/s
    bitrate: int  # what it produces: payload bit/s over the last 2 s
    listeners: int
    packets_sent: int  # since the hub started; each packet goes to every listener
    bytes_sent: int | None  # payload bytes since the hub started (None: this hub does not count them)
    dropped_packets: int  # from the queues of listeners still connected; the owner's: not published
    packets_missed: int  # a relay's gaps in what the owner published
    late_frames: int  # made late by a busy event loop (generated sources)
    state: str  # what its listeners were last told: "playing", "device-lost", "source-lost", "restarting", ...
    alarm: str | None  # the source's health alarm: "source-silent", "source-clipping", "" (none); None: unwatched
    capture_state: str  # an encoding device stream's capture: "starting", "capturing", "lost"; else ""
    restarts: int  # of the hub's work, by its supervision (streams/ops/supervision.py)
    frames: int
    dropped_frames: int  # captured sound dropped to bound the backlog
    silence_frames: int  # made up while the device was gone
    timeline_jumps: int
    capture_to_send_ms: tuple | None  # (p50, p99, max) over the last minute's captured frames
    profile_id: int | None = None  # the profile's primary key (None: a stream of no profile, in tests and benches)


@dataclasses.dataclass(frozen=True)
class CaptureSnapshot:
    device: str
    state: str
    readers: int
    thread: str
    priority: str


@dataclasses.dataclass(frozen=True)
class LoopFigures:
    """The event loop's last minute (streams/ops/loopwatch.py)."""

    lag_p50_ms: float
    lag_p99_ms: float
    lag_max_ms: float
    lag_samples: int
    gc_runs: int
    gc_full_runs: int
    gc_pause_total_ms: float
    gc_pause_max_ms: float


@dataclasses.dataclass(frozen=True)
class ProcessSnapshot:
    process: str  # "single", "worker-<n>" or "owner": the label of its figures
    role: str  # "single", "worker" or "owner"
    taken_at: float | None  # wall clock (unknown for the owner's published stats)
    variants: tuple  # of VariantSnapshot
    captures: tuple = ()  # of CaptureSnapshot
    peers: int = 0
    connected_peers: int = 0
    loop: LoopFigures | None = None


# --- taking a snapshot (on the event loop) -------------------------------------------------


def process_name(worker_id):
    """This process's label: "single" in one process; a worker's supervisord program name
    ("worker-0", stable over restarts), else "worker-<its random id>"."""
    if not settings.REDIS_URL:
        return "single"
    return os.environ.get("SUPERVISOR_PROCESS_NAME") or f"worker-{worker_id}"


def take(runtime, process):
    """`runtime`'s figures at this moment. Call it on the runtime's event loop: nothing here
    awaits, so no packet is sent and no listener comes or goes while it reads."""
    captures = captures_of(runtime.captures)
    return ProcessSnapshot(
        process=process,
        role="single" if process == "single" else "worker",
        taken_at=time.time(),
        variants=variants_of(runtime.hubs.running(), captures),
        captures=captures,
        peers=len(runtime.peers),
        connected_peers=sum(1 for peer in runtime.peers if peer.pc.connectionState == "connected"),
        loop=loop_figures(runtime.loop_lag),
    )


def take_owner(hubs, captures, loop_lag=None):
    """The media owner's figures at this moment (on its event loop), from its streams' hubs, its
    AudioCaptureManager and, if it has one, its LoopLagMonitor. An owner that keeps this in
    Redis (to_json, under SNAPSHOT_PREFIX + OWNER) while it holds the lock shows its capture
    states, alarms, restarts and loop in /metrics, and its bitrates and alarms in admin."""
    captures = captures_of(captures)
    return ProcessSnapshot(process=OWNER, role="owner", taken_at=time.time(), variants=variants_of(hubs, captures),
                           captures=captures, loop=None if loop_lag is None else loop_figures(loop_lag))


def captures_of(manager):
    return tuple(CaptureSnapshot(c.device_name, c.state, c.reader_count, c.thread.name, c.priority)
                 for c in manager.captures())


def variants_of(hubs, captures):
    states = {capture.device: capture.state for capture in captures}
    return tuple(variant_of(hub, states) for hub in hubs)


def variant_of(hub, capture_states=None):
    from ..relay import wire

    config = hub.config
    timing = hub.timing.summary()
    delays = timing["capture_to_send_ms"]
    capture_state = ""
    if hub.mode == "encode" and config.source == "device":
        capture_state = (capture_states or {}).get(config.device_name, "starting")
    return VariantSnapshot(
        profile=config.slug,
        variant=getattr(hub, "key", None) or wire.stream_key(config),
        mode=hub.mode,
        codec=config.codec,
        channels=config.channels,
        source=config.source,
        target_bitrate=config.opus_bitrate if config.codec == "opus" else 64_000,
        bitrate=hub.bitrate,
        listeners=hub.listener_count,
        packets_sent=hub.packets_sent,
        # Counted by the hub once it does (see the report on issue #17); until then, unknown.
        bytes_sent=getattr(hub, "bytes_sent", None),
        dropped_packets=hub.dropped_packets,
        packets_missed=hub.packets_missed,
        late_frames=hub.late_frames,
        state=hub.status[0],
        alarm=(hub.alarm or "") if hub.mode == "encode" else None,  # a relay's source is the owner's
        capture_state=capture_state,
        restarts=hub.restarts,
        frames=timing["frames"],
        dropped_frames=timing["dropped_frames"],
        silence_frames=timing["silence_frames"],
        timeline_jumps=timing["timeline_jumps"],
        capture_to_send_ms=None if delays is None else (delays["p50"], delays["p99"], delays["max"]),
        profile_id=config.profile_id,
    )


def loop_figures(monitor):
    """A LoopLagMonitor's last minute."""
    lag, gc = monitor.last_minute, monitor.gc_last_minute
    return LoopFigures(lag["p50"], lag["p99"], lag["max"], lag["samples"], gc["count"], gc["full"], gc["total"],
                       gc["max"])


class SnapshotPublisher:
    """Publishes `take()` (called on the event loop) as `latest`, which any thread may read: once
    a second, and soon after `changed()`. With `redis_url`, also keeps it in Redis under
    `process` for the other workers' /metrics."""

    def __init__(self, take, process, redis_url=None):
        self._take = take
        self.process = process
        self.latest = None
        self._soon = None
        self._failing = False
        self._redis = None
        if redis_url:
            import redis.asyncio as aioredis

            self._redis = aioredis.from_url(redis_url, socket_timeout=REDIS_TIMEOUT_SECONDS,
                                            socket_connect_timeout=REDIS_TIMEOUT_SECONDS)
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run(), name="snapshots")

    def publish(self):
        """Take and publish a snapshot now (on the event loop); returns it."""
        self.latest = self._take()
        return self.latest

    def changed(self):
        """Something shown changed (a stream started, stopped, lost its device): publish as soon
        as the loop is free, once however many changes come meanwhile."""
        if self._soon is None:
            self._soon = self._loop.call_soon(self._publish_soon)

    def _publish_soon(self):
        self._soon = None
        self.publish()

    async def _run(self):
        while True:
            try:
                snapshot = self.publish()
                if self._redis is not None:
                    await self._store(snapshot)
                self._failing = False
            except Exception:  # a bug here must not end the publishing: log it once, keep trying
                if not self._failing:
                    logger.exception("cannot publish the live numbers")
                self._failing = True
            await asyncio.sleep(SNAPSHOT_SECONDS)

    async def _store(self, snapshot):
        from redis.exceptions import RedisError

        try:
            await self._redis.set(SNAPSHOT_PREFIX + self.process, to_json(snapshot), ex=SNAPSHOT_TTL_SECONDS)
        except RedisError as error:
            logger.debug("cannot keep the live numbers in Redis (%s)", error)  # /metrics says redis_up 0

    async def close(self):
        self._task.cancel()
        if self._soon is not None:
            self._soon.cancel()
        await asyncio.gather(self._task, return_exceptions=True)  # no write to Redis in flight
        if self._redis is not None:
            from redis.exceptions import RedisError

            try:
                await self._redis.delete(SNAPSHOT_PREFIX + self.process)
            except RedisError:
                pass  # it expires by itself
            await self._redis.aclose()


# --- snapshots through Redis ---------------------------------------------------------------


def to_json(snapshot):
    return json.dumps(dataclasses.asdict(snapshot), separators=(",", ":"))


def from_json(text):
    """The ProcessSnapshot a worker kept in Redis; ValueError if it is not one (another version's)."""
    try:
        data = json.loads(text)
        loop = data.pop("loop")
        variants = tuple(_variant_from(item) for item in data.pop("variants"))
        captures = tuple(CaptureSnapshot(**item) for item in data.pop("captures"))
        return ProcessSnapshot(**data, variants=variants, captures=captures,
                               loop=None if loop is None else LoopFigures(**loop))
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as error:
        raise ValueError(f"not a snapshot: {error}") from None


def _variant_from(item):
    delays = item.pop("capture_to_send_ms")
    return VariantSnapshot(**item, capture_to_send_ms=None if delays is None else tuple(delays))


def owner_snapshot(stats):
    """The media owner's figures from what it publishes per stream variant ({key: its
    `rtc:stats:` hash, decoded}), as a snapshot of process "owner" (no listeners: workers have them)."""
    variants = []
    for key, fields in sorted(stats.items()):
        if "slug" not in fields:
            continue
        frames = json.loads(fields.get("frames") or "{}")
        delays = frames.get("capture_to_send_ms")
        capture_state = fields.get("capture", "")
        variants.append(VariantSnapshot(
            profile=fields["slug"], variant=key, mode="encode", codec=fields.get("codec", ""),
            channels=int(fields.get("channels", 0)), source="device" if capture_state else "",
            target_bitrate=int(fields.get("target_bitrate", 0)), bitrate=int(fields.get("bitrate", 0)), listeners=0,
            packets_sent=int(fields.get("packets", 0)),
            bytes_sent=int(fields["bytes"]) if "bytes" in fields else None,
            dropped_packets=int(fields.get("dropped", 0)), packets_missed=0,
            late_frames=int(fields.get("late_frames", 0)), state=fields.get("state", "playing"),
            alarm=fields.get("alarm"), capture_state=capture_state, restarts=int(fields.get("restarts", 0)),
            frames=int(frames.get("frames", 0)), dropped_frames=int(frames.get("dropped_frames", 0)),
            silence_frames=int(frames.get("silence_frames", 0)), timeline_jumps=int(frames.get("timeline_jumps", 0)),
            capture_to_send_ms=None if not delays else (delays["p50"], delays["p99"], delays["max"]),
        ))
    return ProcessSnapshot(process="owner", role="owner", taken_at=None, variants=tuple(variants))


# --- admin and `manage.py stats` -----------------------------------------------------------


def by_profile():
    """{profile: {"listeners": n, "variants": [{"codec", "channels", "bitrate", "alarm"}, ...]}},
    from any thread, `profile` being the profile's primary key (a stream of no profile, in tests
    and benches: its slug). Unavailable when Redis (multi-process mode) does not answer."""
    return _by_profile()[0]


def collect():
    """by_profile() under each stream's slug, as `manage.py stats` prints it: the slug its stream
    plays under now (the newest, while listeners move to a renamed one), else the profile's own."""
    stats, slugs = _by_profile()
    unnamed = [profile for profile in stats if profile not in slugs]
    if unnamed:  # listeners whose stream does not play now (the owner is away)
        from ..models import StreamProfile

        slugs.update(StreamProfile.objects.filter(pk__in=unnamed).values_list("pk", "slug"))
    named = {}
    for profile, row in stats.items():
        slug = slugs.get(profile, str(profile))  # (a profile deleted meanwhile: its number)
        add(named, slug, row["listeners"])
        for variant in row["variants"]:
            add(named, slug, variant=variant)
    return named


def _by_profile():
    """(by_profile(), {profile: the slug its stream plays under})."""
    if settings.REDIS_URL:
        return _from_redis(settings.REDIS_URL)
    from ..runtime import current_runtime

    runtime = current_runtime()
    return _add_snapshot(runtime.snapshot if runtime else None, {}, {})


def _add_snapshot(snapshot, stats, slugs):
    """Add the figures of the snapshot of the process that encodes (one process's, or the media
    owner's; None: nothing published yet) to `stats` by profile, naming each row after its newest
    stream in `slugs`; listeners too, unless it is the owner's (its hubs' one subscriber is its
    publisher: listeners are the workers'). Returns (stats, slugs)."""
    for variant in snapshot.variants if snapshot else ():
        listeners = 0 if snapshot.role == "owner" else variant.listeners
        add(stats, profile_of(variant), listeners, variant_row(variant))
        slugs[profile_of(variant)] = variant.profile
    return stats, slugs


def profile_of(variant):
    """What a VariantSnapshot's figures count towards: its profile's primary key, or for a stream
    of no profile (tests, benches) its slug."""
    return variant.profile_id if variant.profile_id is not None else variant.profile


def variant_row(variant):
    """What admin shows of a variant that encodes."""
    return {"codec": variant.codec, "channels": variant.channels, "bitrate": variant.bitrate, "alarm": variant.alarm}


def add(stats, profile, listeners=0, variant=None):
    """Count `listeners` and a variant ({"codec", "channels", "bitrate", "alarm"}) towards `profile`'s row."""
    row = stats.setdefault(profile, {"listeners": 0, "variants": []})
    row["listeners"] += listeners
    if variant is not None:
        row["variants"].append(variant)
    return stats


def _from_redis(url):
    """Listeners from every worker's admission counts; the variants, their bitrates and alarms
    from the media owner's snapshot (none while no owner publishes one)."""
    import redis

    from ..relay import wire

    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2, decode_responses=True)
    try:
        counts = [client.hgetall(key) for key in client.scan_iter(match=wire.LISTENERS_PREFIX + "*", count=500)]
        owner = client.get(SNAPSHOT_PREFIX + OWNER)
    except redis.RedisError as error:
        raise Unavailable(f"Redis at {url} does not answer ({error})") from None
    finally:
        client.close()
    stats = {}
    for worker in counts:
        for profile, count in worker.items():
            if profile.isdigit():  # else a worker of an older version, which counted by slug
                add(stats, int(profile), int(count))
    return _add_snapshot(_owner_snapshot(owner), stats, {})


def _owner_snapshot(text):
    """The media owner's snapshot as Redis holds it; None if there is none (no owner holds the
    lock) or it is not one this version reads."""
    if text is None:
        return None
    try:
        return from_json(text)
    except ValueError as error:
        logger.warning("ignoring the media owner's snapshot (%s)", error)
        return None


def describe_profile(profile):
    """The admin's one line for a profile (its primary key), or why there is none."""
    try:
        return describe(by_profile().get(profile))
    except Unavailable as error:
        return f"unknown: {error}"


ALARM_WORDS = {"source-silent": "the source is silent", "source-clipping": "the source is clipping"}


def describe(row):
    """'3 listeners · opus 95.8 kb/s' for admin."""
    if not row:
        return "no listeners"
    listeners = row["listeners"]
    text = f"{listeners} listener{'s' if listeners != 1 else ''}"
    rates = [f"{v['codec']} {v['bitrate'] / 1000:.1f} kb/s" for v in row["variants"]]
    alarms = sorted({ALARM_WORDS[v["alarm"]] for v in row["variants"] if v.get("alarm") in ALARM_WORDS})
    return text + (" · " + ", ".join(rates) if rates else "") + "".join(f" · ⚠ {alarm}" for alarm in alarms)
