// The HTTP fallback: the stream as Ogg Opus over plain HTTP (/stream/<slug>.ogg) in an <audio>
// element, for where WebRTC cannot play (a browser without RTCPeerConnection, a network with no
// UDP path and no TURN). It plays through the meters' AudioContext (createMediaElementSource: the
// stream is same-origin, so Web Audio may read it), which keeps the meters working; the volume is
// a gain there. The latency is higher than WebRTC's: the browser buffers an HTTP stream.
import { retryDelaySeconds } from "./signaling.js";

const OGG_OPUS = 'audio/ogg; codecs="opus"';
const FADE_OUT_S = 0.25; // handing back to WebRTC: both play this long while this one fades out
const STABLE_AFTER_MS = 10000; // a stream that played this long resets the backoff
// Playing, yet the position stands still this long: the stream is lost. (A browser may wait for a
// dropped HTTP stream for ever; WebKitGTK's GStreamer stands still 2-3 s while it fills its buffer.)
const STALL_AFTER_MS = 8000;

export function webRtcAvailable() {
  return typeof RTCPeerConnection === "function";
}

export function canPlayOggOpus(audio) {
  return typeof audio.canPlayType === "function" && audio.canPlayType(OGG_OPUS) !== "";
}

// The stream's URL for the page at `location`: the secret link's key goes along.
export function oggUrl(path, location) {
  const key = new URLSearchParams(location.search).get("key");
  return key ? `${path}?key=${encodeURIComponent(key)}` : path;
}

// Why the stream ended or failed, from the server (a HEAD request takes no listener place):
// "gone" (404: unknown, switched off or refused), "unplayable" (the server answers, this
// browser cannot play what it sends) or "lost" (anything else: try again later).
async function whyEnded(url, mediaError) {
  let status = 0;
  try {
    status = (await fetch(url, { method: "HEAD", cache: "no-store" })).status;
  } catch {
    return "lost";
  }
  if (status === 404) return "gone";
  const undecodable = mediaError
    && [MediaError.MEDIA_ERR_SRC_NOT_SUPPORTED, MediaError.MEDIA_ERR_DECODE].includes(mediaError.code);
  return status === 200 && undecodable ? "unplayable" : "lost";
}

export class OggFallback {
  constructor({ audio, url, meters, onPlaying, onEnded, onStatus, restart }) {
    this.audio = audio;
    this.url = url;
    this.meters = meters;
    this.onPlaying = onPlaying;
    this.onEnded = onEnded;
    this.onStatus = onStatus;
    this.restart = restart || (() => this.start().catch(() => {}));
    this.active = false; // the page is on the fallback (it may still wait for a tap to stream)
    this.unplayable = false; // set when this browser failed to play what the server sent
    this.route = null; // { source, gain }: made once, an element has only one source node
    this.volume = 1;
    this.muted = false;
    this.attempts = 0; // HTTP streams started, for tests and curious users
    this.failures = 0;
    this.playingSince = null;
    this.retryTimer = null;
    this.countdownTimer = null;
    this.releaseTimer = null;
    this.watchTimer = null;
    this.position = 0;
    this.movedAt = 0;
    audio.addEventListener("playing", () => {
      if (!this.active) return;
      this.playingSince = performance.now();
      this.onPlaying();
    });
    audio.addEventListener("error", () => this.ended());
    audio.addEventListener("ended", () => this.ended());
  }

  get playable() {
    return !this.unplayable && canPlayOggOpus(this.audio);
  }

  get streaming() {
    return this.audio.hasAttribute("src");
  }

  // Starts a fresh HTTP stream; returns the element's play(), refused where sound needs a tap
  // (the request is then ended at once: a paused live stream would only fall behind).
  start() {
    this.clearTimers();
    this.active = true;
    this.attempts += 1;
    const route = this.connect();
    this.applyVolume();
    this.audio.src = this.url;
    if (route) this.meters.attachSource(route.source);
    this.watch();
    return this.audio.play().catch((error) => {
      if (error.name === "NotAllowedError") this.release();
      throw error;
    });
  }

  // For a tap: plays the stream, starting it if it was ended for want of one.
  play() {
    return this.streaming ? this.audio.play() : this.start();
  }

  connect() {
    if (this.route) return this.route;
    const context = this.meters.audioContext();
    if (!context) return null; // no Web Audio: the element plays by itself, without meters
    const source = context.createMediaElementSource(this.audio);
    const gain = context.createGain();
    source.connect(gain).connect(context.destination);
    this.route = { source, gain };
    return this.route;
  }

  setVolume(volume, muted) {
    this.volume = volume;
    this.muted = muted;
    this.applyVolume();
  }

  applyVolume() {
    const level = this.muted ? 0 : this.volume;
    if (!this.route) {
      this.audio.volume = level;
      return;
    }
    const { gain, source } = this.route;
    gain.gain.cancelScheduledValues(source.context.currentTime);
    gain.gain.value = level;
  }

  // Leaves the fallback. With `fade`, the stream fades out first, for a switch without a gap.
  stop({ fade = false } = {}) {
    this.active = false;
    this.clearTimers();
    if (fade && this.route && this.streaming && !this.audio.paused) {
      const { gain, source } = this.route;
      const now = source.context.currentTime;
      gain.gain.setValueAtTime(gain.gain.value, now);
      gain.gain.linearRampToValueAtTime(0, now + FADE_OUT_S);
      this.releaseTimer = setTimeout(() => this.release(), FADE_OUT_S * 1000 + 100);
    } else {
      this.release();
    }
  }

  // Ends the HTTP request (and with it the listener place it holds on the server).
  release() {
    clearInterval(this.watchTimer);
    this.audio.pause();
    this.audio.removeAttribute("src");
    this.audio.load(); // (the gain stays as it is, faded out or not, until the next start)
  }

  watch() {
    clearInterval(this.watchTimer);
    this.position = -1;
    this.movedAt = performance.now();
    this.watchTimer = setInterval(() => this.checkProgress(), 1000);
  }

  checkProgress() {
    // Paused, or silenced by a context that waits for a tap, it may well stand still.
    const running = !this.route || this.route.source.context.state === "running";
    if (this.audio.paused || !running || this.audio.currentTime !== this.position) {
      this.position = this.audio.currentTime;
      this.movedAt = performance.now();
    } else if (performance.now() - this.movedAt > STALL_AFTER_MS) {
      this.ended();
    }
  }

  async ended() {
    if (!this.active || !this.streaming) return;
    const mediaError = this.audio.error;
    this.release();
    const why = await whyEnded(this.url, mediaError);
    if (this.active) this.onEnded(why);
  }

  // Starts the stream again after the backoff, counting down in the status.
  retry(reason) {
    this.clearTimers();
    if (this.playingSince !== null && performance.now() - this.playingSince > STABLE_AFTER_MS) this.failures = 0;
    this.playingSince = null;
    this.failures += 1;
    let remaining = retryDelaySeconds(this.failures);
    const show = () => this.onStatus("reconnecting",
      `${reason} Trying again in ${Math.ceil(remaining)} s (attempt ${this.failures}).`);
    show();
    this.countdownTimer = setInterval(() => { remaining = Math.max(0, remaining - 1); show(); }, 1000);
    this.retryTimer = setTimeout(() => this.restart(), remaining * 1000);
  }

  clearTimers() {
    clearTimeout(this.retryTimer);
    clearInterval(this.countdownTimer);
    clearTimeout(this.releaseTimer);
    this.retryTimer = null;
  }
}
