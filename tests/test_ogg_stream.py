"""Ogg Opus over plain HTTP, `/stream/<slug>.ogg` (streams/oggstream.py), against a real daphne:
FFmpeg hears it, every client gets its own valid Ogg stream of the hub's own packets, limits
and access rules as for WebRTC listeners, and every way out gives back what it took."""
import asyncio
import gc
import json
import subprocess

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from streams.audio import oggopus
from tests.helpers import make_profile, refusal_of, run
from tests.listener import Listener, dominant_frequency
from tests.rigs.admin_http import operator
from tests.rigs.ogg_http import OggHttpClient, ogg_client, until_audio_pages, webrtc_then_ogg
from tests.waiting import until, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

KEY = "the-right-key-0123456789"


def hubs_of(server, slug):
    return [(hub["codec"], hub["listeners"]) for hub in server.status()["hubs"] if hub["slug"] == slug]


def assert_valid_stream(client, channels=2):
    """Its own logical stream from its first byte: the two header pages, then audio pages with
    consecutive sequence numbers, the granule position counting every packet's samples, CRCs right."""
    pages = [page for _, page in client.pages]
    head, tags, audio = pages[0], pages[1], pages[2:]
    assert (head.sequence, head.flags, head.granule) == (0, oggopus.FLAG_BOS, 0)
    assert head.packets == (oggopus.opus_head(channels),)
    assert tags.sequence == 1 and tags.packets[0].startswith(b"OpusTags")
    assert all(page.crc_ok for page in pages)
    assert len({page.serial for page in pages}) == 1
    assert [page.sequence for page in pages] == list(range(len(pages)))
    granule = 0
    for page in audio:
        granule += sum(oggopus.packet_samples(packet) for packet in page.packets)
        assert page.granule == granule


@pytest.mark.parametrize("frame_ms", [20, 10])
def test_ffmpeg_hears_440_hz_left_and_660_hz_right_over_http(server, frame_ms):
    make_profile(f"ogg-tones-{frame_ms}", sine_frequency=440, sine_frequency_right=660, opus_frame_ms=frame_ms)
    url = server.url(f"/stream/ogg-tones-{frame_ms}.ogg")
    probe = json.loads(subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-of", "json", url],
                                      capture_output=True, check=True, timeout=30).stdout)["streams"][0]
    assert (probe["codec_name"], probe["channels"], probe["sample_rate"]) == ("opus", 2, "48000")
    decoded = subprocess.run(["ffmpeg", "-v", "error", "-t", "3", "-i", url, "-f", "s16le", "-ac", "2", "-ar", "48000", "-"],
                             capture_output=True, check=True, timeout=30).stdout
    samples = np.frombuffer(decoded, dtype=np.int16).reshape(-1, 2)[24_000:]  # the last 2.5 s
    assert len(samples) >= 2 * 48_000
    assert dominant_frequency(samples[:, 0], 48_000) == pytest.approx(440, abs=2)
    assert dominant_frequency(samples[:, 1], 48_000) == pytest.approx(660, abs=2)
    assert np.sqrt(np.mean(samples.astype(float) ** 2)) > 3000  # sound, not concealment

    async def read_pages():
        client = await ogg_client(server, f"ogg-tones-{frame_ms}").open()
        await until_audio_pages([client], 25)
        await client.close()
        return client

    client = run(read_pages())
    assert_valid_stream(client)
    assert {oggopus.packet_samples(packet) for packet in client.audio_packets()} == {48 * frame_ms}


def test_a_client_gets_audio_ogg_uncached_and_its_own_valid_ogg_stream(server):
    make_profile("ogg-valid", sine_frequency=440)

    async def scenario():
        first = await ogg_client(server, "ogg-valid").open()
        await until_audio_pages([first], 25)
        second = await ogg_client(server, "ogg-valid").open()  # joins mid-stream
        await until_audio_pages([first, second], 100)
        await asyncio.gather(first.close(), second.close())
        return first, second

    first, second = run(scenario())
    for client in (first, second):
        assert client.status == 200
        assert client.headers["content-type"] == "audio/ogg"
        assert client.headers["cache-control"] == "no-cache, no-store"
        assert_valid_stream(client)
    assert first.pages[0][1].serial != second.pages[0][1].serial
    assert set(second.audio_packets()[:50]) <= set(first.audio_packets())  # the same stream, joined later


