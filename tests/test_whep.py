"""WHEP (streams/whep.py) through Django's AsyncClient in the test's own event loop, so that the
server's runtime (peers, listener places, sessions, hubs) can be counted after every request;
aiortc listeners that really connect, decode and FFT. Over a real daphne and with a WHEP
client this project did not write: tests/test_whep_end_to_end.py."""
import asyncio
import re

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from django.contrib.auth import get_user_model
from django.test import AsyncClient, Client

from streams import whep
from streams.models import StreamProfile
from streams.runtime import get_runtime
from tests.helpers import AIORTC_OFFER, make_profile, run, save_profile
from tests.listener import ask_for_stereo, dominant_frequency
from tests.rigs.communicator import answer_to_offer, connected
from tests.rigs.whep import NOTHING, WhepListener, async_http, fragment, held, without_candidates
from tests.waiting import until

pytestmark = pytest.mark.django_db(transaction=True)

KEY = "the-right-key-0123456789"


async def post_offer(http, slug, offer=AIORTC_OFFER, headers=None):
    return await http("POST", f"/whep/{slug}/", offer, {"Content-Type": "application/sdp", **(headers or {})})


def test_an_offer_gets_201_with_the_answer_a_location_and_an_etag():
    make_profile("hall")

    async def scenario():
        http = async_http()
        status, headers, answer = await post_offer(http, "hall")
        assert status == 201, answer
        assert headers["content-type"] == "application/sdp"
        assert answer.startswith("v=0") and "m=audio" in answer and "a=candidate:" in answer
        assert re.fullmatch(r"/whep/hall/[\w-]{20,}/", headers["location"])
        assert re.fullmatch(r'"[0-9a-f]{16}"', headers["etag"])
        assert headers["accept-patch"] == "application/trickle-ice-sdpfrag"
        assert headers["cache-control"] == "no-store"
        assert held(get_runtime()) == {**NOTHING, "peers": 1, "seats": 1, "sessions": 1, "tasks": 1, "hubs": 1}
        status, _, _ = await http("DELETE", headers["location"])
        assert status == 200

    run(scenario())


def test_a_whep_listener_hears_440_hz_and_delete_gives_everything_back_at_once():
    make_profile("tone", sine_frequency=440)

    async def scenario():
        runtime = get_runtime()
        listener = WhepListener(async_http(), "/whep/tone/")
        await listener.connect()
        heard = await listener.listen_for(2.0)
        assert held(runtime) == {**NOTHING, "peers": 1, "seats": 1, "sessions": 1, "tasks": 1, "hubs": 1}
        status, _, _ = await listener.delete()
        assert status == 200
        assert held(runtime) == NOTHING  # at once: no consent timeout, no waiting
        status, _, _ = await listener.delete()
        assert status == 404  # it is gone
        await listener.close()
        return heard

    heard = run(scenario())
    samples = heard.samples()[int(0.2 * heard.sample_rate):]
    assert abs(dominant_frequency(samples[:, 0], heard.sample_rate) - 440) <= 5


def test_the_wrong_content_type_gets_415_and_names_the_right_one():
    make_profile("hall")

    async def scenario():
        http = async_http()
        status, headers, body = await http("POST", "/whep/hall/", AIORTC_OFFER, {"Content-Type": "application/json"})
        assert status == 415 and headers["accept-post"] == "application/sdp" and "application/sdp" in body
        assert held(get_runtime()) == NOTHING

    run(scenario())


BAD_OFFERS = {
    "not sdp": ("hello", "no-audio"),
    "empty": ("  \r\n", "SDP offer"),
    "no audio": ("v=0\r\ns=-\r\nm=video 9 RTP/AVP 96\r\n", "no-audio"),
    "no fingerprint": ("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=ice-ufrag:u\r\na=ice-pwd:p\r\n"
                       "a=rtpmap:111 opus/48000/2\r\n", "a=fingerprint"),
    "80 m-lines": (AIORTC_OFFER + "".join(f"m=audio 9 UDP/TLS/RTP/SAVPF 0\na=mid:{i}\n" for i in range(1, 80)),
                   "at most 4 media sections"),
    "no codec in common": (AIORTC_OFFER.replace(" 96 9 0 8", " 9 0 8").replace("a=rtpmap:96 opus/48000/2\n", ""),
                           "codec-not-offered"),
    "a port that is not a number": (AIORTC_OFFER.replace("m=audio 47755", "m=audio port"), "invalid-sdp"),
}


