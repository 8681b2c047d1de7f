// The listener's latency choice: how much jitter buffer the browser keeps for the stream, asked
// for through RTCRtpReceiver.jitterBufferTarget. Only Chromium-family browsers honour it.

// Milliseconds of buffer each choice asks for.
// - low: 0 leaves the browser at its own adaptive minimum (tens of ms on a quiet LAN); a late
//   packet is a short glitch until the buffer grows.
// - normal: 150 ms rides out the ~100 ms stalls of ordinary Wi-Fi (power saving, retries) and
//   still keeps the sound roughly in step with the room.
// - robust: 400 ms covers the longer gaps of crowded or roaming Wi-Fi, for listeners who would
//   rather lag the room than hear dropouts.
export const TARGET_MS = { low: 0, normal: 150, robust: 400 };
const DEFAULT_CHOICE = "low";
const STORAGE_KEY = "rtcCaster.latency";

export const supported = typeof RTCRtpReceiver !== "undefined" && "jitterBufferTarget" in RTCRtpReceiver.prototype;

// localStorage throws where storage is switched off; the choice then lasts for this page only.
function remembered() {
  try {
    const name = localStorage.getItem(STORAGE_KEY);
    return Object.hasOwn(TARGET_MS, name) ? name : DEFAULT_CHOICE;
  } catch {
    return DEFAULT_CHOICE;
  }
}

function remember(name) {
  try {
    localStorage.setItem(STORAGE_KEY, name);
  } catch {
    // not remembered; still applied
  }
}

export class LatencyChoice {
  constructor(select, note) {
    this.select = select;
    this.pc = null;
    this.name = remembered();
    select.value = this.name;
    select.disabled = !supported;
    note.hidden = supported;
    select.addEventListener("change", () => this.choose(select.value));
  }

  // Called for every new peer: each reconnect gets a new receiver.
  attach(pc) {
    this.pc = pc;
    this.apply();
  }

  choose(name) {
    if (!Object.hasOwn(TARGET_MS, name)) return;
    this.name = name;
    this.select.value = name;
    remember(name);
    this.apply();
  }

  apply() {
    if (!supported || !this.pc || this.pc.connectionState === "closed") return;
    for (const receiver of this.pc.getReceivers()) {
      if (receiver.track.kind === "audio") receiver.jitterBufferTarget = TARGET_MS[this.name];
    }
  }
}