def test_an_opus_profile_sends_http_and_webrtc_listeners_the_same_packets_from_one_hub(server):
    make_profile("ogg-shared", sine_frequency=440, sine_frequency_right=660)

    async def scenario():
        async with webrtc_then_ogg(server, server, "ogg-shared") as (webrtc, http):
            hubs = await asyncio.to_thread(hubs_of, server, "ogg-shared")
        return webrtc.heard.packets, http.audio_packets(), hubs

    rtp, packets, hubs = run(scenario())
    assert hubs == [("opus", 2)]
    webrtc_payloads = {packet[3] for packet in rtp}
    assert len(packets) >= 100
    assert sum(packet in webrtc_payloads for packet in packets) >= len(packets) - 2  # the last may not have arrived


def test_twenty_concurrent_clients_each_get_a_valid_stream_and_give_their_places_back(server):
    make_profile("ogg-twenty", sine_frequency=440)
    wait_for(lambda: not server.status()["hubs"], 15, "no other listeners on the server")  # 20 per address

    async def scenario():
        clients = [ogg_client(server, "ogg-twenty") for _ in range(20)]
        await asyncio.gather(*(client.open() for client in clients))
        await until_audio_pages(clients, 100, timeout=30)
        hubs = await asyncio.to_thread(hubs_of, server, "ogg-twenty")
        await asyncio.gather(*(client.close() for client in clients))
        await until(lambda: not hubs_of(server, "ogg-twenty"), 10, "the hub to go with its last listener")
        return clients, hubs

    clients, hubs = run(scenario())
    assert hubs == [("opus", 20)]
    assert all(client.status == 200 for client in clients)
    for client in clients:
        assert_valid_stream(client)
    assert len({client.pages[0][1].serial for client in clients}) == 20


def test_a_client_that_stops_reading_is_dropped_and_its_place_returned(server):
    make_profile("ogg-slow", sine_frequency=440, audio_bitrate=510_000, opus_cbr=True, max_listeners=1)

    async def scenario():
        slow = await ogg_client(server, "ogg-slow", receive_buffer=4096).open()
        await until_audio_pages([slow], 5)
        slow.stop_reading()
        refused = await ogg_client(server, "ogg-slow").open()  # the stream's one place is taken
        await until(lambda: not hubs_of(server, "ogg-slow"), 30, "the slow client to be dropped")
        dropped = await slow.closed_by_the_server(timeout=5)
        again = await ogg_client(server, "ogg-slow").open()
        await until_audio_pages([again], 10)
        await asyncio.gather(slow.close(), again.close())
        return refused, dropped, again

    refused, dropped, again = run(scenario())
    assert refused.status == 503 and b"This stream is full (1 listeners)" in refused.body
    assert dropped  # the server closed the stalled connection, not just stopped sending
    assert again.status == 200
    assert "ogg-slow" in server.log() and "too slow, took nothing for 2 s with its buffers full; dropped" in server.log()


def test_a_client_that_hangs_up_gives_its_place_back(server):
    make_profile("ogg-hangup", sine_frequency=440, max_listeners=1)

    async def scenario():
        first = await ogg_client(server, "ogg-hangup").open()
        await until_audio_pages([first], 5)
        await first.close()
        await until(lambda: not hubs_of(server, "ogg-hangup"), 10, "the hub to go with its listener")
        second = await ogg_client(server, "ogg-hangup").open()
        await second.close()
        return second.status

    assert run(scenario()) == 200


