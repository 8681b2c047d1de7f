"""Live numbers cross threads only as snapshots the event loop publishes (issue #17, item 3).

Admin runs in Django's sync thread while the event loop sends packets. Reading the loop's hubs
from that thread raced the loop: a BitrateMeter tidies its window as it is read, so an admin
page open while a stream played lost the meter's updates and its bitrate drifted. These tests
run a hub on a real event loop as fast as it goes and read from a real second thread, with
Python switching threads every microsecond so that interleavings which are rare in production
happen here in every run.
"""
import asyncio
import dataclasses
import sys
import threading

import pytest

from streams.ops import livestats
from streams.audio.bitrate import BitrateMeter
from streams.audio.broadcast import BroadcastHub, Hub, HubRegistry
from streams.audio.capture import AudioCaptureManager
from streams.audio.config import StreamConfig
from streams.audio.sources import SineSource
from streams.webrtc.fanout import EncodedPacket
from streams.relay import wire
from streams.runtime import current_runtime, get_runtime
from tests.helpers import run
from tests.waiting import until, wait_for

CONFIG = StreamConfig(slug="metered", source="sine", channels=2, codec="opus")
PACKET = EncodedPacket(b"\x00" * 100, 0, False)
STEPS = 200_000


class HandFedHub(Hub):
    """A hub whose packets the test hands it (Hub._push, as a BroadcastHub does per encoded
    packet), so that the test knows every figure a snapshot should show at each moment."""

    mode = "test"
    late_frames = 0

    def _start(self):
        pass

    def _stop_work(self):
        pass


@pytest.fixture
def threads_switch_every_microsecond():
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


class Clock:
    """The meter's clock, moved by the test, so that the bitrate at each step is known exactly.
    A thread other than the one that made it reads a moment later than the loop's last packet,
    as admin does in real time."""

    READER_AHEAD = 0.0015

    def __init__(self):
        self.now = 0.0
        self._owner = threading.get_ident()

    def __call__(self):
        return self.now if threading.get_ident() == self._owner else self.now + self.READER_AHEAD


def hand_fed(runtime, clock):
    """The runtime's hubs become hand-fed ones; the first listener's hub, its meter on `clock`."""
    runtime.hubs = HubRegistry(lambda config, on_idle: HandFedHub(config, 10, on_idle))
    listener = runtime.hubs.subscribe_reader(CONFIG)
    listener.hub.meter = BitrateMeter(clock=clock)
    return listener


class Reader(threading.Thread):
    """Calls `read()` over and over on a thread of its own (as admin does), keeping what it got."""

    def __init__(self, read):
        super().__init__(daemon=True)
        self._read = read
        self._stop_reading = threading.Event()
        self.results, self.errors = [], []

    def run(self):
        while not self._stop_reading.is_set():
            try:
                self.results.append(self._read())
            except Exception as error:  # noqa: BLE001 - what the reader tripped over is the finding
                self.errors.append(error)

    def finish(self):
        self._stop_reading.set()
        self.join(10)


def test_admins_reading_from_another_thread_leaves_the_loops_bitrate_exact(threads_switch_every_microsecond):
    clock = Clock()
    expected = BitrateMeter(clock=clock)  # fed the same packets, read by nobody else

    async def scenario():
        hub = hand_fed(get_runtime(), clock).hub
        reader = Reader(lambda: (livestats.collect(), livestats.describe_profile("metered")))
        reader.start()
        await until(lambda: reader.results, 5, "the reader's first look")
        for step in range(STEPS):
            clock.now = step * 0.001
            hub._push(PACKET, len(PACKET.payload))
            expected.add(len(PACKET.payload))
            if step % 500 == 0:
                await asyncio.sleep(0)  # the loop's other tasks (publishing snapshots) run too
        reader.finish()
        clock.now += 2 * Clock.READER_AHEAD  # past whatever the reader may already have let go
        return hub.bitrate, reader

    measured, reader = run(scenario())
    assert reader.errors == []
    assert len(reader.results) > 100
    assert measured == expected.bits_per_second()


