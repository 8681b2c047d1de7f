"""Per-stream broadcast: read the source and encode once, hand the same packet to every listener.

A BroadcastHub exists while a stream has listeners. Whenever its source has the next frame
(20 or 10 ms, on the clock, or as the device delivers), it reads it, encodes it once, and pushes
that same EncodedPacket to every sink in one loop: a WebRTC listener's ListenerSender
(streams/webrtc/fanout.py: its RTP header, SRTP and send, nothing else per listener), an HTTP
listener's queue (ListenerTrack), or the media owner's publisher. Nothing is decoded,
resampled or encoded per listener.
"""
import asyncio
import collections
import fractions
import logging

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from ..webrtc.fanout import EncodedPacket, ListenerSender
from .bitrate import BitrateMeter
from .config import FRAME_MS, SAMPLE_RATE
from .encoders import create_encoder, match_channels
from ..ops.supervision import Backoff, Supervisor
from .frametiming import FrameTiming
from .health import MESSAGES as ALARM_MESSAGES
from .health import SourceHealth, clipped_samples, frame_level_dbfs

logger = logging.getLogger(__name__)

SHIFTED_KEPT = 64  # re-stamped packets a hub keeps for listeners still reading older ones
RESTARTING_MESSAGE = "The stream hit an error and is restarting."
FAILED_MESSAGE = "The stream failed and could not be restarted; reconnect to start it again."



class ListenerTrack(MediaStreamTrack):
    """A listener's queue of a hub's packets, oldest dropped first, read with `recv()`: an HTTP
    listener's (streams/oggstream.py), or, when each listener encodes for itself (the
    benchmark's baseline), the raw frames aiortc's sender encodes and sends.

    When the operator changes the stream's settings (same codec), the listener moves to the
    new settings' hub: after `handover(successor)` this track goes on with its own packets
    until the successor has its first one, then delivers the successor's packets, re-stamped
    to run on from its own last one. aiortc's sender keeps reading the track it started
    with and sees one continuous stream, with no gap while the new hub starts.
    """

    kind = "audio"

    def __init__(self, hub, max_packets):
        super().__init__()
        self.hub = hub
        self._packets = collections.deque(maxlen=max_packets)
        self._waiter = None  # the future recv() waits on while the queue is empty
        self._successor = None
        self._predecessor = None
        self._handed_over = False
        self._pts_shift = None  # set on the first packet after a handover
        self.last_pts = None
        self.dropped = 0
        self._started = False
        self.skipped_at_start = 0

    def push(self, packet):
        if len(self._packets) == self._packets.maxlen:
            self.dropped += 1
        self._packets.append(packet)
        self._wake()

    def _wake(self):
        # One bare future per wait: cheaper than asyncio.Event, and push() runs for every
        # listener on every packet.
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        if self._predecessor is not None and not self._predecessor._handed_over:
            self._predecessor._wake()  # it waits to switch to this track's first packet

    async def recv(self):
        while True:
            if self._successor is not None and (self._handed_over or self._successor._packets):
                if not self._handed_over:
                    self._handed_over = True
                    self.hub.unsubscribe(self)
                return await self._successor.recv()
            if self._packets:
                break
            if self.readyState != "live":
                raise MediaStreamError
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        if not self._started:
            # Packets queued while ICE and DTLS came up are old news: a listener starts at the
            # live edge, with the newest one, or its receiver would play them all, that much late.
            self._started = True
            self.skipped_at_start = len(self._packets) - 1
            while len(self._packets) > 1:
                self._packets.popleft()
        packet = self._packets.popleft()
        if self._predecessor is not None:
            packet = self._continuing(packet)
        self.last_pts = packet.pts
        return packet

    def _continuing(self, packet):
        if self._pts_shift is None:
            played = self._predecessor
            while played is not None and played.last_pts is None:  # a predecessor may never have played
                played = played._predecessor
            # Its last packet lasts a frame of its own hub, which may differ from ours (10 or 20 ms).
            self._pts_shift = 0 if played is None else played.last_pts + played.hub.frame_samples - packet.pts
        return self.hub.shifted(packet, self._pts_shift)

    def handover(self, successor):
        """Move to `successor`'s hub as soon as it has sound (see the class notes)."""
        successor._predecessor = self
        self._successor = successor
        self._wake()

    def stop(self):
        if self.readyState == "live":
            super().stop()
            self._wake()
            self.hub.unsubscribe(self)
            for neighbour in (self._successor, self._predecessor):  # the peer closed mid-handover
                if neighbour is not None:
                    neighbour.stop()