@pytest.mark.parametrize("case", list(BAD_OFFERS))
def test_a_bad_offer_gets_400_with_a_clear_message_and_holds_nothing(case):
    make_profile("hall", max_listeners=1)
    offer, words = BAD_OFFERS[case]

    async def scenario():
        http = async_http()
        for _ in range(2):  # more than the stream has places
            status, _, body = await post_offer(http, "hall", offer)
            assert status == 400, body
            assert words in body
            assert held(get_runtime()) == NOTHING
        status, headers, _ = await post_offer(http, "hall")
        assert status == 201  # the one place is free
        await http("DELETE", headers["location"])

    run(scenario())


def test_an_offer_over_64_kib_gets_413():
    make_profile("hall")

    async def scenario():
        status, _, body = await post_offer(async_http(), "hall", AIORTC_OFFER + "a=x:" + "y" * 64 * 1024 + "\r\n")
        assert status == 413 and "64 KiB" in body
        assert held(get_runtime()) == NOTHING

    run(scenario())


def test_unknown_and_switched_off_streams_answer_404_exactly_as_the_listen_page():
    make_profile("off", enabled=False)

    async def scenario():
        http = async_http()
        return [await post_offer(http, slug) for slug in ("nope", "off")]

    for (status, headers, body), slug in zip(run(scenario()), ("nope", "off")):
        page = Client().get(f"/listen/{slug}/")
        assert status == page.status_code == 404
        assert body == page.content.decode()
        assert headers["access-control-allow-origin"] == "*"


WHO = ["anonymous", "logged-in", "right key", "wrong key", "right key in the URL"]
ALLOWED = {"public": set(WHO), "login": set(), "link": {"right key", "right key in the URL"}}


@pytest.mark.parametrize("mode, who", [(mode, who) for mode in ALLOWED for who in WHO])
def test_access(mode, who):
    """A secret link's key as a Bearer token (or ?key=), 401 without it (RFC 9725 4.5); a stream
    for signed-in users is not for WHEP (403, saying why, whoever asks); nothing is held after a
    refusal."""
    StreamProfile.objects.create(name=mode, slug=mode, access=mode, access_key=KEY)
    client = AsyncClient()
    if who == "logged-in":
        client.force_login(get_user_model().objects.create_user("listener", password="listener-pw-1"))
    headers = {"right key": {"Authorization": f"Bearer {KEY}"}, "wrong key": {"Authorization": "Bearer guess"}}
    query = f"?key={KEY}" if who == "right key in the URL" else ""

    async def scenario():
        http = async_http(client)
        status, headers_, body = await http("POST", f"/whep/{mode}/{query}", AIORTC_OFFER,
                                            {"Content-Type": "application/sdp", **headers.get(who, {})})
        unknown = await http("POST", f"/whep/no-such-{mode}/{query}", AIORTC_OFFER,
                             {"Content-Type": "application/sdp", **headers.get(who, {})})
        if status == 201:
            await http("DELETE", headers_["location"])
        assert held(get_runtime()) == NOTHING
        return status, headers_, body, unknown

    status, answer_headers, body, (unknown_status, _, _) = run(scenario())
    assert unknown_status == 404
    if who in ALLOWED[mode]:
        assert status == 201
    elif mode == "login":
        assert status == 403 and "WHEP players carry no sign-in" in body
    else:
        assert (status, answer_headers["www-authenticate"]) == (401, 'Bearer realm="rtc-caster"')
        assert "Authorization: Bearer <key>" in body


