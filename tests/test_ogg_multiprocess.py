"""Ogg over HTTP in multi-process mode (REDIS_URL): the workers relay the media owner's packets
to their HTTP listeners as to their WebRTC ones, and the listener limits count both, over
every worker. The test set-up's Redis, as tests/test_multiprocess.py."""
import asyncio

import pytest
import redis
from django.conf import settings

from streams.audio import oggopus
from tests.helpers import counted_listeners, make_profile, refusal_of, run
from tests.listener import Listener
from tests.rigs.ogg_http import ogg_client, until_audio_pages, webrtc_then_ogg
from tests.rigs.owner import owner_and_workers
from tests.rigs.redis_db import REDIS_URL
from tests.waiting import until

pytestmark = pytest.mark.django_db(transaction=True)

@pytest.fixture(scope="module")
def cluster(django_db_setup, tmp_path_factory):
    """An owner and two workers sharing the test database and Redis."""
    with owner_and_workers(settings.DATABASES["default"]["NAME"], tmp_path_factory.mktemp("ogg-cluster"),
                           REDIS_URL) as started:
        yield started


def test_an_http_listener_on_one_worker_gets_the_owners_packets_as_a_webrtc_one_on_another(cluster):
    owner, (first, second) = cluster
    make_profile("ogg-mp", sine_frequency=440, sine_frequency_right=660)

    async def scenario():
        async with webrtc_then_ogg(second, first, "ogg-mp") as (webrtc, http):
            modes = [[(hub["slug"], hub["mode"], hub["listeners"]) for hub in worker.status()["hubs"]]
                     for worker in (first, second)]
        return webrtc.heard.packets, http, modes

    rtp, http, modes = run(scenario())
    assert modes == [[("ogg-mp", "relay", 1)], [("ogg-mp", "relay", 1)]]  # relayed, not encoded, in both
    assert http.status == 200 and http.pages[0][1].packets == (oggopus.opus_head(2),)
    assert all(page.crc_ok for _, page in http.pages)
    assert [page.sequence for _, page in http.pages] == list(range(len(http.pages)))
    payloads = {packet[3] for packet in rtp}
    packets = http.audio_packets()
    assert sum(packet in payloads for packet in packets) >= len(packets) - 2
    assert owner.log().count("starting ogg-mp ") == 1  # encoded once, in the owner


def test_a_g711_profiles_http_listeners_on_two_workers_share_one_opus_encoding_in_the_owner(cluster):
    owner, workers = cluster
    make_profile("ogg-mp-pcmu", codec="pcmu", channels=1, audio_bitrate=64_000, sine_frequency=440)

    async def scenario():
        clients = [ogg_client(worker, "ogg-mp-pcmu") for worker in workers for _ in range(2)]
        await asyncio.gather(*(client.open() for client in clients))
        await until_audio_pages(clients, 50)
        hubs = [[(hub["codec"], hub["listeners"]) for hub in worker.status()["hubs"]] for worker in workers]
        await asyncio.gather(*(client.close() for client in clients))
        return clients, hubs

    clients, hubs = run(scenario())
    assert hubs == [[("opus", 2)], [("opus", 2)]]
    assert all(client.pages[0][1].packets == (oggopus.opus_head(1),) for client in clients)
    assert owner.log().count("starting ogg-mp-pcmu ") == 1  # one Opus variant for all four


def test_the_listener_limit_counts_http_listeners_over_every_worker(cluster):
    owner, (first, second) = cluster
    limited = make_profile("ogg-mp-limit", sine_frequency=440, max_listeners=1)
    client = redis.Redis.from_url(REDIS_URL)

    async def scenario():
        http = await ogg_client(first, "ogg-mp-limit").open()
        counted = await asyncio.to_thread(counted_listeners, client, limited.pk)
        refused = await ogg_client(second, "ogg-mp-limit").open()
        webrtc_refusal = await refusal_of(Listener(second.ws_url("ogg-mp-limit")))
        await http.close()
        await until(lambda: counted_listeners(client, limited.pk) == 0, 10, "the place given back in Redis")
        admitted = await ogg_client(second, "ogg-mp-limit").open()
        await admitted.close()
        return http, counted, refused, webrtc_refusal, admitted

    http, counted, refused, webrtc_refusal, admitted = run(scenario())
    assert http.status == 200 and counted == 1
    assert refused.status == 503
    assert webrtc_refusal.startswith("too-many-listeners")
    assert admitted.status == 200
