"""WHEP over a real daphne: an aiortc client POSTing over HTTP, and Chromium playing through
`whip-whep`'s WHEPClient (npm, tests/package.json: a WHEP client this project did not write)
on a page of another origin, so CORS, its preflights, the Bearer key, the Link headers, trickle
ICE (it POSTs its offer before gathering, then PATCHes the candidates) and DELETE are all real."""
import asyncio
import functools
import http.server
import json
import shutil
import threading
from pathlib import Path

import pytest

from tests.helpers import make_profile, run
from tests.listener import dominant_frequency
from tests.rigs.chromium import chromium_page, peak_frequency
from tests.rigs.whep import WhepListener, http_over_socket
from tests.waiting import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

WHEP_JS = Path(__file__).parent / "node_modules" / "whip-whep" / "whep.js"
KEY = "the-right-key-0123456789"
ICE_SERVERS = [{"urls": "stun:127.0.0.1:3478"},
               {"urls": "turn:127.0.0.1:3478?transport=udp", "username": "caster", "credential": "a-long-secret"}]


@pytest.fixture(autouse=True)
def orm_beside_playwright(monkeypatch):
    # Playwright's sync API keeps an asyncio loop running in this thread; our ORM calls stay synchronous.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


def test_an_aiortc_client_hears_440_hz_over_http_and_delete_frees_the_peer_at_once(server):
    make_profile("whep-tone", sine_frequency=440)

    async def scenario():
        listener = WhepListener(http_over_socket(server.url("")), "/whep/whep-tone/")
        try:
            await listener.connect()
            heard = await listener.listen_for(2.0)
            assert (await asyncio.to_thread(server.status))["peers"] == 1
            status, _, _ = await listener.delete()
            peers_after = (await asyncio.to_thread(server.status))["peers"]  # asked once, right after
        finally:
            await listener.close()
        return heard, status, peers_after

    heard, status, peers_after = run(scenario())
    assert (status, peers_after) == (200, 0)
    samples = heard.samples()[int(0.2 * heard.sample_rate):]
    assert abs(dominant_frequency(samples[:, 0], heard.sample_rate) - 440) <= 5
    assert "WHEP session ended by the player (DELETE)" in server.log()


PLAYER_HTML = """<!doctype html>
<meta charset="utf-8"><title>A WHEP player of another site</title>
<audio id="player" autoplay></audio>
<script type="module">
import { WHEPClient } from "./whep.js";
window.errors = [];
window.requests = [];  // [method, status] of each request the client makes (preflights are the browser's own)
const fetchAsIs = window.fetch.bind(window);
window.fetch = async (url, options = {}) => {
  const response = await fetchAsIs(url, options);
  window.requests.push([options.method || "GET", response.status]);
  return response;
};
window.addEventListener("unhandledrejection", (event) => window.errors.push(String(event.reason)));
window.play = async (url, token) => {
  const pc = window.pc = new RTCPeerConnection();
  pc.addTransceiver("audio", { direction: "recvonly" });
  pc.ontrack = (event) => {
    document.querySelector("#player").srcObject = event.streams[0] || new MediaStream([event.track]);
  };
  window.whep = new WHEPClient();
  await window.whep.view(pc, url, token);
};
window.stop = () => window.whep.stop();
</script>
"""


class QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def player_site(tmp_path):
    """A page of another origin (another port) with the npm package's whep.js, served on 127.0.0.1."""
    if not WHEP_JS.exists():
        pytest.fail(f"{WHEP_JS} is missing: run scripts/setup.sh --dev (it installs tests/package.json)")
    shutil.copy(WHEP_JS, tmp_path / "whep.js")
    (tmp_path / "index.html").write_text(PLAYER_HTML)
    site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietFiles, directory=str(tmp_path)))
    thread = threading.Thread(target=site.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{site.server_address[1]}/index.html"
    site.shutdown()
    site.server_close()


def test_chromium_plays_a_secret_stream_through_the_whip_whep_client_from_another_site(own_server, player_site):
    make_profile("whep-secret", sine_frequency=440, access="link", access_key=KEY)
    server = own_server({"RTC_ICE_SERVERS": json.dumps(ICE_SERVERS)})
    endpoint = server.url("/whep/whep-secret/")
    with chromium_page() as page:
        page.goto(player_site)
        page.evaluate("([url, token]) => window.play(url, token)", [endpoint, KEY])
        wait_for(lambda: page.evaluate("window.pc.connectionState") == "connected", 20, "the player to connect")
        wait_for(lambda: (peak := peak_frequency(page)) and abs(peak["frequency"] - 440) <= 5 and peak["level"] > -60,
                 20, "440 Hz in Chromium")
        assert server.status()["connected_peers"] == 1
        # The client took the ICE servers from the answer's Link headers, credentials included.
        servers = page.evaluate("window.pc.getConfiguration().iceServers")
        assert [(s["urls"] if isinstance(s["urls"], str) else s["urls"][0], s.get("username") or None,
                 s.get("credential") or None) for s in servers] == [("stun:127.0.0.1:3478", None, None),
                                      ("turn:127.0.0.1:3478?transport=udp", "caster", "a-long-secret")]
        page.evaluate("window.stop()")  # closes its connection (which ends the session at once), then DELETEs
        assert server.status()["peers"] == 0  # asked once, right after the DELETE's answer
        requests = page.evaluate("window.requests")
        errors = page.evaluate("window.errors")
    assert errors == []
    assert requests[0] == ["POST", 201] and requests[-1] == ["DELETE", 200]
    assert requests[1:-1] and all(request == ["PATCH", 204] for request in requests[1:-1])  # trickle ICE
    assert "trickled candidate(s) added" in server.log()


def test_chromium_with_the_wrong_key_is_refused_with_401_and_an_unknown_stream_with_404(server, player_site):
    make_profile("whep-guarded", access="link", access_key=KEY)
    with chromium_page() as page:
        page.goto(player_site)
        error = page.evaluate("""(url) => window.play(url, "guess").then(() => "played", (e) => String(e))""",
                              server.url("/whep/whep-guarded/"))
        unknown = page.evaluate("""(url) => window.play(url, "guess").then(() => "played", (e) => String(e))""",
                                server.url("/whep/no-such-stream/"))
    # The statuses reached the page of another site (CORS headers on the refusals too).
    assert error == "Error: Request rejected with status 401"
    assert unknown == "Error: Request rejected with status 404"
    assert server.status()["peers"] == 0