def test_preflight_allows_any_origin_the_methods_and_headers_a_player_needs():
    make_profile("hall")

    async def scenario():
        http = async_http()
        _, endpoint, _ = await http("OPTIONS", "/whep/hall/", "", {"Origin": "http://player.example",
                                                                   "Access-Control-Request-Method": "POST"})
        status, headers, _ = await post_offer(http, "hall")
        _, resource, _ = await http("OPTIONS", headers["location"])
        await http("DELETE", headers["location"])
        return endpoint, headers, resource

    endpoint, created, resource = run(scenario())
    assert endpoint["access-control-allow-origin"] == "*" and endpoint["accept-post"] == "application/sdp"
    assert endpoint["access-control-allow-methods"] == "POST, OPTIONS"
    assert {"authorization", "content-type", "if-match"} <= {
        h.strip().lower() for h in endpoint["access-control-allow-headers"].split(",")}
    exposed = {h.strip().lower() for h in created["access-control-expose-headers"].split(",")}
    assert {"location", "link", "etag"} <= exposed
    assert created["access-control-allow-origin"] == "*" and "access-control-allow-credentials" not in created
    assert resource["access-control-allow-methods"] == "PATCH, DELETE, OPTIONS"
    assert resource["accept-patch"] == "application/trickle-ice-sdpfrag"


def test_other_methods_get_405_with_allow():
    make_profile("hall")

    async def scenario():
        http = async_http()
        answers = [await http(method, "/whep/hall/") for method in ("GET", "PUT", "DELETE")]
        status, headers, _ = await post_offer(http, "hall")
        answers += [await http(method, headers["location"]) for method in ("GET", "POST")]
        await http("DELETE", headers["location"])
        return answers

    answers = run(scenario())
    assert [status for status, _, _ in answers] == [405] * 5
    assert [headers["allow"] for _, headers, _ in answers] == ["POST, OPTIONS"] * 3 + ["PATCH, DELETE, OPTIONS"] * 2


def test_the_answer_links_the_ice_servers_with_their_credentials(settings):
    settings.RTC_ICE_SERVERS = [{"urls": "stun:127.0.0.1:3478"},
                                {"urls": ["turn:127.0.0.1:3478?transport=udp", "turn:127.0.0.1:3478?transport=tcp"],
                                 "username": "caster", "credential": 'a "quoted" secret'}]
    make_profile("hall")

    async def scenario():
        http = async_http()
        status, headers, _ = await post_offer(http, "hall")
        await http("DELETE", headers["location"])
        return headers["link"]

    assert run(scenario()) == (
        '<stun:127.0.0.1:3478>; rel="ice-server", '
        '<turn:127.0.0.1:3478?transport=udp>; rel="ice-server"; username="caster"; '
        'credential="a \\"quoted\\" secret"; credential-type="password", '
        '<turn:127.0.0.1:3478?transport=tcp>; rel="ice-server"; username="caster"; '
        'credential="a \\"quoted\\" secret"; credential-type="password"')


def test_no_ice_servers_no_link_header():
    make_profile("hall")

    async def scenario():
        http = async_http()
        status, headers, _ = await post_offer(http, "hall")
        await http("DELETE", headers["location"])
        return headers

    assert "link" not in run(scenario())


def test_a_full_stream_answers_503_with_retry_after_and_a_deleted_session_frees_its_place():
    make_profile("small", max_listeners=2)

    async def scenario():
        http = async_http()
        first = await post_offer(http, "small")
        second = await post_offer(http, "small")
        refused = await post_offer(http, "small")
        assert [first[0], second[0], refused[0]] == [201, 201, 503]
        assert refused[1]["retry-after"] == "10" and "This stream is full (2 listeners)" in refused[2]
        assert held(get_runtime())["seats"] == 2
        await http("DELETE", first[1]["location"])
        again = await post_offer(http, "small")
        assert again[0] == 201
        for response in (second, again):
            await http("DELETE", response[1]["location"])
        assert held(get_runtime()) == NOTHING

    run(scenario())


