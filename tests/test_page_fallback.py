"""The listener page's HTTP fallback (static/streams/fallback.js): where WebRTC cannot play, the
page plays /stream/<slug>.ogg in an <audio> element, with its meters, and goes back to WebRTC
when it can. In Chromium (Playwright, headless) against a real daphne: without RTCPeerConnection,
with no UDP path between page and server, and for a browser that can play neither; and in
WebKitGTK, which Debian builds without WebRTC (tests/rigs/webkit.py, under Xvfb, with sound into
the PulseAudio rig)."""
import json
import queue
import re
import subprocess
import threading

import numpy as np
import pytest
from django.conf import settings

from streams.models import StreamProfile
from tests.helpers import make_profile
from tests.rigs.chromium import chromium_page, peak_frequency
from tests.rigs.daphne import daphne_servers
from tests.rigs.page_meters import meter_hears, meter_rms_db
from tests.rigs.webkit import WebKitPage
from tests.waiting import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.times_sound]

LEFT_HZ, RIGHT_HZ = 440, 660
RETRY_WEBRTC_EVERY_MS = 30_000  # static/streams/page.js: RETRY_WEBRTC_EVERY_S

# What a browser without WebRTC looks like to the page (Debian's WebKitGTK, say).
NO_WEBRTC_JS = "delete window.RTCPeerConnection; delete window.webkitRTCPeerConnection;"
# ... and one whose <audio> cannot play Ogg Opus either.
NO_OGG_JS = """
const canPlayType = HTMLMediaElement.prototype.canPlayType;
HTMLMediaElement.prototype.canPlayType = function (type) {
  return /ogg|opus/i.test(type) ? "" : canPlayType.call(this, type);
};
"""
# The page's playback decision on the console: Playwright's page queries count as a user gesture
# (which would let the page play), so a test of a page that needs a tap waits on this instead.
REPORT_PLAYBACK_JS = """
new MutationObserver(() => {
  const playback = document.getElementById("listener").dataset.playback;
  if (playback && playback !== window.__reported) console.debug(`playback: ${window.__reported = playback}`);
}).observe(document, { attributes: true, subtree: true, attributeFilter: ["data-playback"] });
"""

# Records what the page sends out, on every frame from the moment it is called: the loudness
# (RMS, dBFS, the louder channel) of the fallback's output (after its gain, where it fades
# out) and of the WebRTC stream the player plays, each through an analyser of its own.
RECORD_OUTPUTS_JS = """() => {
  const { meters, fallback, player } = window.rtcCaster;
  const context = meters.context;
  const analyser = () => Object.assign(context.createAnalyser(), { fftSize: 1024 });
  const level = (node) => {
    const samples = new Float32Array(node.fftSize);
    node.getFloatTimeDomainData(samples);
    const rms = Math.sqrt(samples.reduce((sum, s) => sum + s * s, 0) / samples.length);
    return rms > 0 ? 20 * Math.log10(rms) : -120;
  };
  const fromFallback = analyser();
  fallback.route.gain.connect(fromFallback);
  let stream = null, fromWebRtc = null;
  window.__outputs = [];
  const record = (now) => {
    if (player.srcObject !== stream && player.srcObject) {
      stream = player.srcObject;
      fromWebRtc = analyser();
      context.createMediaStreamSource(stream).connect(fromWebRtc);
    }
    const webRtcPlays = fromWebRtc && !player.paused;
    window.__outputs.push([now, level(fromFallback), webRtcPlays ? level(fromWebRtc) : -120]);
    requestAnimationFrame(record);
  };
  requestAnimationFrame(record);
}"""


def longest_ms(outputs, condition):
    """The longest run of recorded frames meeting condition(fallback_db, webrtc_db), in ms."""
    longest, since = 0.0, None
    for now, fallback_db, webrtc_db in outputs:
        if condition(fallback_db, webrtc_db):
            since = now if since is None else since
            longest = max(longest, now - since)
        else:
            since = None
    return longest


