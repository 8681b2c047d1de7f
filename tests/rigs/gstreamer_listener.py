"""A GStreamer webrtcbin listener: the WebRTC half of tests/rigs/gstreamer.py, which does the
signaling. Debian's GStreamer Python bindings are for the system's python3, not the project's
.venv, so this runs as its own process, with nothing but the standard library and gi:

    /usr/bin/python3 tests/rigs/gstreamer_listener.py --out decoded.raw [--codecs opus,pcmu,...] [--mono]

It speaks JSON lines. On stdout: {"offer": sdp} once ICE gathering is complete (the server does
not trickle), {"decoding": {rtp caps, "rate", "channels"}} when sound arrives (the decoded
audio is appended to --out as interleaved signed 16-bit samples at the codec's own rate),
{"state": ...} for connection state changes, {"error": ...} for pipeline errors (a DTLS
failure, say) and {"stats": {...}} when asked. On stdin: {"answer": sdp}, {"stats": true},
{"stop": true}.

ICE runs on 127.0.0.1 only, with libnice's UPnP off, and no STUN or TURN server.
"""
import argparse
import json
import sys
import threading

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("Nice", "0.1")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC, Nice  # noqa: E402

# What a listener of every profile codec offers: RTP caps per payload type (webrtcbin turns the
# extra fields into a=fmtp parameters, so stereo=1 asks for stereo Opus, as browsers' pages do).
CODEC_CAPS = {
    "opus": "application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000,encoding-params=(string)2",
    "pcmu": "application/x-rtp,media=audio,encoding-name=PCMU,payload=0,clock-rate=8000",
    "pcma": "application/x-rtp,media=audio,encoding-name=PCMA,payload=8,clock-rate=8000",
    "g722": "application/x-rtp,media=audio,encoding-name=G722,payload=9,clock-rate=8000",
}
LOOPBACK = "127.0.0.1"

_print_lock = threading.Lock()


def say(**message):
    """One JSON line to the signaling side; webrtcbin calls back from its own threads."""
    with _print_lock:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()


def plain(value):
    """A GStreamer value as JSON (numbers, strings, booleans; anything else as text)."""
    return value if isinstance(value, (bool, int, float, str)) or value is None else str(value)


def structure_fields(structure):
    fields = {}
    for i in range(structure.n_fields()):
        name = structure.nth_field_name(i)
        fields[name] = plain(structure.get_value(name))
    return fields