def test_whep_and_websocket_listeners_share_the_per_address_limit_and_the_encoder(settings):
    settings.RTC_MAX_LISTENERS_PER_ADDRESS = 2
    make_profile("hall")

    async def scenario():
        socket = await connected("hall", client=("127.0.0.1", 50000))  # AsyncClient's requests come from 127.0.0.1
        await answer_to_offer(socket)
        http = async_http()
        first = await post_offer(http, "hall")
        refused = await post_offer(http, "hall")
        assert (first[0], refused[0]) == (201, 503)
        assert "Too many listeners from your address (2 at most)" in refused[2]
        runtime = get_runtime()  # encoded once for both: one hub, both tracks on it
        assert len(runtime.peers) == 2 and len(runtime.hubs.running()) == 1
        assert {peer.track.hub for peer in runtime.peers} == set(runtime.hubs.running())
        await socket.disconnect()
        await http("DELETE", first[1]["location"])
        assert held(get_runtime()) == NOTHING

    run(scenario())


def test_a_session_whose_ice_never_connects_is_closed_and_gives_its_place_back(settings):
    settings.RTC_ICE_TIMEOUT_SECONDS = 1
    make_profile("small", max_listeners=1)

    async def scenario():
        http = async_http()
        status, headers, _ = await post_offer(http, "small")  # a stored offer: nobody answers its checks
        assert status == 201
        runtime = get_runtime()
        await until(lambda: held(runtime) == NOTHING, 10, "the silent session to be closed")
        status, _, body = await http("DELETE", headers["location"])  # the player gave up too, later
        assert status == 200 and "already ended (ice-timeout)" in body
        assert (await http("DELETE", headers["location"]))[0] == 404
        status, headers, _ = await post_offer(http, "small")
        assert status == 201  # its place was given back
        await http("DELETE", headers["location"])

    run(scenario())


def test_a_session_that_fails_later_is_released():
    make_profile("hall")

    async def scenario():
        runtime = get_runtime()
        listener = WhepListener(async_http(), "/whep/hall/")
        await listener.connect()
        await listener.listen_for(0.5)
        await listener.pc.close()  # the player goes away without a DELETE: DTLS ends
        await until(lambda: held(runtime) == NOTHING, 40, "the server to release the session")

    run(scenario())


def test_an_unexpected_error_after_admission_gives_the_place_back(monkeypatch):
    make_profile("small", max_listeners=1)

    async def scenario():
        runtime = get_runtime()

        def broken_subscribe(config):
            raise RuntimeError("a bug after admission")

        monkeypatch.setattr(runtime.hubs, "subscribe", broken_subscribe)
        client = AsyncClient(raise_request_exception=False)
        for _ in range(2):
            response = await client.post("/whep/small/", AIORTC_OFFER, content_type="application/sdp")
            assert response.status_code == 500
            assert held(runtime) == NOTHING
        monkeypatch.undo()
        status, headers, _ = await post_offer(async_http(), "small")
        assert status == 201
        await async_http()("DELETE", headers["location"])

    run(scenario())


def test_a_whep_session_follows_a_bitrate_change_without_reconnecting():
    profile = make_profile("live", audio_bitrate=96_000)

    async def scenario():
        runtime = get_runtime()
        listener = WhepListener(async_http(), "/whep/live/")
        await listener.connect()
        await listener.listen_for(0.5)
        peer = next(iter(runtime.peers))
        assert peer.track.hub.config.opus_bitrate == 96_000
        await asyncio.to_thread(save_profile, profile, audio_bitrate=32_000)
        await until(lambda: peer.track.hub.config.opus_bitrate == 32_000, 5, "the session to switch streams")
        assert runtime.peers == {peer} and len(whep.resources()) == 1
        before = len(listener.heard.chunks)
        await until(lambda: len(listener.heard.chunks) > before + 25, 5, "sound on the new stream")
        await listener.delete()
        await listener.close()
        assert held(runtime) == NOTHING

    run(scenario())


