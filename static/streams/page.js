// The listener page: wires the connection, the player, the meters, the stats and the controls.
// It connects at once on load; sound starts by itself where the browser allows autoplay, and
// otherwise on the first tap, at once, because the connection is already up.
import { ListenerConnection } from "./signaling.js";
import { LevelMeters } from "./meters.js";
import { StatsReadout } from "./stats.js";
import { LatencyChoice } from "./latency.js";

// How long a suspended AudioContext may take to start before the page asks for a tap.
const CONTEXT_START_GRACE_MS = 1000;
const PLAYBACK_TEXT = {
  "waiting-for-tap": "Ready: this browser plays sound only after a tap.",
  autoplay: "Playing (started automatically).",
  tap: "Playing.",
};

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

// null until the first stream arrives, then "waiting-for-tap", "autoplay" or "tap".
let playback = null;
let autoplayAttempt = 0;

function setPlayback(state) {
  playback = state;
  root.dataset.playback = state;
  button.hidden = state !== "waiting-for-tap";
  playbackLine.textContent = PLAYBACK_TEXT[state];
}

async function tryAutoplay() {
  const attempt = ++autoplayAttempt;
  let played = true;
  try {
    await player.play();
  } catch (error) {
    if (error.name === "AbortError") return; // a newer stream replaced this one; its attempt decides
    played = false;
  }
  const running = played && (await meters.running(CONTEXT_START_GRACE_MS));
  if (attempt !== autoplayAttempt || playback === "tap") return;
  setPlayback(played && running ? "autoplay" : "waiting-for-tap");
}

const connection = new ListenerConnection({
  url: `${scheme}://${location.host}${config.wsPath}`,
  iceServers: config.iceServers,
  onStatus: (state, text) => {
    status.dataset.state = state;
    status.textContent = text;
    root.dataset.state = state;
  },
  onStream: (stream) => {
    player.srcObject = stream;
    meters.attach(stream);
    // After a reconnect the page already may play: only the first stream (or one still waiting) asks.
    if (playback === "autoplay" || playback === "tap") player.play().catch(() => {});
    else tryAutoplay();
  },
  onPeer: (pc) => {
    stats.attach(pc);
    latency.attach(pc);
  },
});

button.addEventListener("click", () => {
  // Both calls inside the tap itself: the gesture is what lets them start.
  const started = Promise.all([player.play(), meters.unlock()]);
  button.hidden = true;
  started.then(() => setPlayback("tap"), () => setPlayback("waiting-for-tap"));
});
volume.addEventListener("input", () => { player.volume = Number(volume.value); });
mute.addEventListener("click", () => {
  player.muted = !player.muted;
  mute.textContent = player.muted ? "Unmute" : "Mute";
  mute.setAttribute("aria-pressed", String(player.muted));
});

window.rtcCaster = {
  connection, meters, stats, player,
  get playback() { return playback; },
  get latency() { return latency.name; },
};
connection.start();
