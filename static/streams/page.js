// The listener page: wires the connection, the player, the meters, the stats and the controls.
import { ListenerConnection } from "./signaling.js";
import { LevelMeters } from "./meters.js";
import { StatsReadout } from "./stats.js";

const root = document.getElementById("listener");
const config = JSON.parse(document.getElementById("listener-config").textContent);
const status = document.getElementById("status");
const player = document.getElementById("player");
const button = document.getElementById("listen");
const volume = document.getElementById("volume");
const mute = document.getElementById("mute");

const meters = new LevelMeters(document.getElementById("meters"));
const stats = new StatsReadout(document.getElementById("stats"));
const scheme = location.protocol === "https:" ? "wss" : "ws";

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
    player.play().catch(() => {});
    meters.attach(stream);
  },
  onPeer: (pc) => stats.attach(pc),
});

button.addEventListener("click", () => {
  button.hidden = true;
  connection.start();
});
volume.addEventListener("input", () => { player.volume = Number(volume.value); });
mute.addEventListener("click", () => {
  player.muted = !player.muted;
  mute.textContent = player.muted ? "Unmute" : "Mute";
  mute.setAttribute("aria-pressed", String(player.muted));
});

window.rtcCaster = { connection, meters, stats, player };
