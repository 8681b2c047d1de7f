"""Prometheus metrics at /metrics (issue #17, item 6): who may read them, what they say about a
real daphne with an aiortc listener, and in multi-process mode the owner's and every worker's
figures from whichever worker answers. Scrapes are parsed with prometheus_client's own parser."""
import asyncio
import dataclasses
import urllib.error
import urllib.request

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from rtccaster_site.env import env_networks
from streams.ops import livestats, metrics
from tests.helpers import make_profile, run
from tests.listener import Listener
from tests.rigs.owner import owner_and_workers
from tests.rigs.redis_db import REDIS_URL
from tests.waiting import until, wait_for


def get(server, path="/metrics", headers=None):
    """(status, body) of a GET to `server`."""
    request = urllib.request.Request(server.url(path), headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def parse(text):
    """[(sample name, labels, value)] of an exposition."""
    return [(sample.name, sample.labels, sample.value)
            for family in text_string_to_metric_families(text) for sample in family.samples]


def value(samples, name, **labels):
    """The value of the one sample `name` whose labels include `labels`."""
    found = [v for n, sample_labels, v in samples if n == name and labels.items() <= sample_labels.items()]
    assert len(found) == 1, f"{len(found)} samples {name} {labels}"
    return found[0]


def scrape(server, **headers):
    status, body = get(server, headers=headers)
    assert status == 200, body
    return parse(body)


# --- who may read them ---------------------------------------------------------------------


@pytest.mark.parametrize("address, networks, expected", [
    ("127.0.0.1", [], True),
    ("::1", [], True),
    ("127.0.0.53", [], True),
    ("10.1.2.3", [], False),
    ("10.1.2.3", ["10.0.0.0/8"], True),
    ("::ffff:10.1.2.3", ["10.0.0.0/8"], True),  # IPv4 on a dual-stack socket
    ("192.168.1.20", ["10.0.0.0/8", "192.168.1.20/32"], True),
    ("192.168.1.21", ["10.0.0.0/8", "192.168.1.20/32"], False),
    ("fd00::5", ["fd00::/8"], True),
    ("", ["0.0.0.0/0"], False),
    ("not-an-address", ["0.0.0.0/0"], False),
])
def test_metrics_are_for_this_machine_and_the_listed_networks_only(address, networks, expected):
    import ipaddress

    assert metrics.allowed(address, [ipaddress.ip_network(n) for n in networks]) is expected


def test_rtc_metrics_allowed_reads_addresses_and_networks():
    networks = env_networks("RTC_METRICS_ALLOWED", {"RTC_METRICS_ALLOWED": "10.0.0.0/8, 192.168.1.5,fd00::/8"})
    assert [str(n) for n in networks] == ["10.0.0.0/8", "192.168.1.5/32", "fd00::/8"]
    assert env_networks("RTC_METRICS_ALLOWED", {}) == []


@pytest.mark.parametrize("value, says", [
    ("10.0.0.1/8", "has host bits set; did you mean 10.0.0.0/8?"),
    ("metrics.example.org", "is not an IP address or network"),
    ("10.0.0.0/33", "is not an IP address or network"),
])
def test_rtc_metrics_allowed_refuses_what_is_not_a_network(value, says):
    with pytest.raises(ImproperlyConfigured, match=says):
        env_networks("RTC_METRICS_ALLOWED", {"RTC_METRICS_ALLOWED": value})


@pytest.mark.django_db(transaction=True)
def test_behind_a_trusted_proxy_only_listed_client_addresses_get_the_metrics(own_server):
    daphne = own_server({"RTC_TRUSTED_PROXY": "1", "RTC_METRICS_ALLOWED": "198.51.100.0/24"})
    refused, page = get(daphne, headers={"X-Forwarded-For": "203.0.113.9"})
    listed, body = get(daphne, headers={"X-Forwarded-For": "198.51.100.7"})
    direct, _ = get(daphne)  # from 127.0.0.1 itself
    assert (refused, listed, direct) == (404, 200, 200)
    assert "rtccaster" not in page  # the 404 of any page that does not exist
    assert value(parse(body), "rtccaster_peers", process="single") >= 0


@pytest.mark.django_db(transaction=True)
def test_without_a_trusted_proxy_a_forwarded_address_changes_nothing(server):
    # From 127.0.0.1, whatever the header says: this machine may read them.
    status, _ = get(server, headers={"X-Forwarded-For": "203.0.113.9"})
    assert status == 200


# --- what they say, from snapshots ---------------------------------------------------------


def variant(**fields):
    figures = dict(profile="hall", variant="k1", mode="encode", codec="opus", channels=2, source="sine",
                   target_bitrate=96_000, bitrate=95_000, listeners=2, packets_sent=500, bytes_sent=None,
                   dropped_packets=0, packets_missed=0, late_frames=1, state="playing", alarm="", capture_state="",
                   restarts=0, frames=500, dropped_frames=0, silence_frames=0, timeline_jumps=0,
                   capture_to_send_ms=None)
    return livestats.VariantSnapshot(**{**figures, **fields})


def process(name, variants, taken_at=1000.0, role="worker", peers=0):
    loop = livestats.LoopFigures(1.0, 4.0, 9.0, 600, 10, 1, 5.0, 2.0)
    return livestats.ProcessSnapshot(name, role, taken_at, tuple(variants), peers=peers, loop=loop)


def exposed(scrape):
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics.SnapshotCollector(lambda: scrape))
    text = generate_latest(registry).decode()
    assert all(family.name.startswith("rtccaster_") for family in text_string_to_metric_families(text))
    return parse(text)