# Helpers for both a Playwright page and a WebKitPage: JavaScript expressions only.
def status(page):
    state, text = page.evaluate("[document.getElementById('status').dataset.state, "
                                "document.getElementById('status').textContent]")
    return state, text


def transport(page):
    return page.evaluate("window.rtcCaster.transport")


def meters_show_both_tones(page):
    return (meter_hears(page, 0, LEFT_HZ, RIGHT_HZ) and meter_hears(page, 1, RIGHT_HZ, LEFT_HZ)
            and all(abs(meter_rms_db(page, c) + 9.0) < 1.5 for c in "LR"))  # a full-scale/2 sine: -9 dBFS RMS


def on_fallback(page):
    state, text = status(page)
    return transport(page) == "http" and state == "fallback" and "fallback: higher latency" in text


def stream_requests(requests, slug):
    return [url for url in requests if f"/stream/{slug}.ogg" in url]


def test_without_rtcpeerconnection_the_page_plays_the_ogg_stream_with_both_tones_on_the_meters(server):
    make_profile("no-webrtc", sine_frequency=LEFT_HZ, sine_frequency_right=RIGHT_HZ)
    with chromium_page() as page:
        requests, sockets = [], []
        page.on("request", lambda request: requests.append(request.url))
        page.on("websocket", lambda socket: sockets.append(socket.url))
        page.add_init_script(NO_WEBRTC_JS)
        page.goto(server.url("/listen/no-webrtc/"))
        wait_for(lambda: on_fallback(page) and "Playing over HTTP" in status(page)[1], 15, "the page on the fallback")
        print(f"status: {status(page)[1]!r}")
        assert "no WebRTC" in status(page)[1]
        wait_for(lambda: page.evaluate("window.rtcCaster.playback"), 10, "the page's playback decision")
        assert page.evaluate("window.rtcCaster.playback") == "autoplay"
        wait_for(lambda: meters_show_both_tones(page), 15, f"{LEFT_HZ} Hz left, {RIGHT_HZ} Hz right at -9 dBFS")
        assert page.inner_text('[data-stat="codec"]') == "opus (Ogg over HTTP)"
        assert stream_requests(requests, "no-webrtc") == [server.url("/stream/no-webrtc.ogg")]
        assert sockets == [] and page.evaluate("window.rtcCaster.connection.attempts") == 0


def test_the_fallback_of_a_secret_link_stream_carries_the_pages_key(server):
    profile = make_profile("secret-fallback", access=StreamProfile.Access.SECRET_LINK)
    with chromium_page() as page:
        requests = []
        page.on("request", lambda request: requests.append(request.url))
        page.add_init_script(NO_WEBRTC_JS)
        page.goto(server.url(f"/listen/secret-fallback/?key={profile.access_key}"))
        wait_for(lambda: "Playing over HTTP" in status(page)[1], 15, "the fallback playing")
    assert stream_requests(requests, "secret-fallback") == [
        server.url(f"/stream/secret-fallback.ogg?key={profile.access_key}")]


def test_on_the_fallback_without_autoplay_sound_starts_with_the_tap(server):
    make_profile("fallback-tap", sine_frequency=LEFT_HZ, sine_frequency_right=RIGHT_HZ)
    with chromium_page(autoplay=False) as page:
        requests = []
        page.on("request", lambda request: requests.append(request.url))
        page.add_init_script(NO_WEBRTC_JS + REPORT_PLAYBACK_JS)
        decision = page.expect_console_message(lambda message: message.text.startswith("playback: "), timeout=20_000)
        with decision as decided:
            page.goto(server.url("/listen/fallback-tap/"))
        assert decided.value.text == "playback: waiting-for-tap"
        assert page.is_visible("#listen") and on_fallback(page)
        # Refused before the tap: the stream is not kept open to fall behind.
        assert page.evaluate("window.rtcCaster.fallback.streaming") is False
        page.click("#listen")
        wait_for(lambda: page.get_attribute("#listener", "data-playback") == "tap", 10, "playback started by the tap")
        wait_for(lambda: meters_show_both_tones(page), 15, "both tones on the meters after the tap")
        assert "Playing over HTTP" in status(page)[1]
        print(f"stream requests: {stream_requests(requests, 'fallback-tap')}")  # Chromium: only the tap's


