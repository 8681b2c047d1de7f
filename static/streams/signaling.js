// One listener's connection: WebSocket signaling, the RTCPeerConnection behind it, and
// automatic reconnection with exponential backoff and jitter. When signaling works but the
// audio path does not (no peer connection possible, ICE failing or not connecting in time) it
// says so through onNoAudioPath, so that the page can play the HTTP fallback meanwhile.
import { requestStereoOpus } from "./sdp.js";

const FIRST_DELAY_S = 0.5;
const MAX_DELAY_S = 10;
const STABLE_AFTER_MS = 10000; // a connection this old resets the backoff
const DISCONNECTED_GRACE_MS = 3000; // ICE "disconnected" for longer than this: start again
// Server reached but no audio this long after the socket opened: report no audio path. (The
// attempt goes on: a slow TURN relay may still connect it, or the server's ICE timeout ends it.)
const NO_AUDIO_PATH_AFTER_MS = 5000;
const CLOSE_FORBIDDEN = 4403;
const CLOSE_PROFILE_GONE = 4404;
const CLOSE_RENEGOTIATE = 4426; // the stream's codec changed: connect again at once with a new offer
// The server's reasons for closing that mean no audio path: its ICE failed or never connected.
const NO_AUDIO_PATH_ERRORS = ["connection-failed", "ice-timeout"];

function iceGatheringComplete(pc) {
  // The server does not trickle ICE: send the offer once all candidates are in it.
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") resolve();
    });
  });
}

// Exponential backoff from 0.5 s, doubling per attempt up to 10 s, with +-20 % jitter.
export function retryDelaySeconds(attempt, random = Math.random) {
  const base = Math.min(MAX_DELAY_S, FIRST_DELAY_S * 2 ** Math.max(0, attempt - 1));
  return Math.min(MAX_DELAY_S, Math.max(FIRST_DELAY_S, base * (0.8 + 0.4 * random())));
}

export class ListenerConnection {
  constructor({ url, iceServers, onStatus, onStream, onPeer, onNoAudioPath }) {
    this.url = url;
    this.iceServers = iceServers;
    this.onStatus = onStatus;
    this.onStream = onStream;
    this.onPeer = onPeer || (() => {});
    this.onNoAudioPath = onNoAudioPath || (() => {});
    // While the page plays something else: an attempt every this many seconds instead of the backoff.
    this.retryEverySeconds = null;
    this.startedAt = 0; // when the current attempt started (performance.now())
    this.ws = null;
    this.pc = null;
    this.wanted = false;
    this.attempt = 0;
    this.attempts = 0; // WebSocket connections opened, for tests and curious users
    this.retryTimer = null;
    this.countdownTimer = null;
    this.stableTimer = null;
    this.disconnectedTimer = null;
    this.noAudioPathTimer = null;
    this.lastError = null;
    this.everOpened = false;
    this.everConnected = false; // this attempt's peer
    document.addEventListener("visibilitychange", () => this.handleVisibility());
  }

  start() {
    this.wanted = true;
    this.attempt = 0;
    this.connect();
  }

  connect() {
    this.clearTimers();
    this.teardown();
    this.lastError = null;
    this.everOpened = false;
    this.everConnected = false;
    this.attempts += 1;
    this.startedAt = performance.now();
    this.onStatus("connecting", this.attempt ? `Connecting… (attempt ${this.attempt + 1})` : "Connecting…");
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.addEventListener("open", () => {
      this.everOpened = true;
      this.noAudioPathTimer = setTimeout(() => this.onNoAudioPath("WebRTC did not connect within a few seconds."),
        NO_AUDIO_PATH_AFTER_MS);
      this.sendOffer(ws).catch((error) => this.failAudioPath(`Could not start: ${error.message}`));
    });
    ws.addEventListener("message", (event) => this.handleMessage(ws, JSON.parse(event.data)));
    ws.addEventListener("close", (event) => this.handleClose(ws, event));
  }

