// One listener's connection: WebSocket signaling and the RTCPeerConnection behind it.
import { requestStereoOpus } from "./sdp.js";

function iceGatheringComplete(pc) {
  // The server does not trickle ICE: send the offer once all candidates are in it.
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") resolve();
    });
  });
}

export class ListenerConnection {
  constructor({ url, iceServers, onStatus, onStream }) {
    this.url = url;
    this.iceServers = iceServers;
    this.onStatus = onStatus;
    this.onStream = onStream;
    this.ws = null;
    this.pc = null;
    this.lastError = null;
  }

  start() {
    this.lastError = null;
    this.onStatus("connecting", "Connecting…");
    this.ws = new WebSocket(this.url);
    this.ws.addEventListener("open", () => this.sendOffer().catch((e) => this.fail(`Could not start: ${e.message}`)));
    this.ws.addEventListener("message", (event) => this.handleMessage(JSON.parse(event.data)));
    this.ws.addEventListener("close", (event) => this.handleClose(event));
    this.ws.addEventListener("error", () => { this.lastError = this.lastError || "The server cannot be reached."; });
  }

  async sendOffer() {
    const pc = new RTCPeerConnection({ iceServers: this.iceServers });
    this.pc = pc;
    pc.addTransceiver("audio", { direction: "recvonly" });
    pc.addEventListener("track", (event) => this.onStream(event.streams[0] || new MediaStream([event.track])));
    pc.addEventListener("connectionstatechange", () => this.handleConnectionState(pc.connectionState));
    const offer = await pc.createOffer();
    await pc.setLocalDescription({ type: "offer", sdp: requestStereoOpus(offer.sdp) });
    await iceGatheringComplete(pc);
    this.ws.send(JSON.stringify({ type: "offer", sdp: pc.localDescription.sdp }));
  }

  async handleMessage(message) {
    if (message.type === "answer") {
      await this.pc.setRemoteDescription({ type: "answer", sdp: message.sdp });
    } else if (message.type === "error") {
      this.lastError = message.message;
      this.onStatus("failed", message.message);
    } else if (message.type === "status") {
      this.onStatus(message.state || "status", message.message);
    }
  }

  handleConnectionState(state) {
    if (state === "connected") this.onStatus("connected", "Connected: playing.");
    else if (state === "failed") this.fail("The audio connection failed (no network path to the server).");
    else if (state === "disconnected") this.onStatus("connecting", "Connection interrupted…");
  }

  handleClose(event) {
    if (event.code === 4404) this.fail(this.lastError || "This stream does not exist or is switched off.");
    else if (this.pc?.connectionState !== "connected") this.fail(this.lastError || "The server closed the connection.");
  }

  fail(text) {
    this.onStatus("failed", text);
    this.stop();
  }

  stop() {
    this.pc?.close();
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) this.ws.close();
  }
}
