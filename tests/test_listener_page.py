"""The listener page in a real Chromium (Playwright, headless) against a real daphne."""
import math

import pytest
from django.conf import settings

from streams.models import StreamProfile
from tests.rigs.browser_sound import chromium_sound_into, played_levels_db
from tests.rigs.chromium import chromium_page, peak_frequency
from tests.rigs.daphne import daphne_servers
from tests.waiting import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def orm_beside_playwright(monkeypatch):
    # Playwright's sync API keeps an asyncio loop running in this thread; our ORM calls stay synchronous.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


def make_profile(slug, **fields):
    fields = {"description": f"The {slug} test stream", **fields}
    profile = StreamProfile(name=slug.title(), slug=slug, **fields)
    profile.full_clean()
    profile.save()
    return profile


def status_state(page):
    return page.get_attribute("#status", "data-state")


def start_listening(page, server, slug):
    """Open the page; it connects by itself, and the rig's Chromium lets it autoplay."""
    page.goto(server.url(f"/listen/{slug}/"))
    wait_for(lambda: status_state(page) == "connected", 20, "the page to connect")


# For a Chromium that refuses autoplay: the page reports its playback decision on the console, and
# times a tap on #listen to the first meter frame with sound. Playwright's page queries count as a
# user gesture (which would let the page autoplay), so the test waits on the console message and
# does not query the page until the page has decided.
NO_AUTOPLAY_PROBES_JS = """
new MutationObserver(() => {
  const playback = document.getElementById("listener").dataset.playback;
  if (playback && playback !== window.__reported) console.debug(`playback: ${window.__reported = playback}`);
}).observe(document, { attributes: true, subtree: true, attributeFilter: ["data-playback"] });
document.addEventListener("click", (event) => {
  if (event.target.id !== "listen") return;
  const tapped = event.timeStamp;
  const poll = () => {
    const { left, right } = window.rtcCaster.meters.levels();
    if (Math.max(left.rmsDb, right.rmsDb) > -40) window.__tapToSoundMs = performance.now() - tapped;
    else requestAnimationFrame(poll);
  };
  poll();
}, { capture: true });
"""


def open_without_autoplay(page, server, slug):
    """Open the page in a `chromium_page(autoplay=False)`; returns its first playback decision."""
    page.add_init_script(NO_AUTOPLAY_PROBES_JS)
    with page.expect_console_message(lambda message: message.text.startswith("playback: "), timeout=20_000) as decided:
        page.goto(server.url(f"/listen/{slug}/"))
    return decided.value.text.removeprefix("playback: ")


# The browser's own jitter buffer over the last second or more of playout (inbound-rtp): its target
# and its actual delay, per emitted sample. null until a second has passed since the previous call.
RECENT_JITTER_BUFFER_JS = """async () => {
  const pc = window.rtcCaster.connection.pc;
  if (!pc) return null;
  let now = null;
  (await pc.getStats()).forEach((s) => { if (s.type === "inbound-rtp" && s.kind === "audio") now = s; });
  if (!now || !now.jitterBufferEmittedCount) return null;
  const base = window.__jitterBase;
  if (!base || base.pc !== pc) { window.__jitterBase = { pc, stat: now }; return null; }
  const emitted = now.jitterBufferEmittedCount - base.stat.jitterBufferEmittedCount;
  if (now.timestamp - base.stat.timestamp < 1000 || emitted <= 0) return null;
  window.__jitterBase = { pc, stat: now };
  return { targetMs: 1000 * (now.jitterBufferTargetDelay - base.stat.jitterBufferTargetDelay) / emitted,
           delayMs: 1000 * (now.jitterBufferDelay - base.stat.jitterBufferDelay) / emitted };
}"""


def recent_jitter_buffer(page):
    return page.evaluate(RECENT_JITTER_BUFFER_JS)


def buffering_under(page, ms):
    recent = recent_jitter_buffer(page)
    return recent if recent and recent["targetMs"] < ms and recent["delayMs"] < ms else None