class Hub:
    """What every hub shares: the tracks of its listeners, to which it pushes the same packets.

    The first listener starts the hub's work (`_start`), the last one leaving ends it
    (`_stop_work`) and tells the registry (`on_idle`). BroadcastHub reads and encodes here;
    relay.worker.RelayHub receives what the media owner encoded.
    """

    def __init__(self, config, max_packets, on_idle):
        self.config = config
        # `max_packets` counts 20 ms packets: a listener's queue holds as much time in any stream.
        self._max_packets = config.frames_in(max_packets * FRAME_MS)
        self._on_idle = on_idle
        self._sinks = set()
        self._running = False
        self.status = ("playing", "")
        self.packets_sent = 0
        self.bytes_sent = 0  # payload bytes, once per packet (not per listener)
        self.packets_missed = 0  # gaps in what the hub received (a relay hub counts the owner's)
        self.meter = BitrateMeter()
        # How the source's frames fared over the last minute (a relay hub's stay at zero).
        self.timing = FrameTiming(window=config.frames_in(60_000))
        self._shifted = {}  # (pts, shift) -> re-stamped copy, for listeners handed over to this hub

    @property
    def listener_count(self):
        return len(self._sinks)

    @property
    def dropped_packets(self):
        """Packets dropped from the queues of listeners still connected (too slow to take them)."""
        return sum(sink.dropped for sink in self._sinks)

    @property
    def bitrate(self):
        """Bit/s of the encoded stream over the last seconds (payload, as listeners receive it)."""
        return self.meter.bits_per_second()

    def subscribe(self):
        """A WebRTC listener's sink: the hub sends its RTP itself (streams/webrtc/fanout.py)."""
        return self.attach(ListenerSender(self))

    def subscribe_reader(self):
        """A queue of the hub's packets to read with `recv()` (an HTTP listener's)."""
        return self.attach(ListenerTrack(self, self._max_packets))

    def attach(self, sink):
        """Add a receiver of every packet: anything with `push(packet)` and a `dropped` count: a
        listener's sender or queue, or the media owner's publisher (streams/relay/owner.py). The
        first one starts the hub's work; if that fails, the error is the caller's and the hub
        holds nothing."""
        if not self._running:
            self._start()
            self._running = True
        self._sinks.add(sink)
        return sink

    def unsubscribe(self, sink):
        self._sinks.discard(sink)
        if not self._sinks:
            self._shut_down()

    def stop(self):
        """End every listener's sink and the hub itself."""
        for sink in list(self._sinks):
            sink.stop()  # each one unsubscribes; the last shuts the hub down
        self._shut_down()

    @property
    def restarts(self):
        """Times the hub's work failed and was restarted (streams/ops/supervision.py)."""
        return 0

    def _shut_down(self):
        if not self._running:
            return
        self._running = False
        self._stop_work()
        self._on_idle(self)

    def shifted(self, packet, shift):
        """`packet` with its pts moved by `shift`. Listeners that came over from one hub together
        share a shift, so each copy is made once per packet and shift, not once per listener."""
        if shift == 0:
            return packet
        key = (packet.pts, shift)
        copy = self._shifted.get(key)
        if copy is None:
            copy = self._restamped(packet, packet.pts + shift)
            self._shifted[key] = copy
            if len(self._shifted) > SHIFTED_KEPT:
                del self._shifted[next(iter(self._shifted))]  # the oldest
        return copy

    def _restamped(self, packet, pts):
        """A copy of what this hub pushes, `packet`, at `pts`."""
        return EncodedPacket(packet.payload, pts, packet.marker)

    def _push(self, packet, payload_bytes):
        # Over a copy: a listener moving between two sinks of this hub leaves the set meanwhile.
        for sink in tuple(self._sinks):
            sink.push(packet)
        self.packets_sent += 1
        self.bytes_sent += payload_bytes
        self.meter.add(payload_bytes)

    def _start(self):
        raise NotImplementedError

    def _stop_work(self):
        raise NotImplementedError