def test_every_snapshot_holds_the_figures_of_one_moment(threads_switch_every_microsecond):
    """Each step changes the listeners and sends a packet: at every moment between steps the
    listeners are 1 + packets % 2 and the bitrate is the meter's for `packets` packets. A reader
    of the live hub could see the listeners of one step with the packets of another."""
    clock = Clock()
    rates = {}  # packets sent -> the bitrate at that moment

    async def scenario():
        runtime = get_runtime()
        first = hand_fed(runtime, clock)
        hub, reference = first.hub, BitrateMeter(clock=clock)
        reader = Reader(lambda: runtime.snapshot)
        reader.start()
        second = None
        # At least STEPS // 40 steps, and on until the reader has seen 50 moments (a busy machine
        # gives its thread fewer looks: 28 in 5,000 steps beside the rest of the suite).
        for step in range(STEPS // 4):
            if step >= STEPS // 40 and step % 500 == 0 and len(moments(reader)) > 50:
                break
            clock.now = step * 0.001
            if second is None:
                second = runtime.hubs.subscribe_reader(CONFIG)
            else:
                second.stop()
                second = None
            hub._push(PACKET, len(PACKET.payload))
            reference.add(len(PACKET.payload))
            rates[hub.packets_sent] = reference.bits_per_second()
            runtime.publish_snapshot()  # as the runtime does on a change
            await asyncio.sleep(0)
        reader.finish()
        return reader

    reader = run(scenario())
    assert reader.errors == []
    seen = moments(reader)
    assert len(seen) > 50  # the reader saw many moments
    assert {(packets, listeners, bitrate) for packets, listeners, bitrate in seen
            if listeners != 1 + packets % 2 or bitrate != rates[packets]} == set()


def test_a_snapshot_cannot_be_changed_by_its_readers():
    async def scenario():
        runtime = get_runtime()
        hand_fed(runtime, Clock())
        return runtime.publish_snapshot()

    snapshot = run(scenario())
    with pytest.raises(dataclasses.FrozenInstanceError):
        snapshot.peers = 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        snapshot.variants[0].listeners = 3
    assert isinstance(snapshot.variants, tuple)


def test_the_runtime_publishes_its_snapshot_every_second_by_itself():
    """No one asks: a reader on another thread sees the listener and the packets of a real
    sine stream within a second or two."""
    looked = {}

    async def scenario():
        runtime = get_runtime()
        listener = runtime.hubs.subscribe_reader(CONFIG)
        first = await asyncio.to_thread(wait_for, lambda: current_runtime().snapshot
                                        and current_runtime().snapshot.variants, 3, "a snapshot with the stream")
        looked["first"] = first[0]
        later = await asyncio.to_thread(
            wait_for, lambda: (s := current_runtime().snapshot) and s.variants
            and s.variants[0].packets_sent > first[0].packets_sent and s.variants[0], 3, "a newer snapshot")
        listener.stop()
        return later

    later = run(scenario())
    first = looked["first"]
    assert (first.profile, first.listeners, first.codec, first.mode) == ("metered", 1, "opus", "encode")
    assert later.packets_sent >= first.packets_sent + 25  # a second of 20 ms packets at least
    assert 0 < later.bitrate < 200_000


def test_admins_rows_come_from_the_snapshot():
    async def scenario():
        runtime = get_runtime()
        hand_fed(runtime, Clock())
        runtime.publish_snapshot()
        return await asyncio.to_thread(livestats.collect)

    rows = run(scenario())
    assert rows == {"metered": {"listeners": 1, "variants": [{"codec": "opus", "channels": 2, "bitrate": 0, "alarm": None}]}}


def test_the_media_owners_snapshot_names_its_streams_as_the_workers_do():
    """What the owner may keep in Redis for /metrics: its hubs' figures under the same variant
    key as the workers' relays of them."""
    async def scenario():
        def sine_hub(config, on_idle):
            return BroadcastHub(config, 10, lambda config, _: SineSource(config.sine_frequencies),
                                lambda *_: None, on_idle)

        hubs = HubRegistry(sine_hub)
        publisher = hubs.subscribe_reader(CONFIG)  # stands where the owner's PacketPublisher does
        await until(lambda: publisher.hub.packets_sent >= 5, 5, "packets")
        snapshot = livestats.take_owner(hubs.running(), AudioCaptureManager(0))
        publisher.stop()
        return snapshot

    snapshot = run(scenario())
    [variant] = snapshot.variants
    assert (snapshot.process, snapshot.role, snapshot.loop) == ("owner", "owner", None)
    assert (variant.profile, variant.variant, variant.mode, variant.alarm) == ("metered", wire.stream_key(CONFIG),
                                                                               "encode", "")
    assert variant.packets_sent >= 5
    assert livestats.from_json(livestats.to_json(snapshot)) == snapshot


def test_admin_says_when_a_source_is_silent_or_clipping():
    row = {"listeners": 2, "variants": [{"codec": "opus", "channels": 2, "bitrate": 95_800, "alarm": "source-silent"}]}
    assert livestats.describe(row) == "2 listeners · opus 95.8 kb/s · ⚠ the source is silent"
    row["variants"][0]["alarm"] = ""
    assert livestats.describe(row) == "2 listeners · opus 95.8 kb/s"


def moments(reader):
    """(packets sent, listeners, bitrate) of every variant in every snapshot the reader got."""
    return {(variant.packets_sent, variant.listeners, variant.bitrate)
            for snapshot in list(reader.results) if snapshot is not None
            for variant in snapshot.variants}
