// What is playing, from getStats() once a second: codec, bitrate, loss, jitter, playout delay.

const PLAYOUT_POLL_MS = 50;

// Resolves once the browser plays the peer's audio out (its jitter buffer has emitted samples),
// or after `timeoutMs` at the latest: the moment a switch to this stream leaves no gap.
export async function playoutStarted(pc, timeoutMs) {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline && pc.connectionState !== "closed") {
    let emitted = 0;
    try {
      (await pc.getStats()).forEach((stat) => {
        if (stat.type === "inbound-rtp" && stat.kind === "audio") {
          emitted = stat.jitterBufferEmittedCount || stat.totalSamplesReceived || 0;
        }
      });
    } catch {
      return;
    }
    if (emitted > 0) return;
    await new Promise((resolve) => setTimeout(resolve, PLAYOUT_POLL_MS));
  }
}
export class StatsReadout {
  constructor(element) {
    this.element = element;
    this.pc = null;
    this.previous = null;
    this.timer = null;
    this.latest = null;
  }

  attach(pc) {
    this.pc = pc;
    this.previous = null;
    clearInterval(this.timer);
    this.timer = setInterval(() => this.update().catch(() => {}), 1000);
  }

  async update() {
    if (!this.pc || this.pc.connectionState === "closed") return;
    const report = await this.pc.getStats();
    let inbound = null;
    report.forEach((stat) => {
      if (stat.type === "inbound-rtp" && stat.kind === "audio") inbound = stat;
    });
    if (!inbound) return;
    const codec = inbound.codecId ? report.get(inbound.codecId) : null;
    const previous = this.previous;
    this.previous = inbound;
    const seconds = previous ? (inbound.timestamp - previous.timestamp) / 1000 : 0;
    const bitrate = previous && seconds > 0 ? (8 * (inbound.bytesReceived - previous.bytesReceived)) / seconds : 0;
    // Playout delay now: jitter buffer delay per emitted sample over the last second.
    const emitted = inbound.jitterBufferEmittedCount - (previous ? previous.jitterBufferEmittedCount : 0);
    const delay = inbound.jitterBufferDelay - (previous ? previous.jitterBufferDelay : 0);
    this.latest = {
      codec: codec ? `${codec.mimeType.split("/")[1]} ${codec.clockRate / 1000} kHz${codec.channels === 2 ? " stereo" : ""}` : "?",
      bitrateKbps: Math.round(bitrate / 1000),
      packetsLost: inbound.packetsLost,
      jitterMs: Math.round((inbound.jitter || 0) * 1000),
      playoutDelayMs: emitted > 0 ? Math.round((delay / emitted) * 1000) : null,
    };
    this.render();
  }

  render() {
    const s = this.latest;
    const set = (name, text) => { this.element.querySelector(`[data-stat="${name}"]`).textContent = text; };
    set("codec", s.codec);
    set("bitrate", s.bitrateKbps === null ? "–" : `${s.bitrateKbps} kb/s`);
    set("lost", s.packetsLost === null ? "–" : String(s.packetsLost));
    set("jitter", s.jitterMs === null ? "–" : `${s.jitterMs} ms`);
    set("delay", s.playoutDelayMs === null ? "–" : `${s.playoutDelayMs} ms`);
    this.element.dataset.bitrateKbps = String(s.bitrateKbps || 0);
  }

  stop() {
    clearInterval(this.timer);
  }

  // On the HTTP fallback there is no getStats(): say what plays, and nothing else.
  showHttpFallback() {
    this.stop();
    this.pc = null;
    this.latest = {
      codec: "opus (Ogg over HTTP)", bitrateKbps: null, packetsLost: null, jitterMs: null, playoutDelayMs: null,
    };
    this.render();
  }
}
