"""Prometheus metrics at /metrics, read at scrape time from the snapshots the event loops publish
(streams/ops/livestats.py). Nothing here keeps metric objects or is updated by the media path: each
scrape gets a registry of its own with one collector, which turns snapshots into families.

Which processes a scrape shows:
- one process: its own snapshot, `process="single"`;
- multi-process mode (REDIS_URL): whichever worker answers shows every process, so that on the
  shared socket of `./run.sh --workers N`, where any worker may answer, every scrape gives the
  whole picture: its own snapshot, every other worker's from Redis (`process="worker-<n>"`, n
  being supervisord's process number) and the media owner's per-stream figures (`process="owner"`).
  If Redis does not answer: this worker's own figures and `rtccaster_redis_up 0`.

Who may read them: this machine, and the addresses and networks of RTC_METRICS_ALLOWED.
"""
import dataclasses
import ipaddress
import logging
import time

from django.conf import settings
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry

from . import livestats
from ..audio.health import CLIPPING, SILENT

logger = logging.getLogger(__name__)

REDIS_TIMEOUT_SECONDS = 1.0
PROCESS = ["process"]
PROFILE = ["process", "profile"]
VARIANT = ["process", "profile", "variant"]


def allowed(address, networks):
    """Whether a client at `address` may read the metrics: this machine (loopback), or an address
    in one of `networks` (ipaddress networks)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped:  # ::ffff:10.0.0.5 on a dual-stack socket
        ip = ip.ipv4_mapped
    return ip.is_loopback or any(ip in network for network in networks)


@dataclasses.dataclass(frozen=True)
class Scrape:
    """What one scrape shows: the processes' snapshots and, in multi-process mode, whether Redis
    answered and whether a media owner holds its lock (None: not known, or one process)."""

    processes: tuple
    redis_up: bool | None = None
    owner_up: bool | None = None


def read(runtime):
    """This scrape's snapshots (from any thread): this process's own, and in multi-process mode
    those of the other workers and the owner, from Redis."""
    own = runtime.snapshot if runtime else None
    processes = (own,) if own else ()
    if not settings.REDIS_URL:
        return Scrape(processes)
    import redis

    try:
        workers, owner_stats, owner_up = _from_redis(settings.REDIS_URL)
    except redis.RedisError as error:
        logger.warning("metrics: Redis does not answer (%s); showing this worker only", error)
        return Scrape(processes, redis_up=False)
    others = tuple(worker for worker in workers if own is None or worker.process != own.process)
    return Scrape(processes + others + (livestats.owner_snapshot(owner_stats),), redis_up=True, owner_up=owner_up)


def _from_redis(url):
    """(every worker's ProcessSnapshot, the owner's stats per stream key, whether an owner holds the lock)."""
    import redis

    from ..relay import wire

    client = redis.Redis.from_url(url, socket_timeout=REDIS_TIMEOUT_SECONDS,
                                  socket_connect_timeout=REDIS_TIMEOUT_SECONDS, decode_responses=True)
    try:
        names = list(client.scan_iter(match=livestats.SNAPSHOT_PREFIX + "*", count=500))
        workers = []
        for text in client.mget(names) if names else ():
            if text is None:
                continue  # expired meanwhile: that worker is gone
            try:
                workers.append(livestats.from_json(text))
            except ValueError as error:
                logger.warning("metrics: ignoring a worker's snapshot (%s)", error)  # another version's
        owner_stats = {name[len(wire.STATS_PREFIX):]: client.hgetall(name)
                       for name in client.scan_iter(match=wire.STATS_PREFIX + "*", count=500)}
        owner_up = bool(client.exists(wire.OWNER_LOCK))
    finally:
        client.close()
    return workers, owner_stats, owner_up


class SnapshotCollector:
    """prometheus_client's custom collector over `read()` (a Scrape), called when scraped."""

    def __init__(self, read):
        self._read = read

    def collect(self):
        return families(self._read(), time.time())