def buffering_at_least(page, ms):
    recent = recent_jitter_buffer(page)
    return recent if recent and recent["targetMs"] >= ms and recent["delayMs"] >= ms else None


def meter(page, channel):
    row = page.locator(f'#meters .meter[data-channel="{channel}"]')
    return float(row.get_attribute("data-rms-db")), float(row.get_attribute("data-peak-db"))


def hears(page, channel, hz):
    peak = peak_frequency(page, channel)
    return bool(peak) and abs(peak["frequency"] - hz) <= 5 and peak["level"] > -60


def test_the_page_connects_and_plays_by_itself_where_autoplay_is_allowed(server):
    make_profile("autoplay", sine_frequency=440)
    with chromium_page() as page:
        page.goto(server.url("/listen/autoplay/"))
        wait_for(lambda: page.get_attribute("#listener", "data-playback"), 20, "the page's playback decision")
        assert page.get_attribute("#listener", "data-playback") == "autoplay"
        assert page.evaluate("window.rtcCaster.playback") == "autoplay"
        assert not page.is_visible("#listen")
        assert "started automatically" in page.inner_text("#playback")
        wait_for(lambda: status_state(page) == "connected", 10, "the page to connect")
        wait_for(lambda: hears(page, 0, 440), 15, "440 Hz")
        assert page.evaluate("!window.rtcCaster.player.paused && window.rtcCaster.meters.context.state") == "running"
        wait_for(lambda: abs(meter(page, "L")[0] + 9.0) < 1.5, 10, "the meter at -9 dBFS RMS")
        assert page.evaluate("window.rtcCaster.connection.attempts") == 1


def test_without_autoplay_the_page_is_connected_before_the_tap_and_sound_starts_within_300_ms_of_it(server):
    make_profile("tap", sine_frequency=440)
    with chromium_page(autoplay=False) as page:
        assert open_without_autoplay(page, server, "tap") == "waiting-for-tap"
        wait_for(lambda: status_state(page) == "connected", 20, "the page to connect before any tap")
        wait_for(lambda: int(page.get_attribute("#stats", "data-bitrate-kbps")) > 0, 10, "the stream arriving")
        assert page.evaluate("window.rtcCaster.playback") == "waiting-for-tap"
        assert page.is_visible("#listen") and page.inner_text("#listen") == "▶ Tap to listen"
        assert page.evaluate("window.rtcCaster.meters.context.state") == "suspended"
        page.click("#listen")
        tap_to_sound_ms = wait_for(lambda: page.evaluate("window.__tapToSoundMs"), 5, "sound after the tap")
        print(f"tap -> first meter frame with sound: {tap_to_sound_ms:.0f} ms")
        assert tap_to_sound_ms < 300
        wait_for(lambda: page.get_attribute("#listener", "data-playback") == "tap", 5, "playback started by the tap")
        assert page.evaluate("[window.rtcCaster.playback, window.rtcCaster.player.paused]") == ["tap", False]
        assert not page.is_visible("#listen")
        assert page.evaluate("window.rtcCaster.connection.attempts") == 1


def test_choosing_robust_latency_makes_the_browser_buffer_over_300_ms_where_low_stays_well_under(server):
    make_profile("buffered")
    with chromium_page() as page:
        start_listening(page, server, "buffered")
        assert page.input_value("#latency") == "low" and page.evaluate("window.rtcCaster.latency") == "low"
        # Start-up fills the buffer with what arrived before playout began; low drains it within seconds.
        wait_for(lambda: buffering_under(page, 150), 15, "the low-latency buffer to settle")
        low = wait_for(lambda: recent_jitter_buffer(page), 10, "the next second of playout with low latency")
        print(f"low: target {low['targetMs']:.0f} ms, delay {low['delayMs']:.0f} ms")
        assert low["targetMs"] < 150 and low["delayMs"] < 150
        page.select_option("#latency", "robust")
        assert page.evaluate("window.rtcCaster.latency") == "robust"
        robust = wait_for(lambda: buffering_at_least(page, 300), 15, "the jitter buffer to grow past 300 ms")
        print(f"robust: target {robust['targetMs']:.0f} ms, delay {robust['delayMs']:.0f} ms")
        assert page.evaluate("window.rtcCaster.connection.attempts") == 1  # changed live, no reconnect