CHANGES = {
    "switched off": (dict(enabled=False), "stream-stopped"),
    "codec changed": (dict(codec="pcmu", channels=1, audio_bitrate=64_000), "renegotiate"),
    "now a secret link": (dict(access="link"), "forbidden"),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_change_that_the_session_cannot_follow_ends_it_and_gives_everything_back(change):
    profile = make_profile("live")

    async def scenario():
        runtime = get_runtime()
        listener = WhepListener(async_http(), "/whep/live/")
        await listener.connect()
        await listener.listen_for(0.3)
        fields, why = CHANGES[change]
        await asyncio.to_thread(save_profile, profile, **fields)
        await until(lambda: held(runtime) == NOTHING, 5, "the session to end")
        await until(lambda: listener.pc.connectionState in ("closed", "failed"), 40, "the player to see the end")
        status, _, body = await listener.delete()
        assert status == 200 and f"already ended ({why})" in body
        await listener.close()

    run(scenario())


def test_deleting_the_profile_ends_its_sessions():
    profile = make_profile("live")

    async def scenario():
        runtime = get_runtime()
        listener = WhepListener(async_http(), "/whep/live/")
        await listener.connect()
        await asyncio.to_thread(profile.delete)
        await until(lambda: held(runtime) == NOTHING, 5, "the session to end")
        await listener.close()

    run(scenario())


# Trickle ICE (PATCH)

def server_remote_candidates():
    (resource,) = whep.resources().values()
    transceiver = resource.session.peer.pc.getTransceivers()[0]
    return transceiver.receiver.transport.transport.getRemoteCandidates()


def test_trickled_candidates_reach_the_servers_ice_agent_and_connect():
    make_profile("hall", sine_frequency=440)

    async def scenario():
        runtime = get_runtime()
        http = async_http()
        listener = WhepListener(http, "/whep/hall/", offer_edit=lambda offer: ask_for_stereo(without_candidates(offer)))
        await listener.connect()
        assert server_remote_candidates() == []
        local = listener.pc.localDescription.sdp
        ufrag, pwd = (re.search(rf"a={name}:(\S+)", local).group(1) for name in ("ice-ufrag", "ice-pwd"))
        candidates = re.findall(r"a=(candidate:\S.*)", local)
        assert candidates
        status, headers, body = await http("PATCH", listener.location, fragment(ufrag, pwd, candidates), {
            "Content-Type": "application/trickle-ice-sdpfrag", "If-Match": listener.headers["etag"]})
        assert status == 204 and body == ""
        assert headers["etag"] == listener.headers["etag"]
        found = server_remote_candidates()
        assert [(c.ip, c.port) for c in found] == [(c.split()[4], int(c.split()[5])) for c in candidates]
        heard = await listener.listen_for(1.0)
        await listener.delete()
        await listener.close()
        assert held(runtime) == NOTHING
        return heard

    heard = run(scenario())
    assert abs(dominant_frequency(heard.samples()[int(0.2 * heard.sample_rate):, 0], heard.sample_rate) - 440) <= 5


def test_trickled_candidates_follow_the_offer_rules_other_addresses_dropped_at_most_20():
    make_profile("hall")
    candidates = [f"candidate:{i} 1 udp 2130706431 127.0.0.1 {40000 + i} typ host" for i in range(30)]
    candidates.insert(0, "candidate:x 1 udp 2130706431 192.0.2.7 40000 typ host")  # not an allowed address
    candidates.insert(1, "candidate:y 1 udp 2130706431 host.local 40000 typ host")
    candidates.insert(2, "candidate:not a candidate")

    async def scenario():
        http = async_http()
        status, headers, _ = await post_offer(http, "hall", without_candidates(AIORTC_OFFER))
        status, _, _ = await http("PATCH", headers["location"], fragment("8os6", "KcHy6t38T7yENFhqbulFUt", candidates),
                                  {"Content-Type": "application/trickle-ice-sdpfrag"})
        found = server_remote_candidates()
        await http("DELETE", headers["location"])
        return status, found

    status, found = run(scenario())
    assert status == 204
    assert len(found) == 20 and {c.ip for c in found} == {"127.0.0.1"}


def test_patch_refusals():
    """415 for another type, 412 for another ICE session's tag, 422 for an ICE restart (not
    supported; the session goes on), 404 for a session that is not there."""
    make_profile("hall")

    async def scenario():
        http = async_http()
        status, headers, _ = await post_offer(http, "hall")
        location, same = headers["location"], fragment("8os6", "KcHy6t38T7yENFhqbulFUt", [])
        sdpfrag = {"Content-Type": "application/trickle-ice-sdpfrag"}
        answers = {
            "wrong type": await http("PATCH", location, same, {"Content-Type": "application/sdp"}),
            "stale tag": await http("PATCH", location, same, {**sdpfrag, "If-Match": '"0000"'}),
            "restart": await http("PATCH", location, fragment("new1", "newpasswordnewpassword12", []),
                                  {**sdpfrag, "If-Match": "*"}),
            "restart without If-Match": await http("PATCH", location, fragment("new1", "newpassword", []), sdpfrag),
            "too large": await http("PATCH", location, same + "a=x:" + "y" * 64 * 1024 + "\r\n", sdpfrag),
            "unknown session": await http("PATCH", "/whep/hall/no-such-session/", same, sdpfrag),
            "another stream's path": await http("PATCH", location.replace("/hall/", "/other/"), same, sdpfrag),
        }
        still_there = held(get_runtime())["sessions"]
        await http("DELETE", location)
        return answers, still_there

    answers, still_there = run(scenario())
    assert {case: status for case, (status, _, _) in answers.items()} == {
        "wrong type": 415, "stale tag": 412, "restart": 422, "restart without If-Match": 422, "too large": 413,
        "unknown session": 404, "another stream's path": 404}
    assert answers["wrong type"][1]["accept-patch"] == "application/trickle-ice-sdpfrag"
    assert "POST a new offer" in answers["restart"][2]
    assert still_there == 1  # a refused restart leaves the session as it was


def test_the_csrf_check_does_not_refuse_whep_requests_and_cookies_grant_nothing():
    """Django's test client skips CSRF checks unless asked: ask, as a browser's request would be checked."""
    make_profile("hall")
    StreamProfile.objects.create(name="login", slug="login", access="login")
    user = get_user_model().objects.create_user("listener", password="listener-pw-1")

    client = AsyncClient(enforce_csrf_checks=True)
    client.force_login(user)

    async def scenario():
        http = async_http(client)
        status, headers, _ = await post_offer(http, "hall")
        patched = await http("PATCH", headers["location"], fragment("8os6", "KcHy6t38T7yENFhqbulFUt", []),
                             {"Content-Type": "application/trickle-ice-sdpfrag"})
        deleted = await http("DELETE", headers["location"])
        login_only = await post_offer(http, "login")  # a signed-in user's cookie does not open it
        return status, patched[0], deleted[0], login_only[0]

    assert run(scenario()) == (201, 204, 200, 403)


def test_a_second_offer_needs_a_new_post_each_post_is_its_own_session():
    make_profile("hall")

    async def scenario():
        http = async_http()
        first = await post_offer(http, "hall")
        second = await post_offer(http, "hall")
        assert first[1]["location"] != second[1]["location"]
        assert held(get_runtime())["sessions"] == 2
        for response in (first, second):
            assert (await http("DELETE", response[1]["location"]))[0] == 200
        assert held(get_runtime())["peers"] == 0

    run(scenario())


def test_the_peer_is_a_real_listener_for_aiortc_too():
    """The answer is usable as is by an aiortc client that does nothing WHEP-specific."""
    make_profile("hall")

    async def scenario():
        pc = RTCPeerConnection()
        pc.addTransceiver("audio", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        http = async_http()
        status, headers, answer = await post_offer(http, "hall", pc.localDescription.sdp)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        await until(lambda: pc.connectionState == "connected", 10, "the connection")
        await http("DELETE", headers["location"])
        await pc.close()
        return status

    assert run(scenario()) == 201