def test_on_the_fallback_the_page_plays_again_by_itself_after_the_server_restarts(tmp_path):
    make_profile("http-restart", sine_frequency=LEFT_HZ, sine_frequency_right=RIGHT_HZ)
    with daphne_servers(settings.DATABASES["default"]["NAME"], tmp_path) as start_server:
        first = start_server()
        with chromium_page() as page:
            page.add_init_script(NO_WEBRTC_JS)
            page.goto(first.url("/listen/http-restart/"))
            wait_for(lambda: meters_show_both_tones(page), 20, "both tones before the restart")
            first.kill()
            # The browser may keep waiting for the stream on its own; the page gives it 8 s.
            wait_for(lambda: "The HTTP stream was interrupted. Trying again in" in status(page)[1], 15, "the countdown")
            start_server(port=first.port)
            wait_for(lambda: "Playing over HTTP" in status(page)[1], 15, "the fallback playing again")
            wait_for(lambda: meters_show_both_tones(page), 15, "both tones after the restart")
            assert page.evaluate("window.rtcCaster.fallback.attempts") >= 2
            assert page.evaluate("performance.getEntriesByType('navigation').length") == 1  # no reload


class IceBlocker:
    """Sits on the page's signaling socket (Playwright's WebSocket routing) and, while `blocked`,
    leaves no UDP path between the page and the server, as a firewall would: the page's offer
    keeps no candidate, and the server's candidates in its answer point to port 9 of 127.0.0.1,
    where nothing listens. ICE then cannot connect: the page stops waiting for it after a few
    seconds, and the server closes the socket after RTC_ICE_TIMEOUT_SECONDS (4408)."""

    def __init__(self, page):
        self.blocked = True
        self.offers = 0
        page.route_web_socket(re.compile(r".*/ws/listen/.*"), self.route)

    def route(self, ws):
        server = ws.connect_to_server()
        ws.on_message(lambda message: server.send(self.edit(message)))
        server.on_message(lambda message: ws.send(self.edit(message)))

    def edit(self, message):
        data = json.loads(message)
        kind = data.get("type")
        self.offers += kind == "offer"
        if not self.blocked or kind not in ("offer", "answer"):
            return message
        lines = data["sdp"].splitlines(True)
        if kind == "offer":
            lines = [line for line in lines if not line.startswith("a=candidate:")]
        else:
            lines = [re.sub(r"^(a=candidate:\S+ \d+ udp \d+ \S+) \d+ ", r"\1 9 ", line) for line in lines]
        data["sdp"] = "".join(lines)
        return json.dumps(data)