def test_the_latency_choice_is_remembered_and_applied_to_the_next_connection(server):
    make_profile("remembered")
    with chromium_page() as page:
        start_listening(page, server, "remembered")
        page.select_option("#latency", "robust")
        page.reload()
        wait_for(lambda: status_state(page) == "connected", 20, "the page to connect again")
        assert page.input_value("#latency") == "robust" and page.evaluate("window.rtcCaster.latency") == "robust"
        robust = wait_for(lambda: buffering_at_least(page, 300), 15, "the new peer's buffer past 300 ms")
        print(f"robust after reload: target {robust['targetMs']:.0f} ms, delay {robust['delayMs']:.0f} ms")


def test_where_the_browser_lacks_jitter_buffer_target_the_latency_control_is_disabled_with_a_note(server):
    make_profile("other-browser")
    with chromium_page() as page:
        page.add_init_script("delete RTCRtpReceiver.prototype.jitterBufferTarget")
        page.goto(server.url("/listen/other-browser/"))
        assert page.is_disabled("#latency")
        assert "chooses its own buffer" in page.inner_text("#latency-note")


def test_stereo_tones_reach_the_left_and_right_meters_and_analysers(server):
    make_profile("split", sine_frequency=440, sine_frequency_right=1000)
    with chromium_page() as page:
        start_listening(page, server, "split")
        wait_for(lambda: hears(page, 0, 440), 15, "440 Hz on the left")
        wait_for(lambda: hears(page, 1, 1000), 15, "1000 Hz on the right")
        # A full-scale/2 sine is -9.0 dBFS RMS and -6.0 dBFS peak on each channel.
        wait_for(lambda: all(abs(meter(page, c)[0] + 9.0) < 1.5 for c in "LR"), 10, "both meters at -9 dBFS RMS")
        # The peak hold may first show the decoder's start-up transient; it falls back within seconds.
        wait_for(lambda: all(abs(meter(page, c)[1] + 6.0) < 1.0 for c in "LR"), 10, "both peaks at -6 dBFS")
        assert "dB" in page.inner_text('output.value[data-for="L"]')


def test_a_mono_stream_shows_on_both_meters_alike(server):
    make_profile("mono", channels=1, sine_frequency=600)
    with chromium_page() as page:
        start_listening(page, server, "mono")

        def both_meters_read_the_tone():
            levels = page.evaluate("window.rtcCaster.meters.levels()")  # both channels of one frame
            left, right = levels["left"]["rmsDb"], levels["right"]["rmsDb"]
            return abs(left + 9.0) < 1.5 and abs(left - right) < 0.1

        wait_for(both_meters_read_the_tone, 15, "both meters to read the mono tone alike")


def test_stats_readout_shows_the_codec_and_a_bitrate(server):
    make_profile("stats", audio_bitrate=64_000)
    with chromium_page() as page:
        start_listening(page, server, "stats")
        wait_for(lambda: int(page.get_attribute("#stats", "data-bitrate-kbps")) > 0, 10, "a bitrate in the readout")
        assert page.inner_text('[data-stat="codec"]').startswith("opus 48 kHz stereo")
        assert 20 <= int(page.get_attribute("#stats", "data-bitrate-kbps")) <= 120
        assert page.inner_text('[data-stat="lost"]') == "0"
        wait_for(lambda: page.inner_text('[data-stat="delay"]').endswith(" ms"), 10, "a playout delay")