class BroadcastHub(Hub):
    """Reads, encodes and fans out one stream. `open_source(config, on_device_state)` gives its
    source; `announce(slug, state, message)` tells the stream's listeners about a state change."""

    mode = "encode"  # /status.json: this process reads the source and encodes

    def __init__(self, config, max_packets, open_source, announce, on_idle, per_listener=False):
        super().__init__(config, max_packets, on_idle)
        self._per_listener = per_listener
        self._open_source = open_source
        self._announce = announce
        self._supervisor = None
        self._source = None
        self._encoder = None
        self._pts_shift = 0  # keeps the timeline running on over a restart (a new source starts at 0)
        self.health = SourceHealth(config.health_limits())

    def subscribe(self):
        if self._per_listener:  # every listener's aiortc sender encodes the raw frames itself
            return self.subscribe_reader()
        return super().subscribe()

    @property
    def restarts(self):
        return self._supervisor.restarts if self._supervisor else 0

    @property
    def alarm(self):
        """"source-silent", "source-clipping" or None (streams/audio/health.py)."""
        return self.health.state

    def restart_backoff(self):
        return Backoff()

    def _start(self):
        self._next_pts = None
        self._open_work()
        self._supervisor = Supervisor(f"broadcast:{self.config.slug}", self._run, on_crash=self._restart_work,
                                      on_give_up=self._give_up, backoff=self.restart_backoff())

    def _open_work(self):
        self._source = self._open_source(self.config, self._device_state_changed)
        try:
            self._encoder = create_encoder(self.config)
        except Exception:
            self._source.close()
            raise
        # One frame on the timeline of what the hub pushes: the codec's RTP clock, or the raw frames'.
        rate = SAMPLE_RATE if self._per_listener else self._encoder.clock_rate
        self.frame_samples = rate * self.config.frame_samples // SAMPLE_RATE

    def _stop_work(self):
        self._supervisor.stop()
        self._source.close()

    def _restart_work(self, error):
        """The source or the encoder failed: tell the listeners, and start both afresh. The
        listeners stay; their timeline runs on from where it was (marked as a gap)."""
        self._set_status("restarting", RESTARTING_MESSAGE)
        self._source.close()
        self._open_work()
        self._pts_shift = None  # measured on the next packet

    def _give_up(self, error):
        """Restarting did not help: tell the listeners, and leave the registry, so that the next
        listener starts the stream afresh rather than join this one."""
        self._set_status("stream-failed", FAILED_MESSAGE)
        self.stop()

    def _set_status(self, state, message):
        if (state, message) != self.status:
            self.status = (state, message)
            self._announce(self.config.slug, state, message)

    def _device_state_changed(self, capture):
        state, message = capture.status  # one read: the state and message of the same moment
        state = {"capturing": "playing", "lost": "device-lost"}.get(state)
        if state is not None:
            self._set_status(state, message)

    async def _run(self):
        send = self._send_raw_frame if self._per_listener else self._send_encoded
        loop = asyncio.get_running_loop()
        while True:
            frame = await self._source.next_frame()
            send(frame)
            if self.status[0] == "restarting":  # sound again after a restart
                self._set_status("playing", "")
            if not frame.silence:  # the silence sent while a device is gone is not the source's
                self._watch_health(frame.pcm, loop.time())
            delay_ms = None if frame.captured_at is None else (loop.time() - frame.captured_at) * 1000
            self.timing.sent(delay_ms, frame.silence, frame.jumped, frame.dropped_before)

    def _watch_health(self, pcm, now):
        change = self.health.observe(now, frame_level_dbfs(pcm), pcm.size, clipped_samples(pcm))
        if change is None:
            return
        if change == "playing":
            logger.info("%s: the source's %s ended", self.config.slug, self.status[0])
            self._set_status("playing", "")
        else:
            logger.warning("%s: %s", self.config.slug, ALARM_MESSAGES[change])
            self._set_status(change, ALARM_MESSAGES[change])

    @property
    def late_frames(self):
        """Frames a real-time-paced source made late (the event loop was busy); 0 for device sources."""
        pacer = getattr(self._source, "pacer", None)
        return pacer.late_frames if pacer else 0

    def _send_encoded(self, frame):
        for encoded in self._encoder.encode(frame.pcm, frame.pts):
            pts, follows = self._on_timeline(encoded.timestamp)
            # RTP's marker: the first packet after a gap in the timeline (DTX left silent frames
            # out, or the device's timeline jumped), so a receiver can re-sync its playout there.
            self._push(EncodedPacket(encoded.payload, pts, not follows), len(encoded.payload))

    def _send_raw_frame(self, frame):
        """Benchmark comparison only (RTC_ENCODE_PER_LISTENER): every listener's sender encodes,
        with aiortc's encoder, which makes 20 ms packets whatever the profile's frame length."""
        pts, _ = self._on_timeline(frame.pts)
        self._push(raw_audio_frame(match_channels(frame.pcm, self.config.channels), pts), 0)

    def _on_timeline(self, pts):
        """`pts` (the source's, or the encoder's) on the hub's timeline, which runs on over a
        restart; and whether it follows the last one."""
        if self._pts_shift is None:  # the first after a restart follows the last one
            self._pts_shift = 0 if self._next_pts is None else self._next_pts - pts
        pts += self._pts_shift
        follows = pts == self._next_pts
        self._next_pts = pts + self.frame_samples
        return pts, follows

    def _restamped(self, packet, pts):
        if not self._per_listener:
            return super()._restamped(packet, pts)
        return raw_audio_frame(packet.to_ndarray().reshape(-1, self.config.channels), pts)


