"""Per-stream broadcast: read the source and encode once, hand the same packet to every listener.

A BroadcastHub exists while a stream has listeners. Whenever its source has the
next 20 ms frame (on the clock, or as the device delivers), it reads it, encodes it once, wraps each encoded payload in
an av.Packet, and pushes that same object to every listener's track. aiortc's
sender, given an av.Packet instead of a frame, only packetizes, encrypts and
sends: nothing is decoded, resampled or encoded per listener.
"""
import asyncio
import collections
import fractions
import logging

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from .config import FRAME_SAMPLES, SAMPLE_RATE
from .encoders import create_encoder, match_channels

logger = logging.getLogger(__name__)



class ListenerTrack(MediaStreamTrack):
    """One listener's view of a hub: a bounded queue of encoded packets, oldest dropped first."""

    kind = "audio"

    def __init__(self, hub, max_packets):
        super().__init__()
        self.hub = hub
        self._packets = collections.deque(maxlen=max_packets)
        self._waiter = None  # the future recv() waits on while the queue is empty
        self.dropped = 0

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

    async def recv(self):
        while not self._packets:
            if self.readyState != "live":
                raise MediaStreamError
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        return self._packets.popleft()

    def stop(self):
        if self.readyState == "live":
            super().stop()
            self._wake()
            self.hub.unsubscribe(self)


class BroadcastHub:
    """Reads, encodes and fans out one stream. `open_source(config, on_device_state)` gives its
    source; `announce(slug, state, message)` tells the stream's listeners about a state change."""

    def __init__(self, config, max_packets, open_source, announce, on_idle, per_listener=False):
        self.config = config
        self._per_listener = per_listener
        self._max_packets = max_packets
        self._open_source = open_source
        self._announce = announce
        self._on_idle = on_idle
        self.status = ("playing", "")
        self._tracks = set()
        self._task = None
        self._source = None
        self._encoder = None
        self.packets_sent = 0

    @property
    def listener_count(self):
        return len(self._tracks)

    @property
    def source_backlog_ms(self):
        """Audio waiting between capture and encoder (device sources), smoothed; None for generated sources."""
        return getattr(self._source, "backlog_ms", None)

    @property
    def dropped_packets(self):
        """Packets dropped from the queues of listeners still connected (too slow to take them)."""
        return sum(track.dropped for track in self._tracks)

    def subscribe(self):
        track = ListenerTrack(self, self._max_packets)
        self._tracks.add(track)
        if self._task is None:
            self._source = self._open_source(self.config, self._device_state_changed)
            self._encoder = create_encoder(self.config)
            self._time_base = fractions.Fraction(1, self._encoder.clock_rate)
            self._task = asyncio.create_task(self._run(), name=f"broadcast:{self.config.slug}")
        return track

    def _device_state_changed(self, capture):
        state = {"capturing": "playing", "lost": "device-lost"}.get(capture.state)
        if state is not None and (state, capture.message) != self.status:
            self.status = (state, capture.message)
            self._announce(self.config.slug, state, capture.message)

    def unsubscribe(self, track):
        self._tracks.discard(track)
        if not self._tracks:
            self._shut_down()

    def stop(self):
        """End every listener's track and the hub itself."""
        for track in list(self._tracks):
            track.stop()  # each one unsubscribes; the last shuts the hub down
        self._shut_down()

    def _shut_down(self):
        if self._task is None:
            return
        self._task.cancel()
        self._task = None
        self._source.close()
        self._on_idle(self)

    async def _run(self):
        send = self._send_raw_frame if self._per_listener else self._send_encoded
        while True:
            await self._source.wait_for_frame()
            send(self._source.read_frame())

    @property
    def late_frames(self):
        """Frames a real-time-paced source made late (the event loop was busy); 0 for device sources."""
        pacer = getattr(self._source, "pacer", None)
        return pacer.late_frames if pacer else 0

    def _send_encoded(self, pcm):
        for encoded in self._encoder.encode(pcm):
            packet = av.Packet(encoded.payload)
            packet.pts = encoded.timestamp
            packet.time_base = self._time_base
            for track in self._tracks:
                track.push(packet)
            self.packets_sent += 1

    def _send_raw_frame(self, pcm):
        """Benchmark comparison only (RTC_ENCODE_PER_LISTENER): every listener's sender encodes."""
        pcm = match_channels(pcm, self.config.channels)
        layout = "stereo" if self.config.channels == 2 else "mono"
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout=layout)
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self.packets_sent * FRAME_SAMPLES
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        for track in self._tracks:
            track.push(frame)
        self.packets_sent += 1


class HubRegistry:
    """The hubs of one process, one per distinct StreamConfig. `on_empty()` runs when the last one goes."""

    def __init__(self, max_packets, open_source, announce, per_listener=False, on_empty=None):
        self._max_packets = max_packets
        self._on_empty = on_empty
        self._per_listener = per_listener
        self._open_source = open_source
        self._announce = announce
        self._hubs = {}

    def subscribe(self, config):
        hub = self._hubs.get(config)
        if hub is None:
            hub = BroadcastHub(
                config, self._max_packets, self._open_source, self._announce, self._forget, self._per_listener
            )
            self._hubs[config] = hub
        return hub.subscribe()

    def _forget(self, hub):
        if self._hubs.get(hub.config) is hub:
            del self._hubs[hub.config]
            if not self._hubs and self._on_empty:
                self._on_empty()

    def hubs(self):
        return list(self._hubs.values())

    def stop_all(self):
        for hub in list(self._hubs.values()):
            hub.stop()