def test_each_process_shows_its_own_figures_with_its_label():
    samples = exposed(metrics.Scrape((
        process("worker-0", [variant(mode="relay", listeners=3, packets_missed=2),
                             variant(variant="k2", mode="relay", listeners=1, channels=1, state="source-lost")]),
        process("worker-1", [variant(mode="relay", listeners=4)]),
        livestats.owner_snapshot({"k1": {"slug": "hall", "codec": "opus", "channels": "2", "bitrate": "95400",
                                         "late_frames": "0", "packets": "900", "dropped": "3", "frames": "{}"}}),
    ), redis_up=True, owner_up=True))
    assert value(samples, "rtccaster_listeners", process="worker-0", profile="hall") == 4  # over its two variants
    assert value(samples, "rtccaster_listeners", process="worker-1", profile="hall") == 4
    assert [labels for name, labels, _ in samples
            if name == "rtccaster_listeners" and labels["process"] == "owner"] == []
    assert value(samples, "rtccaster_packets_sent_total", process="owner", variant="k1") == 900
    assert value(samples, "rtccaster_encoder_bitrate_bits_per_second", process="owner") == 95_400
    assert value(samples, "rtccaster_dropped_packets", process="owner") == 3
    assert value(samples, "rtccaster_packets_missed_total", process="worker-0", variant="k1") == 2
    assert value(samples, "rtccaster_relay_up", process="worker-0", variant="k1") == 1
    assert value(samples, "rtccaster_relay_up", process="worker-0", variant="k2") == 0
    assert value(samples, "rtccaster_variant_info", process="worker-0", variant="k2")
    assert value(samples, "rtccaster_variant_info", variant="k2", codec="opus", channels="1", mode="relay") == 1
    assert value(samples, "rtccaster_redis_up") == value(samples, "rtccaster_owner_up") == 1
    assert value(samples, "rtccaster_snapshot_age_seconds", process="worker-1") > 0
    assert value(samples, "rtccaster_event_loop_lag_seconds", process="worker-1", quantile="0.99") == 0.004
    assert value(samples, "rtccaster_gc_pause_seconds_last_minute", process="worker-1") == 0.005