def exposition(runtime, accept=""):
    """The metrics as a scraper asked for them (`accept`: its Accept header): (body, content type)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(lambda: read(runtime)))
    encode, content_type = choose_encoder(accept or "")
    return encode(registry), content_type


def families(scrape, now):
    """The metric families of a Scrape, at wall-clock time `now`."""
    gauge, counter = GaugeMetricFamily, CounterMetricFamily
    age = gauge("rtccaster_snapshot_age_seconds",
                "Seconds since the process's event loop published these figures (it does every second: "
                "more means a stuck loop).", labels=PROCESS)
    peers = gauge("rtccaster_peers", "WebRTC peer connections held.", labels=PROCESS)
    connected = gauge("rtccaster_peers_connected", "WebRTC peer connections connected.", labels=PROCESS)
    lag = gauge("rtccaster_event_loop_lag_seconds",
                "How late the event loop woke over the last minute (quantile 1: the latest).",
                labels=PROCESS + ["quantile"])
    gc_runs = gauge("rtccaster_gc_collections_last_minute", "Garbage collections in the last minute.",
                    labels=PROCESS)
    gc_full = gauge("rtccaster_gc_full_collections_last_minute",
                    "Full (generation 2) garbage collections in the last minute.", labels=PROCESS)
    gc_pause = gauge("rtccaster_gc_pause_seconds_last_minute",
                     "Time the garbage collector stopped the process in the last minute.", labels=PROCESS)
    gc_longest = gauge("rtccaster_gc_longest_pause_seconds_last_minute",
                       "The garbage collector's longest pause in the last minute.", labels=PROCESS)
    listeners = gauge("rtccaster_listeners", "Listeners connected (WebRTC and HTTP), per profile.", labels=PROFILE)
    capture_up = gauge("rtccaster_capture_up",
                       "A device profile's capture: 1 capturing, 0 not (lost, or still opening).", labels=PROFILE)
    alarm = gauge("rtccaster_source_alarm", "A source health alarm of the profile: 1 raised, 0 not.",
                  labels=PROFILE + ["alarm"])
    info = InfoMetricFamily("rtccaster_variant", "A stream variant (one encoding) of a profile.",
                            labels=VARIANT + ["codec", "channels", "mode"])
    variant_listeners = gauge("rtccaster_variant_listeners", "Listeners of the variant.", labels=VARIANT)
    packets = counter("rtccaster_packets_sent", "Packets the variant sent (each to every listener; the "
                      "owner's: published to the workers).", labels=VARIANT)
    sent_bytes = counter("rtccaster_payload_bytes_sent", "Payload bytes of the packets the variant sent.",
                         labels=VARIANT)
    bitrate = gauge("rtccaster_encoder_bitrate_bits_per_second",
                    "Payload bit/s of the variant over the last 2 s (a relaying worker's: as it relays it).",
                    labels=VARIANT)
    late = counter("rtccaster_late_frames", "Frames of a generated source made late by a busy event loop.",
                   labels=VARIANT)
    dropped = gauge("rtccaster_dropped_packets",
                    "Packets dropped: from the queues of listeners still connected (too slow to take them); "
                    "the owner's: not published, Redis too slow.", labels=VARIANT)
    missed = counter("rtccaster_packets_missed", "Packets a relaying worker missed of what the owner published.",
                     labels=VARIANT)
    restarts = counter("rtccaster_restarts", "Times the variant's work failed and was restarted.", labels=VARIANT)
    dropped_frames = counter("rtccaster_capture_dropped_frames",
                             "Frames of captured sound dropped to bound the backlog.", labels=VARIANT)
    silence_frames = counter("rtccaster_capture_silence_frames", "Frames of silence sent while the device was gone.",
                             labels=VARIANT)
    capture_delay = gauge("rtccaster_capture_to_send_seconds",
                          "Time from capture to sending over the last minute's captured frames.",
                          labels=VARIANT + ["quantile"])
    relay_up = gauge("rtccaster_relay_up", "A relaying worker's variant: 1 while packets come from the owner.",
                     labels=VARIANT)
    found = [age, peers, connected, lag, gc_runs, gc_full, gc_pause, gc_longest, listeners, capture_up, alarm, info,
             variant_listeners, packets, sent_bytes, bitrate, late, dropped, missed, restarts, dropped_frames,
             silence_frames, capture_delay, relay_up]

    for snapshot in _newest_per_process(scrape.processes):
        process = snapshot.process
        if snapshot.taken_at is not None:
            age.add_metric([process], max(0.0, now - snapshot.taken_at))
        if snapshot.role != "owner":
            peers.add_metric([process], snapshot.peers)
            connected.add_metric([process], snapshot.connected_peers)
        if snapshot.loop is not None and snapshot.loop.lag_samples:  # none before the first minute is over
            figures = snapshot.loop
            for quantile, ms in (("0.5", figures.lag_p50_ms), ("0.99", figures.lag_p99_ms), ("1", figures.lag_max_ms)):
                lag.add_metric([process, quantile], ms / 1000)
            gc_runs.add_metric([process], figures.gc_runs)
            gc_full.add_metric([process], figures.gc_full_runs)
            gc_pause.add_metric([process], figures.gc_pause_total_ms / 1000)
            gc_longest.add_metric([process], figures.gc_pause_max_ms / 1000)
        for profile, variants in _by_profile(snapshot.variants).items():
            if snapshot.role != "owner":
                listeners.add_metric([process, profile], sum(v.listeners for v in variants))
            captures = [v.capture_state for v in variants if v.capture_state]
            if captures:
                capture_up.add_metric([process, profile], int(all(state == "capturing" for state in captures)))
            if any(v.alarm is not None for v in variants):  # where the source is watched
                for name in (SILENT, CLIPPING):
                    alarm.add_metric([process, profile, name], int(any(v.alarm == name for v in variants)))
        for v in snapshot.variants:
            labels = [process, v.profile, v.variant]
            info.add_metric(labels + [v.codec, str(v.channels), v.mode], {})
            if snapshot.role != "owner":
                variant_listeners.add_metric(labels, v.listeners)
            packets.add_metric(labels, v.packets_sent)
            if v.bytes_sent is not None:
                sent_bytes.add_metric(labels, v.bytes_sent)
            bitrate.add_metric(labels, v.bitrate)
            dropped.add_metric(labels, v.dropped_packets)
            restarts.add_metric(labels, v.restarts)
            if v.mode == "relay":
                missed.add_metric(labels, v.packets_missed)
                relay_up.add_metric(labels, int(v.state != "source-lost"))
                continue
            late.add_metric(labels, v.late_frames)
            dropped_frames.add_metric(labels, v.dropped_frames)
            silence_frames.add_metric(labels, v.silence_frames)
            if v.capture_to_send_ms is not None:
                for quantile, ms in zip(("0.5", "0.99", "1"), v.capture_to_send_ms):
                    capture_delay.add_metric(labels + [quantile], ms / 1000)

    if scrape.redis_up is not None:
        found.append(gauge("rtccaster_redis_up", "Whether this scrape could read Redis (multi-process mode).",
                           value=int(scrape.redis_up)))
    if scrape.owner_up is not None:
        found.append(gauge("rtccaster_owner_up", "Whether a media owner holds its lock in Redis (multi-process mode).",
                           value=int(scrape.owner_up)))
    return found


def _newest_per_process(snapshots):
    """One snapshot per process label (a restarted worker's old one may linger in Redis a few seconds)."""
    newest = {}
    for snapshot in snapshots:
        kept = newest.get(snapshot.process)
        if kept is None or (snapshot.taken_at or 0) > (kept.taken_at or 0):
            newest[snapshot.process] = snapshot
    return list(newest.values())


def _by_profile(variants):
    profiles = {}
    for variant in variants:
        profiles.setdefault(variant.profile, []).append(variant)
    return profiles