def test_without_a_udp_path_the_page_plays_the_fallback_and_goes_back_to_webrtc_without_a_gap(server):
    make_profile("no-udp", sine_frequency=LEFT_HZ, sine_frequency_right=RIGHT_HZ)
    with chromium_page() as page:
        blocker = IceBlocker(page)
        page.clock.install()  # the page's timers run in real time; the retry's wait is skipped below
        page.goto(server.url("/listen/no-udp/"))
        wait_for(lambda: on_fallback(page), 20, "the page on the fallback")
        print(f"status after {page.evaluate('performance.now()') / 1000:.1f} s: {status(page)[1]!r}")
        wait_for(lambda: meters_show_both_tones(page), 15, "both tones on the meters from the Ogg stream")
        assert page.evaluate("window.rtcCaster.player.paused")  # the WebRTC player is not what plays
        # The attempt that failed has ended (here or on the server) and the next one waits.
        wait_for(lambda: page.evaluate("window.rtcCaster.connection.retryTimer !== null"), 30,
                 "the next attempt planned")
        assert on_fallback(page)  # an attempt failing on the fallback changes nothing on the page
        offers = blocker.offers
        blocker.blocked = False
        # The page's clock moved on instead of waiting: to a second before the attempt is due, 30 s
        # after the last one began (nothing yet), then past it.
        started = page.evaluate("window.rtcCaster.connection.startedAt")
        page.clock.fast_forward(int(started + RETRY_WEBRTC_EVERY_MS - page.evaluate("performance.now()")) - 1000)
        assert page.evaluate("window.rtcCaster.connection.startedAt") == started, "an attempt before its time"
        page.clock.fast_forward(2000)
        unblocked_at = page.evaluate("performance.now()")
        page.evaluate(RECORD_OUTPUTS_JS)
        wait_for(lambda: transport(page) == "webrtc" and status(page)[0] == "connected", 10, "WebRTC again")
        back_after_s = (page.evaluate("performance.now()") - unblocked_at) / 1000
        print(f"back on WebRTC {back_after_s:.1f} s after the page's clock passed the planned attempt")
        assert blocker.offers == offers + 1  # the planned attempt, and only it
        wait_for(lambda: page.evaluate("!window.rtcCaster.fallback.streaming"), 5, "the Ogg stream ended")
        assert not page.evaluate("window.rtcCaster.player.paused")
        wait_for(lambda: peak_frequency(page, 0) and abs(peak_frequency(page, 0)["frequency"] - LEFT_HZ) <= 5, 15,
                 "440 Hz in the WebRTC player")
        wait_for(lambda: meters_show_both_tones(page), 15, "both tones on the meters from WebRTC")
        outputs = page.evaluate("window.__outputs")
        filled = next(i for i, (_, fallback_db, _) in enumerate(outputs) if fallback_db > -30)  # its analyser's first
        outputs = outputs[filled:]
        gap = longest_ms(outputs, lambda fallback_db, webrtc_db: max(fallback_db, webrtc_db) < -30)
        overlap = longest_ms(outputs, lambda fallback_db, webrtc_db: min(fallback_db, webrtc_db) >= -30)
        print(f"switch: longest silence {gap:.0f} ms, both heard for {overlap:.0f} ms ({len(outputs)} frames)")
        assert gap < 50 and overlap < 1000


def test_a_browser_that_can_play_neither_says_so_and_requests_nothing_more(server):
    make_profile("neither")
    with chromium_page() as page:
        requests, sockets = [], []
        page.on("request", lambda request: requests.append(request.url))
        page.on("websocket", lambda socket: sockets.append(socket.url))
        page.clock.install()  # the page's timers, run on demand below
        page.add_init_script(NO_WEBRTC_JS + NO_OGG_JS)
        page.goto(server.url("/listen/neither/"))
        wait_for(lambda: status(page)[0] == "unsupported", 10, "the page to say it cannot play")
        print(f"status: {status(page)[1]!r}")
        assert status(page)[1].startswith("This browser can play neither WebRTC nor Ogg Opus audio")
        loaded = list(requests)
        page.clock.run_for("10:00")  # ten minutes of the page's timers: any retry would have run
        assert page.evaluate("[window.rtcCaster.connection.attempts, window.rtcCaster.fallback.attempts]") == [0, 0]
        assert status(page)[0] == "unsupported"
    assert requests == loaded and sockets == []
    assert not [url for url in requests if "/stream/" in url or "/ws/" in url]