def test_http_and_webrtc_listeners_count_together_against_the_stream_limit(server):
    make_profile("ogg-limit", sine_frequency=440, max_listeners=1)

    async def scenario():
        webrtc = Listener(server.ws_url("ogg-limit"))
        await webrtc.connect()
        while_webrtc = await ogg_client(server, "ogg-limit").open()
        await webrtc.close()
        await until(lambda: not hubs_of(server, "ogg-limit"), 10, "the WebRTC listener to leave")
        http = await ogg_client(server, "ogg-limit").open()
        refusal = await refusal_of(Listener(server.ws_url("ogg-limit")))
        await http.close()
        return while_webrtc, http, refusal

    while_webrtc, http, refusal = run(scenario())
    assert while_webrtc.status == 503
    assert http.status == 200
    assert refusal.startswith("too-many-listeners")


WHO = ["anonymous", "logged-in", "right key", "wrong key"]
ALLOWED = {"public": {"anonymous", "logged-in", "right key", "wrong key"}, "login": {"logged-in"}, "link": {"right key"}}


def session_cookie():
    user = get_user_model().objects.create_user("ogg-listener", password="listener-pw-1")
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def fetch(server, path, headers):
    async def get():
        client = await OggHttpClient(server.port, path, headers=headers).open()
        await client.close()
        return client

    return run(get())


@pytest.mark.parametrize("mode", ALLOWED)
def test_access_rules_are_the_listen_pages_and_refusals_answer_its_404(server, mode):
    make_profile(f"ogg-{mode}", access=mode, access_key=KEY)
    make_profile(f"ogg-off-{mode}", enabled=False)
    cookie = {"Cookie": session_cookie()}
    for who in WHO:
        query = {"right key": f"?key={KEY}", "wrong key": "?key=guess"}.get(who, "")
        headers = cookie if who == "logged-in" else {}
        stream = fetch(server, f"/stream/ogg-{mode}.ogg{query}", headers)
        if who in ALLOWED[mode]:
            assert stream.status == 200 and stream.headers["content-type"] == "audio/ogg", (mode, who)
            continue
        page = fetch(server, f"/listen/ogg-{mode}/{query}", headers)
        unknown = fetch(server, f"/stream/no-such-{mode}.ogg{query}", headers)
        switched_off = fetch(server, f"/stream/ogg-off-{mode}.ogg{query}", headers)
        assert stream.status == page.status == unknown.status == switched_off.status == 404, (mode, who)
        assert stream.body == page.body  # exactly the listen page's answer
        same = {response.body.decode().replace(f"“{slug}”", "“X”")
                for response, slug in ((stream, f"ogg-{mode}"), (unknown, f"no-such-{mode}"), (switched_off, f"ogg-off-{mode}"))}
        assert len(same) == 1, (mode, who)


def opus_packets_made(server, slug):
    return sum(hub["packets_sent"] for hub in server.status()["hubs"] if hub["slug"] == slug and hub["codec"] == "opus")


def test_a_g711_profile_has_one_opus_encoding_for_all_its_http_listeners(server):
    make_profile("ogg-pcmu", codec="pcmu", channels=1, audio_bitrate=64_000, sine_frequency=440)

    async def scenario():
        webrtc = Listener(server.ws_url("ogg-pcmu"), offer_edit=lambda offer: offer)
        await webrtc.connect()
        clients = [ogg_client(server, "ogg-pcmu") for _ in range(5)]
        await asyncio.gather(*(client.open() for client in clients))
        await until_audio_pages(clients, 60)
        loop = asyncio.get_running_loop()
        before, started = await asyncio.to_thread(opus_packets_made, server, "ogg-pcmu"), loop.time()
        await until(lambda: loop.time() - started >= 2, 5, "2 s")
        after, ended = await asyncio.to_thread(opus_packets_made, server, "ogg-pcmu"), loop.time()
        hubs = await asyncio.to_thread(hubs_of, server, "ogg-pcmu")
        await asyncio.gather(webrtc.close(), *(client.close() for client in clients))
        return hubs, clients, (after - before) / (ended - started)

    hubs, clients, opus_packets_per_second = run(scenario())
    assert sorted(hubs) == [("opus", 5), ("pcmu", 1)]  # one Opus encoder for the five, beside the PCMU one
    assert opus_packets_per_second == pytest.approx(50, abs=15)  # it encodes each 20 ms once, not once per client
    for client in clients:
        assert_valid_stream(client, channels=1)
    decoded = subprocess.run(["ffmpeg", "-v", "error", "-t", "2", "-i", server.url("/stream/ogg-pcmu.ogg"),
                              "-f", "s16le", "-ac", "1", "-ar", "48000", "-"], capture_output=True, check=True, timeout=30).stdout
    samples = np.frombuffer(decoded, dtype=np.int16)[24_000:]
    assert dominant_frequency(samples, 48_000) == pytest.approx(440, abs=2)


