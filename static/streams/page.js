// The listener page: wires the connection, the player, the meters, the stats and the controls.
// It connects at once on load; sound starts by itself where the browser allows autoplay, and
// otherwise on the first tap, at once, because the connection is already up.
// Where WebRTC cannot play (no RTCPeerConnection, or no audio path within a few seconds) the page
// plays the HTTP fallback, tries WebRTC again in the background every 30 s and goes back to it
// as soon as it connects. A browser that can play neither is told so, once.
import { ListenerConnection } from "./signaling.js";
import { LevelMeters } from "./meters.js";
import { StatsReadout, playoutStarted } from "./stats.js";
import { LatencyChoice } from "./latency.js";
import { OggFallback, oggUrl, webRtcAvailable } from "./fallback.js";

// How long a suspended AudioContext may take to start before the page asks for a tap.
const CONTEXT_START_GRACE_MS = 1000;
const RETRY_WEBRTC_EVERY_S = 30; // on the fallback
const PLAYOUT_WAIT_MS = 2000; // back on WebRTC: how long the fallback may wait for its sound to start
const PLAYBACK_TEXT = {
  "waiting-for-tap": "Ready: this browser plays sound only after a tap.",
  autoplay: "Playing (started automatically).",
  tap: "Playing.",
};
const FINAL_STATES = new Set(["stopped", "not-found", "forbidden"]); // the connection gave up: so does the page
const NOT_FOUND_TEXT = "Profile not found: this stream does not exist or is switched off.";
const CANNOT_PLAY_TEXT = "This browser can play neither WebRTC nor Ogg Opus audio, so it cannot play this stream. "
  + "A current Firefox, Chrome or Edge can.";

const root = document.getElementById("listener");
const config = JSON.parse(document.getElementById("listener-config").textContent);
const status = document.getElementById("status");
const playbackLine = document.getElementById("playback");
const player = document.getElementById("player");
const button = document.getElementById("listen");
const volume = document.getElementById("volume");
const mute = document.getElementById("mute");

const meters = new LevelMeters(document.getElementById("meters"));
const stats = new StatsReadout(document.getElementById("stats"));
const latency = new LatencyChoice(document.getElementById("latency"), document.getElementById("latency-note"));
const scheme = location.protocol === "https:" ? "wss" : "ws";
const webRtc = webRtcAvailable();

// null until the first stream arrives, then "waiting-for-tap", "autoplay" or "tap".
let playback = null;
let autoplayAttempt = 0;
// What carries the sound: "webrtc", "http" (the fallback; WebRTC is retried in the background
// where the browser has it) or "none" (this browser can play neither).
let transport = "webrtc";
let fallbackReason = "";

function showStatus(state, text) {
  status.dataset.state = state;
  status.textContent = text;
  root.dataset.state = state;
}

function setTransport(name) {
  transport = name;
  root.dataset.transport = name;
}

function setPlayback(state) {
  playback = state;
  root.dataset.playback = state;
  button.hidden = state !== "waiting-for-tap";
  playbackLine.textContent = PLAYBACK_TEXT[state];
}

// `start` plays the stream (a play() promise); the page then knows whether sound may start by itself.
async function tryAutoplay(start) {
  const attempt = ++autoplayAttempt;
  let played = true;
  try {
    await start();
  } catch (error) {
    if (error.name === "AbortError") return; // a newer stream replaced this one; its attempt decides
    played = false;
  }
  const running = played && (await meters.running(CONTEXT_START_GRACE_MS));
  if (attempt !== autoplayAttempt || playback === "tap") return;
  setPlayback(played && running ? "autoplay" : "waiting-for-tap");
}

// Plays a new stream: after a reconnect the page already may play; only the first stream (or one
// still waiting for a tap) asks.
function playNew(start) {
  if (playback === "autoplay" || playback === "tap") start().catch(() => {});
  else tryAutoplay(start);
}

