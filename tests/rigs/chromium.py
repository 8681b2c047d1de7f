"""Debian's Chromium driven by Playwright, set up to play WebRTC audio headless on loopback."""
import contextlib
import os
import tempfile

from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]
AUTOPLAY = "--autoplay-policy=no-user-gesture-required"

# Finds the strongest frequency of one channel of the page's <audio> stream with a Web Audio analyser.
PEAK_FREQUENCY_JS = """async ({selector, channel}) => {
  const element = document.querySelector(selector);
  if (!element || !element.srcObject) return null;
  if (!window.__probe) {
    const context = new AudioContext();
    await context.resume();
    const splitter = context.createChannelSplitter(2);
    context.createMediaStreamSource(element.srcObject).connect(splitter);
    const analysers = [0, 1].map((i) => {
      const analyser = context.createAnalyser();
      analyser.fftSize = 32768;
      splitter.connect(analyser, i);
      return analyser;
    });
    window.__probe = { context, analysers };
  }
  const analyser = window.__probe.analysers[channel];
  const bins = new Float32Array(analyser.frequencyBinCount);
  analyser.getFloatFrequencyData(bins);
  let best = 0;
  for (let i = 1; i < bins.length; i++) if (bins[i] > bins[best]) best = i;
  return { frequency: best * window.__probe.context.sampleRate / analyser.fftSize, level: bins[best] };
}"""


@contextlib.contextmanager
def chromium_page(viewport=None, autoplay=True):
    """A page in a fresh Chromium. autoplay=False keeps Chromium's own policy: no sound before a tap.
    (Beware: Playwright's page queries count as user activation, which unlocks autoplay.)"""
    home = tempfile.mkdtemp(prefix="chromium-home-")
    previous_home = os.environ.get("HOME")
    os.environ["HOME"] = home
    try:
        with sync_playwright() as playwright:
            # No sound server for the browser: it plays into nothing, as on a machine without a sound card.
            # (Given the rig's PulseAudio, it would play the stream back into the sink being captured.)
            env = {k: v for k, v in os.environ.items() if not k.startswith("PULSE_")}
            context = playwright.chromium.launch_persistent_context(
                tempfile.mkdtemp(prefix="chromium-profile-"),
                executable_path=CHROMIUM,
                headless=True,
                ignore_default_args=["--mute-audio"],
                args=FLAGS + ([AUTOPLAY] if autoplay else []),
                viewport=viewport or {"width": 1280, "height": 800},
                env={**env, "HOME": home},
            )
            try:
                yield context.pages[0] if context.pages else context.new_page()
            finally:
                context.close()
    finally:
        if previous_home is not None:
            os.environ["HOME"] = previous_home


def peak_frequency(page, channel=0, selector="#player"):
    return page.evaluate(PEAK_FREQUENCY_JS, {"selector": selector, "channel": channel})