@pytest.fixture
def fresh_server(own_server):
    return own_server()


def test_the_operator_stopping_the_stream_ends_it_with_an_end_of_stream_page(fresh_server):
    profile = make_profile("ogg-stop", sine_frequency=440)
    admin = operator(fresh_server)

    async def scenario():
        client = await ogg_client(fresh_server, "ogg-stop").open()
        await until_audio_pages([client], 10)
        await asyncio.to_thread(admin.save_profile, profile, enabled=False)
        await until(lambda: client.ended, 5, "the response to end")
        hubs = await asyncio.to_thread(hubs_of, fresh_server, "ogg-stop")
        await client.close()
        return client, hubs

    client, hubs = run(scenario())
    assert client.pages[-1][1].flags == oggopus.FLAG_EOS
    assert_valid_stream(client)
    assert hubs == []
    assert "the operator stopped the stream" in fresh_server.log()


def test_a_bitrate_change_moves_a_client_to_the_new_stream_without_a_break(fresh_server):
    profile = make_profile("ogg-change", sine_frequency=440, audio_bitrate=96_000, opus_cbr=True)
    admin = operator(fresh_server)

    async def scenario():
        client = await ogg_client(fresh_server, "ogg-change").open()
        await until_audio_pages([client], 50)
        loop = asyncio.get_running_loop()
        saved_at = loop.time()
        await asyncio.to_thread(admin.save_profile, profile, audio_bitrate=32_000)
        await until(lambda: sum(arrived > saved_at + 2.5 for arrived, _ in client.pages) >= 50, 15,
                    "1 s of pages, 2.5 s after the save")
        await client.close()
        return client, saved_at

    client, saved_at = run(scenario())
    assert_valid_stream(client)  # one stream throughout: no new headers, no end, no gap in the pages
    sizes = [(arrived, len(page.packets[0])) for arrived, page in client.pages[2:]]
    before = [size for arrived, size in sizes if arrived < saved_at][-25:]
    switched = next(arrived for arrived, size in sizes if arrived >= saved_at and size < 100)
    after = [size for arrived, size in sizes if arrived > switched + 0.2]
    assert np.mean(before) * 8 * 50 == pytest.approx(96_000, rel=0.05)
    assert switched - saved_at < 2
    assert np.mean(after) * 8 * 50 == pytest.approx(32_000, rel=0.05)


def test_server_shutdown_ends_the_stream_and_the_connection(fresh_server):
    make_profile("ogg-shutdown", sine_frequency=440)

    async def scenario():
        client = await ogg_client(fresh_server, "ogg-shutdown").open()
        await until_audio_pages([client], 10)
        stopping = asyncio.create_task(asyncio.to_thread(fresh_server.stop))
        await until(lambda: client.ended or client.closed_by_server, 10, "the server to end the response")
        await stopping
        await client.close()
        return client

    client = run(scenario())
    assert fresh_server.process.returncode == 0
    assert client.ended and client.pages[-1][1].flags == oggopus.FLAG_EOS
    assert "closed after" in fresh_server.log() and "the stream ended" in fresh_server.log()


