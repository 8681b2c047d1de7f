// Left and right loudness meters: RMS bar with peak hold, in dBFS, drawn in SVG at display rate.
const FLOOR_DB = -60;
const PEAK_HOLD_MS = 1500;
const PEAK_FALL_DB_PER_S = 20;

export function toDb(linear) {
  return linear > 0 ? Math.max(FLOOR_DB, 20 * Math.log10(linear)) : FLOOR_DB;
}

export function rmsAndPeak(samples) {
  let sum = 0;
  let peak = 0;
  for (const s of samples) {
    sum += s * s;
    const a = Math.abs(s);
    if (a > peak) peak = a;
  }
  return { rms: Math.sqrt(sum / samples.length), peak };
}

export class LevelMeters {
  constructor(svg) {
    this.svg = svg;
    this.context = null;
    this.analysers = [];
    this.source = null;
    this.input = null;
    this.frame = null;
    this.held = [{ db: FLOOR_DB, at: 0 }, { db: FLOOR_DB, at: 0 }];
    this.readings = [{ rmsDb: FLOOR_DB, peakDb: FLOOR_DB }, { rmsDb: FLOOR_DB, peakDb: FLOOR_DB }];
    document.addEventListener("visibilitychange", () => (document.hidden ? this.pause() : this.resume()));
  }

  // The meters' AudioContext, made on first use; null where the browser has no Web Audio.
  audioContext() {
    const Context = window.AudioContext || window.webkitAudioContext;
    if (!this.context && Context) this.context = new Context();
    return this.context;
  }

  // Meter a MediaStream (the WebRTC stream).
  attach(stream) {
    const context = this.audioContext();
    if (!context) return;
    this.attachSource(context.createMediaStreamSource(stream));
  }

  // Meter any source node of this.audioContext() (the fallback's <audio> element): only the
  // meters' own connection from it is undone when they move on.
  attachSource(source) {
    this.detach();
    this.context.resume();
    // Up-mix to two channels the "speakers" way, so a mono stream shows on both meters alike.
    const stereo = this.context.createGain();
    stereo.channelCount = 2;
    stereo.channelCountMode = "explicit";
    stereo.channelInterpretation = "speakers";
    const splitter = this.context.createChannelSplitter(2);
    source.connect(stereo).connect(splitter);
    this.analysers = [0, 1].map((channel) => {
      const analyser = this.context.createAnalyser();
      analyser.fftSize = 2048;
      splitter.connect(analyser, channel);
      return analyser;
    });
    this.source = source;
    this.input = stereo;
    this.buffer = new Float32Array(2048);
    this.resume();
  }

  // Whether the meters' audio clock runs. Browsers keep a context suspended until the page may
  // play sound, and resume() may then neither resolve nor fail: give it `graceMs` to start.
  async running(graceMs) {
    if (!this.context) return false;
    if (this.context.state !== "running") {
      await Promise.race([this.context.resume(), new Promise((resolve) => setTimeout(resolve, graceMs))]);
    }
    return this.context.state === "running";
  }

  // Call from a tap: the gesture lets a suspended context start.
  unlock() {
    return this.context ? this.context.resume() : Promise.resolve();
  }

  detach() {
    if (this.source) this.source.disconnect(this.input);
    this.source = null;
    this.input = null;
    this.analysers = [];
    this.pause();
  }

  pause() {
    cancelAnimationFrame(this.frame);
    this.frame = null;
  }

  resume() {
    if (!this.analysers.length || this.frame !== null || document.hidden) return;
    const tick = (now) => {
      this.update(now);
      this.frame = requestAnimationFrame(tick);
    };
    this.frame = requestAnimationFrame(tick);
  }

  update(now) {
    this.analysers.forEach((analyser, channel) => {
      analyser.getFloatTimeDomainData(this.buffer);
      const { rms, peak } = rmsAndPeak(this.buffer);
      const rmsDb = toDb(rms);
      const peakDb = toDb(peak);
      const held = this.held[channel];
      const age = now - held.at;
      const fallen = held.db - Math.max(0, age - PEAK_HOLD_MS) / 1000 * PEAK_FALL_DB_PER_S;
      if (peakDb >= fallen) this.held[channel] = { db: peakDb, at: now };
      else this.held[channel] = { db: fallen, at: held.at };
      this.readings[channel] = { rmsDb, peakDb: this.held[channel].db };
      this.draw(channel);
    });
  }

  draw(channel) {
    const row = this.svg.querySelectorAll(".meter")[channel];
    const { rmsDb, peakDb } = this.readings[channel];
    const width = (db) => `${((db - FLOOR_DB) / -FLOOR_DB) * 100}%`;
    row.querySelector(".rms").setAttribute("width", width(rmsDb));
    row.querySelector(".peak").setAttribute("x", width(peakDb));
    const label = document.querySelector(`output.value[data-for="${row.dataset.channel}"]`);
    if (label) label.textContent = rmsDb <= FLOOR_DB ? "−∞" : `${rmsDb.toFixed(1)} dB`;
    row.dataset.rmsDb = rmsDb.toFixed(1);
    row.dataset.peakDb = peakDb.toFixed(1);
  }

  levels() {
    return { left: this.readings[0], right: this.readings[1] };
  }
}
