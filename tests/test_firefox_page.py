"""The listener page in a real Firefox (Debian's firefox-esr, headless, over WebDriver BiDi)
against a real daphne, both inside a network namespace that has only `lo` (tests/rigs/firefox.py)."""
import functools

import pytest
from django.conf import settings

from tests.helpers import make_profile
from tests.rigs.daphne import daphne_servers
from tests.rigs.firefox import LOOPBACK, FirefoxPage, LoopbackNamespace, NamespacedDaphne
from tests.rigs.page_meters import meter_hears, meter_rms_db
from tests.rigs.process import accepts_tcp
from tests.waiting import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.times_sound]

LEFT_HZ, RIGHT_HZ = 440, 660

# The ICE candidate pair the page's peer connection uses, from getStats(): the transport's
# selected pair where the browser names it, else the pair flagged `selected` (Firefox).
SELECTED_PAIR_JS = """async () => {
  const pc = window.rtcCaster.connection.pc;
  if (!pc || pc.connectionState !== "connected") return null;
  const report = await pc.getStats();
  let pair = null;
  report.forEach((s) => {
    if (s.type === "transport" && s.selectedCandidatePairId) pair = report.get(s.selectedCandidatePairId);
  });
  if (!pair) report.forEach((s) => { if (s.type === "candidate-pair" && s.selected) pair = s; });
  if (!pair) return null;
  const local = report.get(pair.localCandidateId), remote = report.get(pair.remoteCandidateId);
  const candidates = [];
  report.forEach((s) => { if (s.type.endsWith("-candidate")) candidates.push(`${s.type} ${s.address}`); });
  return { state: pair.state, local: local.address, remote: remote.address, protocol: local.protocol, candidates };
}"""


@pytest.fixture(scope="module")
def namespace():
    with LoopbackNamespace() as created:
        yield created


@pytest.fixture(scope="module")
def firefox(namespace, pulse, tmp_path_factory):
    with FirefoxPage(namespace, pulse.env, tmp_path_factory.mktemp("firefox") / "firefox.log") as page:
        print(f"Firefox {page.version}")
        yield page


@pytest.fixture
def start_server(namespace, django_db_setup, tmp_path):
    """Starts daphne servers inside the namespace, `start_server(port=None)`; stopped after the test."""
    with daphne_servers(settings.DATABASES["default"]["NAME"], tmp_path,
                        functools.partial(NamespacedDaphne, namespace)) as start:
        yield start


def status_state(page):
    return page.evaluate("document.getElementById('status').dataset.state")


def start_listening(page, server, slug):
    page.goto(server.url(f"/listen/{slug}/"))
    wait_for(lambda: status_state(page) == "connected", 20, "the page to connect")


def hears_both_tones(page):
    return meter_hears(page, 0, LEFT_HZ, RIGHT_HZ) and meter_hears(page, 1, RIGHT_HZ, LEFT_HZ)


def selected_pair(page):
    return page.call(SELECTED_PAIR_JS)


def assert_on_loopback(page):
    pair = wait_for(lambda: selected_pair(page), 10, "a selected ICE candidate pair")
    print(f"selected pair: {pair}")
    assert (pair["local"], pair["remote"], pair["state"]) == (LOOPBACK, LOOPBACK, "succeeded")


def test_the_namespace_has_only_loopback_and_the_server_in_it_is_unreachable_from_outside(namespace, start_server):
    assert namespace.interfaces() == ["lo"]
    server = start_server()
    assert not accepts_tcp(server.port)


def test_firefox_plays_each_stereo_tone_on_its_own_meter_over_loopback(firefox, start_server):
    make_profile("firefox-stereo", sine_frequency=LEFT_HZ, sine_frequency_right=RIGHT_HZ)
    server = start_server()
    start_listening(firefox, server, "firefox-stereo")
    wait_for(lambda: firefox.evaluate("window.rtcCaster.playback"), 10, "the page's playback decision")
    assert firefox.evaluate("window.rtcCaster.playback") == "autoplay"  # its AudioContext runs
    wait_for(lambda: meter_hears(firefox, 0, LEFT_HZ, RIGHT_HZ), 15, f"{LEFT_HZ} Hz alone on the left meter")
    wait_for(lambda: meter_hears(firefox, 1, RIGHT_HZ, LEFT_HZ), 15, f"{RIGHT_HZ} Hz alone on the right meter")
    # A full-scale/2 sine is -9.0 dBFS RMS on each channel.
    wait_for(lambda: all(abs(meter_rms_db(firefox, c) + 9.0) < 1.5 for c in "LR"), 10, "both meters at -9 dBFS RMS")
    assert_on_loopback(firefox)
    assert firefox.evaluate("window.rtcCaster.connection.attempts") == 1


def test_firefox_fills_the_stats_readout(firefox, start_server):
    make_profile("firefox-stats", audio_bitrate=64_000)
    server = start_server()
    start_listening(firefox, server, "firefox-stats")
    stats = "document.getElementById('stats')"
    wait_for(lambda: int(firefox.evaluate(f"{stats}.dataset.bitrateKbps || 0")) > 0, 10, "a bitrate in the readout")

    def stat(name):
        return firefox.evaluate(f"{stats}.querySelector('[data-stat=\"{name}\"]').textContent")

    assert stat("codec").startswith("opus 48 kHz stereo")
    assert 20 <= int(firefox.evaluate(f"{stats}.dataset.bitrateKbps")) <= 120
    assert stat("lost") == "0"
    assert stat("jitter").endswith(" ms")
    wait_for(lambda: stat("delay").endswith(" ms"), 10, "a playout delay")


def test_firefox_reconnects_by_itself_after_the_server_restarts_on_the_same_port(firefox, start_server):
    make_profile("firefox-restart", sine_frequency=LEFT_HZ, sine_frequency_right=RIGHT_HZ)
    first = start_server()
    start_listening(firefox, first, "firefox-restart")
    wait_for(lambda: hears_both_tones(firefox), 15, "both tones before the restart")
    first.kill()
    wait_for(lambda: "Reconnecting in" in firefox.evaluate("document.getElementById('status').textContent"), 10,
             "the countdown")
    start_server(port=first.port)
    restarted = firefox.evaluate("Date.now()")
    wait_for(lambda: status_state(firefox) == "connected", 15, "the page to reconnect")
    wait_for(lambda: hears_both_tones(firefox), 15, "both tones after the restart")
    assert firefox.evaluate("Date.now()") - restarted < 15_000
    assert firefox.evaluate("window.rtcCaster.connection.attempts") >= 2
    assert firefox.evaluate("performance.getEntriesByType('navigation').length") == 1  # no reload
    assert_on_loopback(firefox)
