"""Over a real daphne: the WebSocket's Origin check, and client addresses behind a reverse proxy.

The "proxy" here is the test itself sending X-Forwarded-For, which is exactly what a server
that trusts any sender of that header would believe: it must only when RTC_TRUSTED_PROXY says so.
"""
import json
from pathlib import Path

import pytest
import websockets

from tests.helpers import make_profile, run
from tests.listener import connect_like_a_browser

pytestmark = pytest.mark.django_db(transaction=True)

AIORTC_OFFER = (Path(__file__).parent / "data" / "aiortc_offer.sdp").read_text()


def test_a_socket_opened_from_another_sites_page_is_refused(server):
    make_profile("guarded")

    async def scenario():
        async with connect_like_a_browser(server.ws_url("guarded")) as ws:  # Origin: this server
            await ws.send(json.dumps({"type": "ping"}))
            same_site = json.loads(await ws.recv())
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(server.ws_url("guarded"), origin="http://evil.example"):
                pass
        return same_site, refused.value.response.status_code

    same_site, status = run(scenario())
    assert same_site["code"] == "unknown-type"  # talked to the consumer
    assert status == 403


def proxied_socket(server, slug, forwarded_for):
    """A socket from a client that the (supposed) proxy says is `forwarded_for`."""
    return websockets.connect(server.ws_url(slug), origin=server.url("").rstrip("/"),
                              additional_headers={"X-Forwarded-For": forwarded_for})


async def offer(ws):
    """Send an offer; the reply's type, or its error code."""
    await ws.send(json.dumps({"type": "offer", "sdp": AIORTC_OFFER}))
    reply = json.loads(await ws.recv())
    return reply.get("code", reply["type"])


def one_listener_per_address(own_server, trusted):
    return own_server({"RTC_MAX_LISTENERS_PER_ADDRESS": "1", "RTC_TRUSTED_PROXY": "1" if trusted else "0"})


async def three_offers(server, slug):
    """A client of one address holds its socket open; then one of another address, then a
    second of the first address, offer."""
    async with proxied_socket(server, slug, "198.51.100.1") as first:
        replies = [await offer(first)]
        for address in ("198.51.100.2", "198.51.100.1"):
            async with proxied_socket(server, slug, address) as ws:
                replies.append(await offer(ws))
    return replies


def test_behind_a_trusted_proxy_the_per_address_limit_counts_forwarded_addresses(own_server):
    make_profile("venue")
    daphne = one_listener_per_address(own_server, trusted=True)
    # 198.51.100.1 is admitted, .2 too (another phone), a second .1 is refused.
    assert run(three_offers(daphne, "venue")) == ["answer", "answer", "too-many-listeners"]


def test_without_a_trusted_proxy_forwarded_headers_are_ignored(own_server):
    make_profile("venue")
    daphne = one_listener_per_address(own_server, trusted=False)
    # Every socket comes from 127.0.0.1, whatever the header claims: the second is refused.
    assert run(three_offers(daphne, "venue")) == ["answer", "too-many-listeners", "too-many-listeners"]


def test_a_socket_to_an_unrouted_path_is_refused_without_a_traceback(server):
    async def scenario():
        statuses = []
        for path in ("/ws/nope/", "/ws/listen/", "/anything/else"):
            with pytest.raises(websockets.InvalidStatus) as refused:
                async with websockets.connect(f"ws://127.0.0.1:{server.port}{path}", origin=server.url("").rstrip("/")):
                    pass
            statuses.append(refused.value.response.status_code)
        return statuses

    assert run(scenario()) == [403, 403, 403]
    assert "Traceback" not in server.log() and "No route found" not in server.log()


def test_any_origin_allowed_is_warned_about_at_start(own_server, server):
    from tests.waiting import wait_for

    wide_open = own_server({"RTC_ALLOWED_HOSTS": "*"})
    wait_for(lambda: "RTC Caster listening" in wide_open.log(), 10, "the start-up lines")
    assert "RTC_ALLOWED_HOSTS is '*'" in wide_open.log()
    assert "RTC_ALLOWED_HOSTS is '*'" not in server.log()  # named hosts: no warning
