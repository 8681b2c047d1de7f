"""The listener page in a real Firefox (Debian's firefox-esr, headless, over WebDriver BiDi)
against a real daphne, both inside a network namespace that has only `lo` (tests/rigs/firefox.py)."""
import pytest
from django.conf import settings

from streams.models import StreamProfile
from tests.rigs.firefox import LOOPBACK, FirefoxPage, LoopbackNamespace, NamespacedDaphne
from tests.rigs.process import accepts_tcp
from tests.waiting import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

LEFT_HZ, RIGHT_HZ = 440, 660

# The strongest frequency on one channel of the page's own meters (their analyser, 2048-point
# FFT, refined between bins), and the level there and at another frequency. null until the
# meters run.
METER_TONE_JS = """({channel, other}) => {
  const meters = window.rtcCaster.meters;
  const analyser = meters.analysers[channel];
  if (!analyser || !meters.context || meters.context.state !== "running") return null;
  const bins = new Float32Array(analyser.frequencyBinCount);
  analyser.getFloatFrequencyData(bins);
  let best = 1;
  for (let i = 2; i < bins.length - 1; i++) if (bins[i] > bins[best]) best = i;
  const [a, b, c] = [bins[best - 1], bins[best], bins[best + 1]];
  const hzPerBin = meters.context.sampleRate / analyser.fftSize;
  return { frequency: (best + 0.5 * (a - c) / (a - 2 * b + c)) * hzPerBin, level: b,
           otherLevel: bins[Math.round(other / hzPerBin)] };
}"""

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


def make_profile(slug, **fields):
    profile = StreamProfile(name=slug.title(), slug=slug, description=f"The {slug} test stream", **fields)
    profile.full_clean()
    profile.save()
    return profile


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
    """Starts daphne servers inside the namespace; stopped after the test."""
    started = []

    def start(port=None):
        log = tmp_path / f"daphne-{len(started)}.log"
        started.append(NamespacedDaphne(namespace, settings.DATABASES["default"]["NAME"], log, port=port).start())
        return started[-1]

    yield start
    for daphne in started:
        daphne.stop()


def status_state(page):
    return page.evaluate("document.getElementById('status').dataset.state")


def start_listening(page, server, slug):
    page.goto(server.url(f"/listen/{slug}/"))
    wait_for(lambda: status_state(page) == "connected", 20, "the page to connect")


def meter_hears(page, channel, hz, other_hz):
    """The tone `hz`, and not `other_hz`, on meter `channel`."""
    tone = page.call(METER_TONE_JS, {"channel": channel, "other": other_hz})
    if not tone or None in (tone["frequency"], tone["level"], tone["otherLevel"]):
        return False  # silence (every bin at -inf): no tone yet, e.g. just after a reconnect
    return abs(tone["frequency"] - hz) <= 5 and tone["level"] > -60 and tone["otherLevel"] < tone["level"] - 20


def meter_rms_db(page, channel):
    return float(page.evaluate(f"document.querySelector('#meters .meter[data-channel=\"{channel}\"]').dataset.rmsDb"))


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