def record(pulse, source, seconds, rate=48_000, timeout=15):
    """`seconds` of what `source` of the PulseAudio rig hears, as float samples (n, 2)."""
    wanted = int(seconds * rate) * 2 * 2
    parec = subprocess.Popen(["parec", f"--device={source}", f"--rate={rate}", "--channels=2", "--format=s16le",
                              "--raw", "--latency-msec=20"], env=pulse.child_env(), stdout=subprocess.PIPE)
    chunks = queue.Queue()
    threading.Thread(target=lambda: chunks.put(parec.stdout.read(wanted)), daemon=True).start()
    try:
        data = chunks.get(timeout=timeout)
    finally:
        parec.terminate()
        parec.wait(5)
        parec.stdout.close()
    return np.frombuffer(data, dtype="<i2").reshape(-1, 2) / 32768.0


def tone_of(samples, rate=48_000):
    """The strongest frequency of a channel and its level over the whole spectrum (dB of power)."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples)))) ** 2
    peak = int(np.argmax(spectrum[1:])) + 1
    return peak * rate / len(samples), 10 * np.log10(spectrum[peak] / spectrum.sum())


def test_webkitgtk_without_webrtc_plays_the_ogg_stream_on_its_meters_and_out_through_pulseaudio(
        server, pulse, tmp_path):
    make_profile("webkit", sine_frequency=LEFT_HZ, sine_frequency_right=RIGHT_HZ)
    # GStreamer says which elements it makes: the audio sink must be pulsesink.
    with WebKitPage(pulse.env, tmp_path / "webkit.log", gst_debug="GST_ELEMENT_FACTORY:4") as page:
        print(f"WebKitGTK {page.version}")
        page.goto(server.url("/listen/webkit/"))
        wait_for(lambda: page.evaluate("Boolean(window.rtcCaster)"), 10, "the page's script")
        assert page.evaluate("typeof RTCPeerConnection") == "undefined"  # Debian's build, WebRTC switched on
        wait_for(lambda: on_fallback(page) and "Playing over HTTP" in status(page)[1], 20, "the page on the fallback")
        print(f"status: {status(page)[1]!r}")
        wait_for(lambda: page.evaluate("window.rtcCaster.playback"), 10, "the page's playback decision")
        assert page.evaluate("window.rtcCaster.playback") == "autoplay"
        # GStreamer plays about the first second at once, then stops to fill its buffer (seconds);
        # past 2 s of the stream it plays on steadily.
        wait_for(lambda: page.evaluate("window.rtcCaster.fallback.audio.currentTime") > 2, 20,
                 "2 s of the stream played")
        print(f"2 s played {page.evaluate('performance.now()') / 1000:.1f} s after the page began to load")
        wait_for(lambda: meters_show_both_tones(page), 10, f"{LEFT_HZ} Hz left, {RIGHT_HZ} Hz right at -9 dBFS")
        assert page.evaluate("window.rtcCaster.connection.attempts") == 0
        # What WebKit sends to PulseAudio, through GStreamer's pulsesink (its stream properties
        # name WebKit's web process and its role), is the stream itself, each tone on its side.
        inputs = pulse.pactl("list", "sink-inputs")
        print(inputs)
        assert 'application.process.binary = "WebKitWebProcess"' in inputs
        # GStreamer's pulsesink may still glitch once while it settles (one suite run: -3.6 dB in a
        # 1 s recording): the cleanest of three seconds is judged.
        heard = record(pulse, "virt.monitor", 3.0)
        seconds = [heard[i * 48_000:(i + 1) * 48_000] for i in range(len(heard) // 48_000)]
        tones = [(tone_of(second[:, 0]), tone_of(second[:, 1])) for second in seconds]
        (left_hz, left_db), (right_hz, right_db) = max(tones, key=lambda pair: min(pair[0][1], pair[1][1]))
        print(f"PulseAudio heard {left_hz:.1f} Hz left ({left_db:.1f} dB), {right_hz:.1f} Hz right ({right_db:.1f} dB)")
        assert abs(left_hz - LEFT_HZ) < 3 and abs(right_hz - RIGHT_HZ) < 3
        assert left_db > -3 and right_db > -3  # the tone is nearly all of each channel's power
    assert 'creating element "pulsesink"' in (tmp_path / "webkit.log").read_text(errors="replace")