class GStreamerListener:
    def __init__(self, out_path, codecs, stereo):
        self.out_path = out_path
        self.loop = GLib.MainLoop()
        self.pipeline = Gst.Pipeline.new("listener")
        self.webrtc = Gst.ElementFactory.make("webrtcbin", "webrtc")
        self.webrtc.set_property("bundle-policy", GstWebRTC.WebRTCBundlePolicy.MAX_BUNDLE)
        self.pipeline.add(self.webrtc)
        self._restrict_ice_to_loopback()
        caps = Gst.Caps.from_string(";".join(self._codec_caps(codec, stereo) for codec in codecs))
        self.webrtc.emit("add-transceiver", GstWebRTC.WebRTCRTPTransceiverDirection.RECVONLY, caps)
        self.webrtc.connect("on-negotiation-needed", self._on_negotiation_needed)
        self.webrtc.connect("notify::ice-gathering-state", self._on_gathering_state)
        self.webrtc.connect("notify::connection-state", self._on_state, "connection")
        self.webrtc.connect("notify::ice-connection-state", self._on_state, "ice")
        self.webrtc.connect("pad-added", self._on_rtp_pad)
        bus = self.pipeline.get_bus()
        bus.add_signal_watch()
        bus.connect("message::error", self._on_bus_message, "error")
        bus.connect("message::warning", self._on_bus_message, "warning")
        self._offer_sent = False

    @staticmethod
    def _codec_caps(codec, stereo):
        caps = CODEC_CAPS[codec]
        return caps + (",stereo=(string)1" if codec == "opus" and stereo else "")

    def _restrict_ice_to_loopback(self):
        # Both kept for the process's life: PyGObject drops a reference to them when its wrappers
        # go, and webrtcbin's ICE object would be freed under it.
        self.ice = self.webrtc.get_property("ice-agent")
        self.agent = agent = self.ice.get_property("agent")
        agent.set_property("upnp", False)  # UPnP would ask the LAN's router (SSDP multicast)
        self.ice.set_property("ice-tcp", False)  # the server's ICE (aioice) is UDP only
        address = Nice.Address.new()
        address.set_from_string(LOOPBACK)
        agent.add_local_address(address)  # gather host candidates on this address only

    def run(self):
        self.pipeline.set_state(Gst.State.PLAYING)
        GLib.io_add_watch(GLib.IOChannel.unix_new(sys.stdin.fileno()), GLib.PRIORITY_DEFAULT,
                          GLib.IOCondition.IN | GLib.IOCondition.HUP, self._on_stdin)
        self.loop.run()
        self.pipeline.set_state(Gst.State.NULL)

    # offer and answer

    def _on_negotiation_needed(self, webrtc):
        promise = Gst.Promise.new_with_change_func(self._on_offer_created, None)
        webrtc.emit("create-offer", None, promise)

    def _on_offer_created(self, promise, _):
        reply = promise.get_reply()
        if reply.has_field("error"):
            say(error=f"create-offer: {reply.get_value('error')}")
            return
        offer = reply.get_value("offer")
        self.webrtc.emit("set-local-description", offer, Gst.Promise.new())

    def _on_gathering_state(self, webrtc, _pspec):
        if webrtc.get_property("ice-gathering-state") == GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            GLib.idle_add(self._send_offer)

    def _send_offer(self):
        if not self._offer_sent:
            self._offer_sent = True
            say(offer=self.webrtc.get_property("local-description").sdp.as_text())
        return GLib.SOURCE_REMOVE

    def _set_answer(self, text):
        result, message = GstSdp.SDPMessage.new_from_text(text)
        if result != GstSdp.SDPResult.OK:
            say(error=f"unparsable answer ({result})")
            return
        answer = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, message)
        self.webrtc.emit("set-remote-description", answer, Gst.Promise.new())

    # media

    def _on_rtp_pad(self, webrtc, pad):
        if pad.get_direction() != Gst.PadDirection.SRC:
            return
        rtp_caps = structure_fields(pad.get_current_caps().get_structure(0))
        decode = Gst.ElementFactory.make("decodebin")
        decode.connect("pad-added", self._on_decoded_pad, rtp_caps)
        self.pipeline.add(decode)
        decode.sync_state_with_parent()
        pad.link(decode.get_static_pad("sink"))

    def _on_decoded_pad(self, decode, pad, rtp_caps):
        convert = Gst.ElementFactory.make("audioconvert")
        raw = Gst.ElementFactory.make("capsfilter")
        raw.set_property("caps", Gst.Caps.from_string("audio/x-raw,format=S16LE,layout=interleaved"))
        sink = Gst.ElementFactory.make("filesink")
        sink.set_property("location", self.out_path)
        sink.set_property("buffer-mode", 2)  # unbuffered: the test reads the file as it grows
        sink.set_property("sync", False)
        for element in (convert, raw, sink):
            self.pipeline.add(element)
        convert.link(raw)
        raw.link(sink)
        for element in (sink, raw, convert):
            element.sync_state_with_parent()
        pad.link(convert.get_static_pad("sink"))
        pad.add_probe(Gst.PadProbeType.EVENT_DOWNSTREAM, self._on_decoded_caps, rtp_caps)

    def _on_decoded_caps(self, pad, info, rtp_caps):
        event = info.get_event()
        if event.type == Gst.EventType.CAPS:
            decoded = structure_fields(event.parse_caps().get_structure(0))
            say(decoding={"rtp": rtp_caps, "rate": decoded.get("rate"), "channels": decoded.get("channels")})
            return Gst.PadProbeReturn.REMOVE
        return Gst.PadProbeReturn.OK

    # reports

    def _on_state(self, webrtc, _pspec, which):
        value = webrtc.get_property(f"{which}-state")
        say(state={which: value.value_nick})

    def _on_bus_message(self, _bus, message, kind):
        error, debug = message.parse_error() if kind == "error" else message.parse_warning()
        say(**{kind: f"{message.src.get_name()}: {error.message}", "debug": debug})

    def _send_stats(self):
        promise = Gst.Promise.new_with_change_func(self._on_stats, None)
        self.webrtc.emit("get-stats", None, promise)

    def _on_stats(self, promise, _):
        reply = promise.get_reply()
        stats = {}
        for i in range(reply.n_fields()):
            value = reply.get_value(reply.nth_field_name(i))
            if isinstance(value, Gst.Structure):
                fields = structure_fields(value)
                stats[reply.nth_field_name(i)] = fields
        say(stats=stats)

    def _on_stdin(self, channel, condition):
        line = sys.stdin.readline()
        if not line:  # the signaling side is gone
            self.loop.quit()
            return GLib.SOURCE_REMOVE
        command = json.loads(line)
        if "answer" in command:
            self._set_answer(command["answer"])
        elif "stats" in command:
            self._send_stats()
        elif "stop" in command:
            self.loop.quit()
            return GLib.SOURCE_REMOVE
        return GLib.SOURCE_CONTINUE


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="file for the decoded audio (S16LE, interleaved)")
    parser.add_argument("--codecs", default="opus,pcmu,pcma,g722", help="what to offer, in order")
    parser.add_argument("--mono", action="store_true", help="do not ask for stereo Opus")
    args = parser.parse_args()
    Gst.init(None)
    GStreamerListener(args.out, args.codecs.split(","), stereo=not args.mono).run()


if __name__ == "__main__":
    main()