def test_unknown_profile_stops_retrying_and_says_so(server):
    make_profile("soon-gone")

    def delete_the_profile_then_load_the_script(route):  # gone after the page, before it connects
        StreamProfile.objects.filter(slug="soon-gone").delete()
        route.continue_()

    with chromium_page() as page:
        page.route(lambda url: "/streams/page" in url, delete_the_profile_then_load_the_script)
        page.goto(server.url("/listen/soon-gone/"))
        wait_for(lambda: status_state(page) == "not-found", 10, "profile not found")
        assert "not found" in page.inner_text("#status").lower()
        assert page.evaluate("window.rtcCaster.connection.retryTimer") is None
        assert page.evaluate("window.rtcCaster.connection.attempts") == 1


def test_disabling_the_profile_in_admin_stops_the_page_without_retries(server):
    from django.contrib.auth import get_user_model

    profile = make_profile("venue")
    get_user_model().objects.create_superuser("operator", "", "operator-pw-1")
    with chromium_page() as page:
        start_listening(page, server, "venue")
        admin = page.context.new_page()
        admin.goto(server.url(f"/admin/login/?next=/admin/streams/streamprofile/{profile.pk}/change/"))
        admin.fill("#id_username", "operator")
        admin.fill("#id_password", "operator-pw-1")
        admin.click("input[type=submit]")
        admin.uncheck("#id_enabled")
        admin.click("input[name=_save]")
        wait_for(lambda: status_state(page) == "stopped", 10, "the page to say the stream stopped")
        assert page.inner_text("#status") == "Stream stopped by the operator."
        assert page.evaluate("window.rtcCaster.connection.retryTimer") is None
        assert page.evaluate("window.rtcCaster.connection.wanted") is False
        assert page.evaluate("window.rtcCaster.connection.attempts") == 1


def test_the_page_reconnects_by_itself_after_the_server_restarts(tmp_path):
    make_profile("restart", sine_frequency=440)
    with daphne_servers(settings.DATABASES["default"]["NAME"], tmp_path) as start_server:
        first = start_server()
        with chromium_page() as page:
            start_listening(page, first, "restart")
            wait_for(lambda: hears(page, 0, 440), 15, "the tone before the restart")
            first.kill()
            wait_for(lambda: status_state(page) in ("reconnecting", "unreachable", "connecting"), 10, "reconnecting")
            wait_for(lambda: "Reconnecting in" in page.inner_text("#status"), 10, "the countdown")
            start_server(port=first.port)
            restarted = page.evaluate("Date.now()")
            wait_for(lambda: status_state(page) == "connected", 15, "the page to reconnect")
            page.evaluate("delete window.__probe")  # analyse the new stream, not the old one
            wait_for(lambda: hears(page, 0, 440), 15, "the tone after the restart")
            assert page.evaluate("Date.now()") - restarted < 15_000
            assert page.evaluate("window.rtcCaster.connection.attempts") >= 2
            assert page.evaluate("performance.getEntriesByType('navigation').length") == 1  # no reload


@pytest.mark.parametrize("width", [320, 390])
def test_the_page_fits_a_narrow_phone_without_sideways_scrolling(server, width):
    make_profile("narrow", description="A stream with a long description that must wrap on a small phone screen")
    with chromium_page(viewport={"width": width, "height": 800}, autoplay=False) as page:
        assert open_without_autoplay(page, server, "narrow") == "waiting-for-tap"  # the tap button shows
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        box = page.locator("#listen").bounding_box()
        assert box["height"] >= 60 and box["width"] >= width - 40  # a big tap-to-listen button