  async sendOffer(ws) {
    const pc = new RTCPeerConnection({ iceServers: this.iceServers });
    this.pc = pc;
    pc.addTransceiver("audio", { direction: "recvonly" });
    pc.addEventListener("track", (event) => this.onStream(event.streams[0] || new MediaStream([event.track])));
    pc.addEventListener("connectionstatechange", () => this.handleConnectionState(pc));
    this.onPeer(pc);
    const offer = await pc.createOffer();
    await pc.setLocalDescription({ type: "offer", sdp: requestStereoOpus(offer.sdp) });
    await iceGatheringComplete(pc);
    if (ws === this.ws && ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify({ type: "offer", sdp: pc.localDescription.sdp }));
    }
  }

  async handleMessage(ws, message) {
    if (ws !== this.ws) return;
    if (message.type === "answer") {
      await this.pc.setRemoteDescription({ type: "answer", sdp: message.sdp });
    } else if (message.type === "error") {
      this.lastError = message;
      if (!["stream-stopped", "profile-not-found", "forbidden"].includes(message.code)) {
        this.onStatus("error", message.message);
      }
    } else if (message.type === "renegotiate") {
      this.onStatus("connecting", message.message);
    } else if (message.type === "status") {
      const playing = message.state === "playing" && this.pc && this.pc.connectionState === "connected";
      if (playing) this.onStatus("connected", "Connected.");
      else this.onStatus(message.state || "status", message.message);
    }
  }

  handleConnectionState(pc) {
    if (pc !== this.pc) return;
    const state = pc.connectionState;
    clearTimeout(this.disconnectedTimer);
    if (state === "connected") {
      clearTimeout(this.noAudioPathTimer);
      this.everConnected = true;
      this.onStatus("connected", "Connected.");
      clearTimeout(this.stableTimer);
      this.stableTimer = setTimeout(() => { this.attempt = 0; }, STABLE_AFTER_MS);
    } else if (state === "disconnected") {
      this.onStatus("connecting", "Connection interrupted…");
      this.disconnectedTimer = setTimeout(() => this.retry("The connection was lost."), DISCONNECTED_GRACE_MS);
    } else if (state === "failed") {
      this.failAudioPath("The audio connection failed (no network path to the server).");
    }
  }

  handleClose(ws, event) {
    if (ws !== this.ws) return;
    if (event.code === CLOSE_FORBIDDEN) {
      this.wanted = false;
      this.clearTimers();
      this.teardown();
      this.onStatus("forbidden", (this.lastError && this.lastError.message) || "Not allowed to listen to this stream.");
      return;
    }
    if (event.code === CLOSE_PROFILE_GONE) {
      const stopped = this.lastError && this.lastError.code === "stream-stopped";
      this.wanted = false;
      this.clearTimers();
      this.teardown();
      this.onStatus(stopped ? "stopped" : "not-found",
        stopped ? "Stream stopped by the operator." : "Profile not found: this stream does not exist or is switched off.");
      return;
    }
    if (event.code === CLOSE_RENEGOTIATE) {
      this.clearTimers();
      this.teardown();
      this.connect();
      return;
    }
    if (this.lastError && NO_AUDIO_PATH_ERRORS.includes(this.lastError.code)) {
      this.failAudioPath(this.lastError.message);
      return;
    }
    this.retry(this.everOpened ? "The server closed the connection." : "Server unreachable.",
      this.everOpened ? "reconnecting" : "unreachable");
  }

  // An attempt that never got its audio through. (One that played and then failed is retried as
  // before: a network change, say, that the next attempt gets over.)
  failAudioPath(reason) {
    if (!this.wanted) return;
    if (!this.everConnected) this.onNoAudioPath(reason); // first: the page may slow the retries down
    this.retry(reason);
  }

  retry(reason, state = "reconnecting") {
    if (!this.wanted) return;
    this.clearTimers();
    this.teardown();
    this.attempt += 1;
    let remaining = retryDelaySeconds(this.attempt);
    if (this.retryEverySeconds !== null) {
      const elapsed = (performance.now() - this.startedAt) / 1000;
      remaining = Math.max(FIRST_DELAY_S, this.retryEverySeconds - elapsed);
    }
    const show = () => this.onStatus(state, `${reason} Reconnecting in ${Math.ceil(remaining)} s (attempt ${this.attempt}).`);
    show();
    this.countdownTimer = setInterval(() => { remaining = Math.max(0, remaining - 1); show(); }, 1000);
    this.retryTimer = setTimeout(() => this.connect(), remaining * 1000);
  }

  handleVisibility() {
    // Phones freeze background pages: coming back, reconnect at once if the stream is not playing.
    if (document.visibilityState !== "visible" || !this.wanted) return;
    const playing = this.pc && this.pc.connectionState === "connected" && this.ws && this.ws.readyState === WebSocket.OPEN;
    if (!playing) this.connect();
  }

  clearTimers() {
    clearTimeout(this.retryTimer);
    clearInterval(this.countdownTimer);
    clearTimeout(this.stableTimer);
    clearTimeout(this.disconnectedTimer);
    clearTimeout(this.noAudioPathTimer);
    this.retryTimer = null;
  }

  teardown() {
    const { ws, pc } = this;
    this.ws = null;
    this.pc = null;
    if (pc) pc.close();
    if (ws && ws.readyState <= WebSocket.OPEN) ws.close();
  }

  stop() {
    this.wanted = false;
    this.clearTimers();
    this.teardown();
    this.onStatus("idle", "Stopped.");
  }
}