def raw_audio_frame(pcm, pts):
    """int16 samples of shape (frame samples, channels) as the av.AudioFrame aiortc's encoder takes."""
    layout = "stereo" if pcm.shape[1] == 2 else "mono"
    audio = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout=layout)
    audio.sample_rate = SAMPLE_RATE
    audio.pts = pts
    audio.time_base = fractions.Fraction(1, SAMPLE_RATE)
    return audio


MAX_VARIANTS_PER_STREAM = 6


def closest_variant(wanted, variants):
    """Of running `variants`, the one to give a listener that wants `wanted`: the richest within
    its limits (channels, bitrate, playback rate), else the leanest."""
    def within(variant):
        return (variant.channels <= wanted.channels and variant.opus_bitrate <= wanted.opus_bitrate
                and variant.opus_max_playback_rate <= wanted.opus_max_playback_rate)

    def richness(variant):
        return variant.opus_bitrate, variant.channels, variant.opus_max_playback_rate

    fitting = [variant for variant in variants if within(variant)]
    return max(fitting, key=richness) if fitting else min(variants, key=richness)


class HubRegistry:
    """The hubs of one process, one per distinct StreamConfig, made by `make_hub(config, on_idle)`:
    a BroadcastHub (this process encodes) or a relay.worker.RelayHub (the media owner does).
    `on_empty()` runs when the last hub goes."""

    def __init__(self, make_hub, on_empty=None, max_variants=MAX_VARIANTS_PER_STREAM):
        self._make_hub = make_hub
        self._on_empty = on_empty
        self._max_variants = max_variants
        self._hubs = {}

    def subscribe(self, config):
        """A WebRTC listener's sink on the hub for `config` (Hub.subscribe); its `hub.config` is
        what the listener really gets. When the stream already runs its most variants, a listener
        whose variant is not among them joins the closest one (see `closest_variant`) instead of
        starting another encoder."""
        return self._hub_for(config).subscribe()

    def subscribe_reader(self, config):
        """An HTTP listener's queue on the hub for `config` (Hub.subscribe_reader)."""
        return self._hub_for(config).subscribe_reader()

    def _hub_for(self, config):
        hub = self._hubs.get(config)
        if hub is None:
            variants = [known for known in self._hubs if known.unlimited() == config.unlimited()]
            if len(variants) >= self._max_variants:
                hub = self._hubs[closest_variant(config, variants)]
            else:
                hub = self._hubs[config] = self._make_hub(config, self._forget)
        return hub

    def _forget(self, hub):
        if self._hubs.get(hub.config) is hub:
            del self._hubs[hub.config]
            if not self._hubs and self._on_empty:
                self._on_empty()

    def running(self):
        """The hubs running now."""
        return list(self._hubs.values())

    def stop_all(self):
        for hub in list(self._hubs.values()):
            hub.stop()