def test_a_device_profile_shows_its_capture_and_alarms():
    samples = exposed(metrics.Scrape((process("single", [
        variant(profile="desk", source="device", capture_state="capturing", alarm="source-silent", restarts=2,
                capture_to_send_ms=(12.0, 30.5, 41.0), dropped_frames=4, silence_frames=50, bytes_sent=1234),
        variant(profile="booth", variant="k2", source="device", capture_state="lost", alarm=""),
        variant(profile="tone", variant="k3"),
    ], role="single"),)))
    assert value(samples, "rtccaster_capture_up", profile="desk") == 1
    assert value(samples, "rtccaster_capture_up", profile="booth") == 0
    assert [labels for name, labels, _ in samples
            if name == "rtccaster_capture_up" and labels["profile"] == "tone"] == []
    assert value(samples, "rtccaster_source_alarm", profile="desk", alarm="source-silent") == 1
    assert value(samples, "rtccaster_source_alarm", profile="desk", alarm="source-clipping") == 0
    assert value(samples, "rtccaster_restarts_total", profile="desk") == 2
    assert value(samples, "rtccaster_capture_to_send_seconds", profile="desk", quantile="0.99") == 0.0305
    assert value(samples, "rtccaster_capture_dropped_frames_total", profile="desk") == 4
    assert value(samples, "rtccaster_payload_bytes_sent_total", profile="desk") == 1234
    # Not counted by the hub: absent, not a made-up zero.
    assert [labels for name, labels, _ in samples if name == "rtccaster_payload_bytes_sent_total"
            and labels["profile"] == "tone"] == []
    assert [name for name, _, _ in samples if name in ("rtccaster_redis_up", "rtccaster_owner_up")] == []


def test_no_loop_lag_is_shown_before_the_loop_has_measured_a_minute():
    fresh = dataclasses.replace(process("worker-0", []), loop=livestats.LoopFigures(0.0, 0.0, 0.0, 0, 0, 0, 0.0, 0.0))
    samples = exposed(metrics.Scrape((fresh,)))
    assert [name for name, _, _ in samples if "lag" in name or "gc_" in name] == []
    assert value(samples, "rtccaster_peers", process="worker-0") == 0


def test_the_owners_own_snapshot_if_it_keeps_one_wins_over_its_stats():
    stats = livestats.owner_snapshot({"k1": {"slug": "desk", "codec": "opus", "channels": "2", "bitrate": "1",
                                             "packets": "10", "frames": "{}"}})
    kept = dataclasses.replace(process("owner", [variant(profile="desk", source="device", capture_state="lost",
                                                         packets_sent=12)]), role="owner")
    samples = exposed(metrics.Scrape((stats, livestats.from_json(livestats.to_json(kept)))))
    assert value(samples, "rtccaster_packets_sent_total", process="owner") == 12
    assert value(samples, "rtccaster_capture_up", process="owner", profile="desk") == 0
    assert value(samples, "rtccaster_event_loop_lag_seconds", process="owner", quantile="0.5") == 0.001


def test_a_restarted_workers_lingering_snapshot_is_shown_once():
    samples = exposed(metrics.Scrape((process("worker-0", [variant(listeners=5)], taken_at=990.0),
                                      process("worker-0", [variant(listeners=1)], taken_at=1001.0))))
    assert value(samples, "rtccaster_listeners", process="worker-0") == 1


def test_a_snapshot_crosses_redis_unchanged():
    snapshot = process("worker-3", [variant(capture_to_send_ms=(1.0, 2.0, 3.0), bytes_sent=7), variant(variant="k2")])
    assert livestats.from_json(livestats.to_json(snapshot)) == snapshot
    with pytest.raises(ValueError):
        livestats.from_json('{"process": "worker-3"}')


# --- a real server -------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_scrape_shows_the_listener_its_packets_going_up_and_the_encoders_bitrate(server):
    make_profile("scraped", opus_cbr=True, audio_bitrate=64_000)

    async def scenario():
        listener = Listener(server.ws_url("scraped"))
        await listener.connect()
        await until(lambda: len(listener.heard.packets) >= 110, 20, "2 s of packets")  # the meter's window
        first = await asyncio.to_thread(scrape, server)
        packets = value(first, "rtccaster_packets_sent_total", process="single", profile="scraped")
        second = await asyncio.to_thread(
            wait_for, lambda: (s := scrape(server)) and value(s, "rtccaster_packets_sent_total", profile="scraped")
            > packets and s, 5, "more packets in a later scrape")
        await listener.close()
        return first, second

    first, second = run(scenario())
    assert value(first, "rtccaster_listeners", process="single", profile="scraped") == 1
    assert value(first, "rtccaster_variant_listeners", profile="scraped") == 1
    assert value(first, "rtccaster_variant_info", profile="scraped", codec="opus", channels="2", mode="encode") == 1
    bitrate = value(first, "rtccaster_encoder_bitrate_bits_per_second", profile="scraped")
    assert bitrate == pytest.approx(64_000, rel=0.05)  # CBR
    assert value(first, "rtccaster_peers_connected", process="single") >= 1
    assert value(first, "rtccaster_restarts_total", profile="scraped") == 0
    assert value(second, "rtccaster_packets_sent_total", profile="scraped") > value(
        first, "rtccaster_packets_sent_total", profile="scraped")
    assert 0 <= value(second, "rtccaster_snapshot_age_seconds", process="single") < 2