def test_a_codec_change_in_admin_makes_the_page_reconnect_by_itself_with_the_new_codec(own_server):
    """Own server: saving through admin writes its change log (see tests/test_live_changes.py)."""
    from django.contrib.auth import get_user_model

    profile = make_profile("switcher", channels=1, audio_bitrate=64_000, sine_frequency=600)
    get_user_model().objects.create_superuser("switcher-op", "", "operator-pw-1")
    server = own_server()
    with chromium_page() as page:
        start_listening(page, server, "switcher")
        wait_for(lambda: page.inner_text('[data-stat="codec"]').startswith("opus"), 10, "opus in the readout")
        admin = page.context.new_page()
        admin.goto(server.url(f"/admin/login/?next=/admin/streams/streamprofile/{profile.pk}/change/"))
        admin.fill("#id_username", "switcher-op")
        admin.fill("#id_password", "operator-pw-1")
        admin.click("input[type=submit]")
        admin.select_option("#id_codec", "pcmu")
        admin.click("input[name=_save]")
        wait_for(lambda: page.inner_text('[data-stat="codec"]').lower().startswith("pcmu"), 15,
                 "the page to play PCMU")
        wait_for(lambda: hears(page, 0, 600), 10, "600 Hz again")
        assert status_state(page) == "connected"
        assert page.evaluate("window.rtcCaster.connection.attempts") == 2  # one reconnect, no click


def test_the_pages_peer_connection_gets_the_servers_stun_and_turn_servers(own_server):
    """RTC_ICE_SERVERS reach the browser's own RTCPeerConnection, TURN credentials included.
    (Nothing listens on port 9: only the configuration is checked here; that the server's
    peer uses them is tests/test_tls_and_ice_servers.py's test with a real STUN server.)"""
    import json

    servers = [{"urls": "stun:127.0.0.1:9"},
               {"urls": "turn:127.0.0.1:9?transport=udp", "username": "venue", "credential": "s3cret"}]
    make_profile("behind-nat")
    server = own_server({"RTC_ICE_SERVERS": json.dumps(servers)})
    with chromium_page() as page:
        page.goto(server.url("/listen/behind-nat/"))
        wait_for(lambda: page.evaluate("Boolean(window.rtcCaster.connection.pc)"), 10, "the page's peer")
        used = page.evaluate("window.rtcCaster.connection.pc.getConfiguration().iceServers")

    def normalized(entry):  # Chromium fills in empty credentials and may list urls
        urls = entry["urls"]
        return {"urls": [urls] if isinstance(urls, str) else urls, "username": entry.get("username", ""),
                "credential": entry.get("credential", "")}

    assert [normalized(entry) for entry in used] == [normalized(entry) for entry in servers]


# What the browser plays, recorded from the rig's sink: the profile's sine is -9.0 dBFS RMS.
FULL_VOLUME_DB = 20 * math.log10(0.5 / math.sqrt(2))


def plays_at(pulse, db):
    """The levels the browser plays at, if both channels are within 0.5 dB of `db`."""
    levels = played_levels_db(pulse)
    return levels if all(abs(level - db) < 0.5 for level in levels) else None


def plays_nothing(pulse):
    return all(level < -90 for level in played_levels_db(pulse))


def test_the_volume_slider_scales_what_the_browser_plays_by_its_value(server, pulse):
    make_profile("volume", sine_frequency=440)
    with chromium_sound_into(pulse), chromium_page() as page:
        start_listening(page, server, "volume")
        wait_for(lambda: plays_at(pulse, FULL_VOLUME_DB), 15, "the tone at full volume")
        page.fill("#volume", "0.25")
        page.dispatch_event("#volume", "input")
        wait_for(lambda: plays_at(pulse, FULL_VOLUME_DB + 20 * math.log10(0.25)), 5, "the tone 12 dB down")


def test_mute_silences_what_the_browser_plays_and_unmute_brings_it_back(server, pulse):
    make_profile("mute", sine_frequency=440)
    with chromium_sound_into(pulse), chromium_page() as page:
        start_listening(page, server, "mute")
        wait_for(lambda: plays_at(pulse, FULL_VOLUME_DB), 15, "the tone before muting")
        page.click("#mute")
        wait_for(lambda: plays_nothing(pulse), 5, "silence once muted")
        assert page.inner_text("#mute") == "Unmute"
        page.click("#mute")
        wait_for(lambda: plays_at(pulse, FULL_VOLUME_DB), 5, "the tone again once unmuted")
        assert page.inner_text("#mute") == "Mute"
