"""An `<audio>` element plays `/stream/<slug>.ogg` in a real Chromium (Debian's, headless): the
browser's own Ogg demuxer and Opus decoder, heard through Web Audio in each channel."""
import pytest

from tests.helpers import make_profile
from tests.rigs.chromium import chromium_page
from tests.waiting import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

PLAY_JS = """async (src) => {
  const audio = document.createElement("audio");
  audio.src = src;
  document.body.append(audio);
  const context = new AudioContext();
  const splitter = context.createChannelSplitter(2);
  context.createMediaElementSource(audio).connect(splitter);
  const analysers = [0, 1].map((i) => {
    const analyser = context.createAnalyser();
    analyser.fftSize = 32768;
    splitter.connect(analyser, i);
    return analyser;
  });
  window.__ogg = { audio, context, analysers };
  await context.resume();
  await audio.play();
}"""

PEAK_JS = """(channel) => {
  const { context, analysers } = window.__ogg;
  const bins = new Float32Array(analysers[channel].frequencyBinCount);
  analysers[channel].getFloatFrequencyData(bins);
  let best = 0;
  for (let i = 1; i < bins.length; i++) if (bins[i] > bins[best]) best = i;
  return { frequency: best * context.sampleRate / analysers[channel].fftSize, level: bins[best] };
}"""


def test_an_audio_element_plays_the_stream_440_hz_left_and_660_hz_right(server):
    make_profile("ogg-browser", sine_frequency=440, sine_frequency_right=660)
    with chromium_page() as page:
        page.goto(server.url("/"))  # a page of the site: its Content-Security-Policy allows the stream
        page.evaluate(PLAY_JS, "/stream/ogg-browser.ogg")
        wait_for(lambda: page.evaluate("window.__ogg.audio.currentTime") > 3, 20, "3 s played")
        left, right = page.evaluate(PEAK_JS, 0), page.evaluate(PEAK_JS, 1)
        content_type = page.evaluate("""async () => (await fetch("/stream/ogg-browser.ogg", {method: "HEAD"}))
                                        .headers.get("content-type")""")
    bin_width = 48_000 / 32_768
    assert left["frequency"] == pytest.approx(440, abs=2 * bin_width) and left["level"] > -40, left
    assert right["frequency"] == pytest.approx(660, abs=2 * bin_width) and right["level"] > -40, right
    assert content_type == "audio/ogg"