@pytest.mark.django_db(transaction=True)
def test_a_device_profiles_capture_shows_1_while_capturing_and_0_once_the_device_is_gone(capture_server, pulse, tone):
    from tests.conftest import MONITOR

    make_profile("desk", source="device", device_name=MONITOR)
    tone(1000)

    def capture_up():
        samples = scrape(capture_server)
        return [v for n, labels, v in samples if n == "rtccaster_capture_up" and labels["profile"] == "desk"]

    async def scenario():
        async with Listener(capture_server.ws_url("desk")) as listener:
            await until(lambda: len(listener.heard.packets) >= 25, 15, "packets from the device")
            seen = [await asyncio.to_thread(wait_for, lambda: capture_up() == [1], 5, "capture_up 1")]
            await asyncio.to_thread(pulse.unload_null_sink, "virt")
            try:
                seen.append(await asyncio.to_thread(wait_for, lambda: capture_up() == [0], 5, "capture_up 0"))
            finally:
                await asyncio.to_thread(pulse.load_null_sink, "virt")
                tone(1000)
            seen.append(await asyncio.to_thread(wait_for, lambda: capture_up() == [1], 10, "capture_up 1 again"))
            return seen

    assert run(scenario()) == [True, True, True]


@pytest.mark.django_db(transaction=True)
def test_a_scrape_asking_for_openmetrics_gets_it(server):
    status, body = get(server, headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert status == 200 and body.rstrip().endswith("# EOF")


# --- multi-process -------------------------------------------------------------------------


@pytest.fixture
def cluster(django_db_setup, tmp_path):
    """A media owner and two workers on the test Redis."""
    with owner_and_workers(settings.DATABASES["default"]["NAME"], tmp_path, REDIS_URL) as started:
        yield started


@pytest.mark.django_db(transaction=True)
def test_any_worker_shows_the_owners_and_every_workers_figures(cluster):
    owner, (first, second) = cluster
    make_profile("clustered", opus_cbr=True, audio_bitrate=48_000)
    first_name, second_name = first.status()["process"], second.status()["process"]

    def whole_picture():
        samples = scrape(second)
        listening = [v for n, labels, v in samples if n == "rtccaster_listeners"
                     and labels == {"process": first_name, "profile": "clustered"}]
        published = [v for n, labels, v in samples if n == "rtccaster_packets_sent_total"
                     and labels["process"] == "owner" and labels["profile"] == "clustered"]
        return listening == [1] and published and published[0] >= 100 and samples

    async def scenario():
        listener = Listener(first.ws_url("clustered"))
        await listener.connect()
        await until(lambda: len(listener.heard.packets) >= 110, 20, "2 s of packets")
        samples = await asyncio.to_thread(wait_for, whole_picture, 10, "the listener and the owner in a scrape")
        own = await asyncio.to_thread(scrape, first)
        await listener.close()
        return samples, own

    samples, own = run(scenario())
    assert first_name.startswith("worker-") and second_name.startswith("worker-") and first_name != second_name
    # The owner's figures, through Redis.
    assert value(samples, "rtccaster_encoder_bitrate_bits_per_second", process="owner",
                 profile="clustered") == pytest.approx(48_000, rel=0.05)
    assert value(samples, "rtccaster_redis_up") == 1 and value(samples, "rtccaster_owner_up") == 1
    # The other worker's, from its snapshot in Redis; and the answering worker's own.
    assert value(samples, "rtccaster_packets_sent_total", process=first_name, profile="clustered") > 0
    assert value(samples, "rtccaster_relay_up", process=first_name, profile="clustered") == 1
    assert value(samples, "rtccaster_peers", process=second_name) == 0
    assert value(samples, "rtccaster_snapshot_age_seconds", process=first_name) < 3
    # The worker with the listener says the same of itself.
    assert value(own, "rtccaster_listeners", process=first_name, profile="clustered") == 1
    assert value(own, "rtccaster_packets_sent_total", process="owner", profile="clustered") > 0