const connection = new ListenerConnection({
  url: `${scheme}://${location.host}${config.wsPath}`,
  iceServers: config.iceServers,
  onStatus: (state, text) => {
    if (transport === "http") {
      // The fallback plays: background attempts stay out of the status, unless the connection gives up or plays.
      if (state === "connected") backToWebRtc();
      else if (FINAL_STATES.has(state)) leaveFallback();
      else return;
    }
    showStatus(state, text);
  },
  onStream: (stream) => {
    player.srcObject = stream;
    if (transport === "http") return; // a background attempt: played once it connects (backToWebRtc)
    meters.attach(stream);
    playNew(() => player.play());
  },
  onPeer: (pc) => {
    if (transport !== "http") stats.attach(pc);
    latency.attach(pc);
  },
  onNoAudioPath: (reason) => {
    if (transport !== "webrtc" || !fallback.playable) return;
    useFallback(`${reason} Trying WebRTC again every ${RETRY_WEBRTC_EVERY_S} s.`);
  },
});

const fallback = new OggFallback({
  audio: document.getElementById("fallback-player"),
  url: oggUrl(root.dataset.oggPath, location),
  meters,
  onPlaying: () => showStatus("fallback", `Playing over HTTP (fallback: higher latency). ${fallbackReason}`),
  onEnded: (why) => fallbackEnded(why),
  onStatus: showStatus,
  restart: () => playNew(() => fallback.start()),
});

function useFallback(reason) {
  fallbackReason = reason;
  setTransport("http");
  connection.retryEverySeconds = RETRY_WEBRTC_EVERY_S;
  player.pause();
  stats.showHttpFallback();
  showStatus("fallback", `Over HTTP (fallback: higher latency). ${reason}`);
  playNew(() => fallback.start());
}

function leaveFallback(options) {
  fallback.stop(options);
  setTransport("webrtc");
  connection.retryEverySeconds = null;
}

// A background attempt connected: WebRTC plays again, and once its sound comes out, the meters
// follow it and the fallback fades out.
async function backToWebRtc() {
  const pc = connection.pc;
  const stream = player.srcObject;
  setTransport("webrtc");
  connection.retryEverySeconds = null;
  playNew(() => player.play());
  await playoutStarted(pc, PLAYOUT_WAIT_MS);
  if (transport !== "webrtc") return; // lost again meanwhile, and back on the fallback
  fallback.stop({ fade: true });
  if (pc !== connection.pc) return; // gone meanwhile: the next connection has the meters and the stats
  meters.attach(stream);
  stats.attach(pc);
}

function fallbackEnded(why) {
  if (transport !== "http") return; // WebRTC took over while the stream was fading out
  if (!webRtc) {
    if (why === "gone") showStatus("not-found", NOT_FOUND_TEXT);
    else if (why === "unplayable") cannotPlay();
    else fallback.retry("The HTTP stream was interrupted.");
    return;
  }
  // WebRTC decides again, at once: it says "stopped" or "not found" itself, or falls back anew.
  if (why === "unplayable") fallback.unplayable = true;
  leaveFallback();
  connection.connect();
}

function cannotPlay() {
  setTransport("none");
  showStatus("unsupported", CANNOT_PLAY_TEXT);
}

button.addEventListener("click", () => {
  // Both calls inside the tap itself: the gesture is what lets them start.
  const started = Promise.all([transport === "http" ? fallback.play() : player.play(), meters.unlock()]);
  button.hidden = true;
  started.then(() => setPlayback("tap"), () => setPlayback("waiting-for-tap"));
});
volume.addEventListener("input", () => {
  player.volume = Number(volume.value);
  fallback.setVolume(player.volume, player.muted);
});
mute.addEventListener("click", () => {
  player.muted = !player.muted;
  fallback.setVolume(player.volume, player.muted);
  mute.textContent = player.muted ? "Unmute" : "Mute";
  mute.setAttribute("aria-pressed", String(player.muted));
});

window.rtcCaster = {
  connection, meters, stats, player, fallback,
  get playback() { return playback; },
  get latency() { return latency.name; },
  get transport() { return transport; },
};
setTransport("webrtc");
if (webRtc) connection.start();
else if (fallback.playable) useFallback("This browser has no WebRTC.");
else cannotPlay();
