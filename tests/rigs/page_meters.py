"""What the listener page's own meters show (static/streams/meters.js), read in any browser the
tests drive: a Playwright page (tests/rigs/chromium.py), a FirefoxPage or a WebKitPage. Only
page.evaluate(expression) is used."""
import json

# The strongest frequency on one channel of the page's own meters (their analyser, 2048-point
# FFT, refined between bins), and the level there and at another frequency. null until the
# meters run, and in silence (every bin at -inf).
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
  if (![a, b, c].every(Number.isFinite)) return null;
  return { frequency: (best + 0.5 * (a - c) / (a - 2 * b + c)) * hzPerBin, level: b,
           otherLevel: bins[Math.round(other / hzPerBin)] };
}"""


def meter_hears(page, channel, hz, other_hz):
    """The tone `hz`, and not `other_hz`, on the page's meter `channel` (0 left, 1 right)."""
    tone = page.evaluate(f"({METER_TONE_JS})({json.dumps({'channel': channel, 'other': other_hz})})")
    if not tone or None in (tone["frequency"], tone["level"], tone["otherLevel"]):
        return False  # no tone yet (silence, e.g. just after a reconnect); JSON has no -inf
    return abs(tone["frequency"] - hz) <= 5 and tone["level"] > -60 and tone["otherLevel"] < tone["level"] - 20


def meter_rms_db(page, channel):
    """The RMS level in dBFS that the page's meter `channel` ("L" or "R") shows."""
    return float(page.evaluate(f"document.querySelector('#meters .meter[data-channel=\"{channel}\"]').dataset.rmsDb"))