def test_a_response_that_is_never_sent_still_gives_back_its_place_track_and_task():
    """Django drops a response without sending it (the client left while the view finished):
    nothing iterates or closes its body, and it must still give back what the view took."""
    from django.test import AsyncClient

    from streams.runtime import get_runtime

    make_profile("ogg-unsent", sine_frequency=440, max_listeners=1)

    async def scenario():
        runtime = get_runtime()
        response = await AsyncClient().get("/stream/ogg-unsent.ogg")
        held = (response.status_code, runtime.admission.seats_held, [hub.listener_count for hub in runtime.hubs.running()])

        def watchers():
            return [task for task in asyncio.all_tasks() if task.get_coro().__name__ == "follow_the_profile"]

        held += (len(watchers()),)
        del response  # the test client keeps it in reference cycles: the collector frees it, as in a server

        def given_back():
            gc.collect()
            return runtime.admission.seats_held == 0 and not runtime.hubs.running() and not watchers()

        await until(given_back, 5, "everything given back")
        return held

    assert run(scenario()) == (200, 1, [1], 1)  # answered, a place, a hub track, a watcher task


def test_head_answers_the_headers_without_taking_a_place(server):
    make_profile("ogg-head", sine_frequency=440, max_listeners=1)
    import urllib.request

    request = urllib.request.Request(server.url("/stream/ogg-head.ogg"), method="HEAD")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200 and response.headers["Content-Type"] == "audio/ogg"
    assert not [hub for hub in server.status()["hubs"] if hub["slug"] == "ogg-head"]


def test_behind_nginx_as_the_readme_shows_pages_pass_at_once_and_the_client_address_counts(own_server, tmp_path):
    """nginx with docs/deployment.md's `location /` block, TLS at the proxy: pages arrive one every 20 ms
    (nginx does not gather them: X-Accel-Buffering), the stream decodes, and the listener is
    counted (and its flow watched) under its own address from X-Forwarded-For."""
    from tests.rigs.nginx import PROXY_ADDRESS, NginxProxy
    from tests.rigs.tls import self_signed_certificate

    make_profile("ogg-proxied", sine_frequency=440, sine_frequency_right=660)
    cert, key, context = self_signed_certificate(tmp_path)
    server = own_server({"RTC_TRUSTED_PROXY": "1", "RTC_BEHIND_HTTPS_PROXY": "1"})
    proxy = NginxProxy(tmp_path / "nginx", server.port, cert, key).start()

    async def scenario():
        client = await OggHttpClient(proxy.port, "/stream/ogg-proxied.ogg", ssl_context=context).open()
        await until_audio_pages([client], 150)
        await client.close()
        return client

    try:
        client = run(scenario())
        decoded = subprocess.run(["ffmpeg", "-v", "error", "-tls_verify", "0", "-t", "2", "-i",
                                  proxy.url("/stream/ogg-proxied.ogg"), "-f", "s16le", "-ac", "2", "-ar", "48000", "-"],
                                 capture_output=True, check=True, timeout=30).stdout
    finally:
        proxy.stop()
    assert client.status == 200 and client.headers["content-type"] == "audio/ogg"
    assert_valid_stream(client)
    gaps = np.diff([arrived for arrived, _ in client.pages[-100:]]) * 1000
    assert np.median(gaps) == pytest.approx(20, abs=3) and np.percentile(gaps, 95) < 60
    samples = np.frombuffer(decoded, dtype=np.int16).reshape(-1, 2)[24_000:]
    assert dominant_frequency(samples[:, 0], 48_000) == pytest.approx(440, abs=2)
    assert dominant_frequency(samples[:, 1], 48_000) == pytest.approx(660, abs=2)
    assert "ogg listener ogg-proxied" in server.log() and "connecting from 127.0.0.1 (Ogg over HTTP)" in server.log()
    assert f"from {PROXY_ADDRESS}" not in server.log() and "no flow control here" not in server.log()
