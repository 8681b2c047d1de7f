"""HTTPS/WSS from daphne's own TLS endpoint, and ICE servers from settings reaching both peers."""
import asyncio
import json
import re
import urllib.request

import pytest

from streams.webrtc import sdp
from streams.models import StreamProfile
from tests.listener import Listener, dominant_frequency
from tests.rigs.stun import StunServer
from tests.rigs.tls import self_signed_certificate

pytestmark = pytest.mark.django_db(transaction=True)


def page_config(url):
    """The listener page's configuration, as its script reads it (json_script "listener-config")."""
    with urllib.request.urlopen(url, timeout=10) as page:
        html = page.read().decode()
    return json.loads(re.search(r'<script id="listener-config" type="application/json">(.*?)</script>', html).group(1))


def frequency_heard_over_https(server, slug, context):
    """Load `slug`'s page over HTTPS from `server` (daphne, or a proxy in front of it), listen
    over WSS, and return the frequency heard."""
    with urllib.request.urlopen(server.url(f"/listen/{slug}/"), context=context, timeout=10) as page:
        assert page.status == 200 and f'"wsPath": "/ws/listen/{slug}/"'.encode() in page.read()

    async def hear():
        async with Listener(server.ws_url(slug), ssl=context) as listener:
            return await listener.listen_for(1.5)

    heard = asyncio.run(asyncio.wait_for(hear(), 30))
    return dominant_frequency(heard.samples()[9600:, 0], heard.sample_rate)


def test_a_listener_hears_the_tone_over_https_and_wss(own_server, tmp_path):
    StreamProfile.objects.create(name="Secure", slug="secure", sine_frequency=523)
    cert, key, context = self_signed_certificate(tmp_path)
    server = own_server({"RTC_TLS_CERT": str(cert), "RTC_TLS_KEY": str(key)})
    assert server.url().startswith("https://") and server.ws_url("secure").startswith("wss://")
    assert abs(frequency_heard_over_https(server, "secure", context) - 523) <= 5
    assert "(https)" in server.log()


def test_behind_nginx_configured_as_the_readme_shows_a_listener_hears_the_stream_over_wss(own_server, tmp_path):
    """nginx terminates TLS with docs/deployment.md's `location /` block; the server trusts its headers."""
    from tests.rigs.nginx import PROXY_ADDRESS, NginxProxy

    StreamProfile.objects.create(name="Proxied", slug="proxied", sine_frequency=587)
    cert, key, context = self_signed_certificate(tmp_path)
    server = own_server({"RTC_TRUSTED_PROXY": "1", "RTC_BEHIND_HTTPS_PROXY": "1"})
    proxy = NginxProxy(tmp_path / "nginx", server.port, cert, key).start()
    try:
        assert abs(frequency_heard_over_https(proxy, "proxied", context) - 587) <= 5
    finally:
        proxy.stop()
    # The socket came from the proxy's address; the server took the client's from X-Forwarded-For.
    assert "connecting from 127.0.0.1" in server.log()
    assert f"from {PROXY_ADDRESS}" not in server.log()


def test_ice_servers_from_settings_reach_the_page_and_the_server_peer(own_server):
    StreamProfile.objects.create(name="Nat", slug="nat")
    with StunServer(mapped_host="127.0.0.5") as stun:
        servers = [{"urls": f"stun:127.0.0.1:{stun.port}"}]
        server = own_server({"RTC_ICE_SERVERS": json.dumps(servers)})
        # The page's script hands these to its RTCPeerConnection.
        assert page_config(server.url("/listen/nat/"))["iceServers"] == servers

        async def answer_sdp():
            async with Listener(server.ws_url("nat"), ice_servers=[]) as listener:
                return listener.heard.answer_sdp

        answer = asyncio.run(asyncio.wait_for(answer_sdp(), 30))
    candidates = [line for line in answer.split("\r\n") if line.startswith("a=candidate:")]
    srflx = [line for line in candidates if " typ srflx " in line]
    assert srflx and sdp.candidate_address(srflx[0]) == "127.0.0.5"  # the server asked our STUN server
    assert stun.responder.requests >= 1


def test_a_listener_that_can_only_use_a_turn_relay_hears_the_stream_through_coturn(own_server, tmp_path):
    """A listener behind a NAT that lets nothing in: it takes the ICE servers from the listener
    page, as the browser does, gathers only relay candidates on that TURN server, and all media
    goes through coturn."""
    from aiortc import RTCIceServer

    from tests.rigs.turn import TurnServer

    StreamProfile.objects.create(name="Far", slug="far", sine_frequency=523)
    with TurnServer(tmp_path / "turn.log") as turn:
        server = own_server({"RTC_ICE_SERVERS": json.dumps([turn.ice_server()])})
        ice_servers = [RTCIceServer(**entry) for entry in page_config(server.url("/listen/far/"))["iceServers"]]

        async def listen():
            async with Listener(server.ws_url("far"), ice_servers=ice_servers, relay_only=True) as listener:
                return listener.pc.localDescription.sdp, await listener.listen_for(1.0)

        offer, heard = asyncio.run(asyncio.wait_for(listen(), 60))
        turn_log = turn.log()
    candidates = [line for line in offer.split("\r\n") if line.startswith("a=candidate:")]
    assert candidates and all(" typ relay " in line for line in candidates)
    relay_ports = {int(line.split()[5]) for line in candidates}
    assert all(turn.relay_ports[0] <= port <= turn.relay_ports[1] for port in relay_ports)
    assert abs(dominant_frequency(heard.samples()[-24_000:, 0], heard.sample_rate) - 523) <= 5
    assert "ALLOCATE processed, success" in turn_log and "peer 127.0.0.1:" in turn_log  # relayed to a peer


@pytest.mark.parametrize("https", ["daphne's own TLS", "an HTTPS reverse proxy"])
def test_check_deploy_passes_with_production_settings(tmp_path, https):
    import os
    import secrets
    import subprocess
    import sys

    env = {
        **os.environ,
        "RTC_SECRET_KEY": secrets.token_urlsafe(50),
        "RTC_DEBUG": "0",
        "RTC_ALLOWED_HOSTS": "radio.example.org",
    }
    if https == "daphne's own TLS":
        cert, key, _ = self_signed_certificate(tmp_path)
        env.update(RTC_TLS_CERT=str(cert), RTC_TLS_KEY=str(key))
    else:
        env.update(RTC_TRUSTED_PROXY="1", RTC_BEHIND_HTTPS_PROXY="1")
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
