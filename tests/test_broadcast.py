"""BroadcastHub and its reader queues (ListenerTrack, as an HTTP listener reads) in one event loop
on a clock the test owns (tests/rigs/virtual_clock.py: a busy machine cannot hold the pacing up),
with the real sine source and Opus encoder. WebRTC listeners' senders: tests/test_fanout.py."""
import asyncio
from dataclasses import replace

from streams.audio.broadcast import BroadcastHub, HubRegistry
from streams.audio.config import StreamConfig
from streams.audio.oggopus import packet_samples
from streams.audio.sources import SineSource
from streams.webrtc.fanout import EncodedPacket, ListenerSender
from tests.rigs.virtual_clock import run_on_virtual_clock

CONFIG = StreamConfig(slug="hub", source="sine", channels=2, codec="opus")


def on_virtual_clock(scenario):
    """Run the coroutine function `scenario()` on the virtual-clock loop; its result."""
    return run_on_virtual_clock(lambda loop: scenario())


def registry(max_packets=5):
    def sine(config, on_device_state):
        return SineSource(config.sine_frequencies, frame_samples=config.frame_samples)

    def make_hub(config, on_idle):
        return BroadcastHub(config, max_packets, sine, announce=lambda *a: None, on_idle=on_idle)

    return HubRegistry(make_hub)


def test_a_slow_listener_drops_its_oldest_packets_without_slowing_the_others():
    async def scenario():
        hubs = registry(max_packets=5)
        fast, slow = hubs.subscribe_reader(CONFIG), hubs.subscribe_reader(CONFIG)
        received = [await fast.recv() for _ in range(30)]
        queued = len(slow._packets)
        newest = await slow.recv()
        fast.stop()
        slow.stop()
        return received, queued, slow.dropped, newest, hubs.running()

    received, queued, dropped, newest, left = on_virtual_clock(scenario)
    assert all(isinstance(p, EncodedPacket) for p in received)
    assert [p.pts for p in received] == [i * 960 for i in range(30)]  # the fast one missed nothing
    assert queued == 5 and dropped >= 24  # bounded; the oldest went first
    assert newest.pts >= 25 * 960
    assert left == []  # the hub stopped with its last listener


def test_one_hub_per_distinct_config_and_one_encode_per_frame():
    async def scenario():
        hubs = registry(max_packets=20)
        a, b = hubs.subscribe_reader(CONFIG), hubs.subscribe_reader(CONFIG)
        mono = hubs.subscribe_reader(CONFIG.limited_by({"stereo": False, "max_average_bitrate": 32000, "max_playback_rate": None}))

        async def read(track):
            return [await track.recv() for _ in range(10)]

        packets_a, packets_b = await asyncio.gather(read(a), read(b))
        counts = sorted(hub.listener_count for hub in hubs.running())
        sent = {hub.config.channels: hub.packets_sent for hub in hubs.running()}
        for track in (a, b, mono):
            track.stop()
        return packets_a, packets_b, counts, sent

    packets_a, packets_b, counts, sent = on_virtual_clock(scenario)
    assert counts == [1, 2]
    assert packets_a == packets_b and all(x is y for x, y in zip(packets_a, packets_b))  # the very same objects
    assert sent[2] >= 10


def test_listeners_handed_over_together_run_on_in_time_and_share_each_restamped_packet():
    """An operator's change moves listeners to a new hub (ListenerTrack.handover): their
    timestamps run on without a jump, and the re-stamped copies are made once, not per listener."""
    async def scenario():
        hubs = registry(max_packets=50)
        tracks = [hubs.subscribe_reader(CONFIG) for _ in range(2)]

        async def read(track, count):
            return [await track.recv() for _ in range(count)]

        before = await asyncio.gather(*(read(track, 5) for track in tracks))
        changed = replace(CONFIG, opus_bitrate=32_000)
        for track in tracks:
            track.handover(hubs.subscribe_reader(changed))
        after = await asyncio.gather(*(read(track, 10) for track in tracks))  # read through the old tracks, as aiortc does
        configs = [hub.config for hub in hubs.running()]
        for track in tracks:
            track.stop()
        return before, after, configs, hubs.running()

    before, after, configs, left = on_virtual_clock(scenario)
    for first, then in zip(before, after):
        assert [p.pts for p in first + then] == [i * 960 for i in range(15)]
    assert all(x is y for x, y in zip(*after))  # one re-stamped copy for both listeners
    assert [c.opus_bitrate for c in configs] == [32_000]  # the old hub stopped with its last listener
    assert left == []


def test_a_listener_handed_over_between_20_and_10_ms_frames_keeps_one_continuous_timeline():
    """An operator changes the profile's frame length: the last packet of the old hub lasts a frame
    of the old hub, so the first of the new one follows it by that much, not by its own."""
    async def scenario():
        hubs = registry(max_packets=50)
        track = current = hubs.subscribe_reader(CONFIG)
        packets = [await track.recv() for _ in range(3)]
        for config in (replace(CONFIG, frame_ms=10), CONFIG):
            previous, current = current, hubs.subscribe_reader(config)
            previous.handover(current)
            packets += [await track.recv() for _ in range(6)]  # read through the first track, as aiortc does
        track.stop()
        return packets

    packets = on_virtual_clock(scenario)
    lasts = [packet_samples(packet.payload) for packet in packets]  # from each packet's TOC
    assert [length for i, length in enumerate(lasts) if i == 0 or length != lasts[i - 1]] == [960, 480, 960]
    # Each packet follows the one before by exactly how long that one lasts, across both changes.
    assert [b.pts - a.pts for a, b in zip(packets, packets[1:])] == lasts[:-1]


def test_a_new_listener_starts_at_the_live_edge_not_with_what_queued_while_it_connected():
    """Packets pile up in a listener's queue while ICE and DTLS come up; its first packet must be the
    newest, or its receiver starts (and stays) that much behind."""
    async def scenario():
        hubs = registry(max_packets=10)
        early, connecting = hubs.subscribe_reader(CONFIG), hubs.subscribe_reader(CONFIG)
        seen = [await early.recv() for _ in range(8)]  # 160 ms pass while `connecting` does not read
        queued = len(connecting._packets)
        first = await connecting.recv()
        for track in (early, connecting):
            track.stop()
        return seen, queued, first, connecting.skipped_at_start

    seen, queued, first, skipped = on_virtual_clock(scenario)
    assert queued >= 7
    assert first is seen[-1] or first.pts > seen[-1].pts  # the newest packet, not the oldest queued
    assert skipped == queued - 1


def limits(bitrate=None, stereo=True, playback=None):
    return {"stereo": stereo, "max_average_bitrate": bitrate, "max_playback_rate": playback}


def test_listener_limits_round_down_to_a_few_bitrates_so_clients_cannot_multiply_encoders():
    wanted = {CONFIG.limited_by(limits(bitrate)) for bitrate in range(32_000, 48_000, 1_000)}
    assert {config.opus_bitrate for config in wanted} == {32_000}
    assert CONFIG.limited_by(limits(47_999)).opus_bitrate == 32_000
    assert CONFIG.limited_by(limits(500_000)).opus_bitrate == CONFIG.opus_bitrate  # limits only lower it
    assert CONFIG.limited_by(limits(5_000)).opus_bitrate == 6_000  # Opus's least


def test_a_stream_runs_at_most_its_cap_of_variants_and_later_ones_join_the_closest():
    made = []

    def make_hub(config, on_idle):
        made.append(config)
        return BroadcastHub(config, 5, lambda c, s: SineSource(c.sine_frequencies), lambda *a: None, on_idle)

    async def scenario():
        hubs = HubRegistry(make_hub, max_variants=3)
        asked = [CONFIG.limited_by(limits(bitrate)) for bitrate in (16_000, 32_000, 64_000, 24_000, 48_000)]
        tracks = [hubs.subscribe_reader(config) for config in asked]
        got = [track.hub.config for track in tracks]
        other = hubs.subscribe_reader(replace(CONFIG, slug="other").limited_by(limits(24_000)))  # another stream: its own
        for track in [*tracks, other]:
            track.stop()
        return asked, got, other.hub.config

    asked, got, other = on_virtual_clock(scenario)
    assert len(made) == 4  # three variants of the stream, one of the other stream
    assert [c.opus_bitrate for c in got] == [16_000, 32_000, 64_000, 16_000, 32_000]  # richest within the limit
    assert other.opus_bitrate == 24_000


def test_a_webrtc_listener_gets_a_sender_the_hub_pushes_to_and_an_http_listener_a_queue():
    async def scenario():
        hubs = registry()
        sender, reader = hubs.subscribe(CONFIG), hubs.subscribe_reader(CONFIG)
        first = await reader.recv()
        hub = sender.hub
        sender.stop(), reader.stop()
        return sender, reader, first, hub, hubs.running()

    sender, reader, first, hub, left = on_virtual_clock(scenario)
    assert isinstance(sender, ListenerSender) and reader.hub is hub and left == []
    assert first.marker  # the hub's first packet begins its timeline


def test_a_listener_queue_holds_the_same_time_whatever_the_frame_length():
    async def scenario():
        hubs = registry(max_packets=5)  # 5 packets of 20 ms
        tracks = [hubs.subscribe_reader(config) for config in (CONFIG, replace(CONFIG, frame_ms=10))]
        sizes = [track._packets.maxlen for track in tracks]
        for track in tracks:
            track.stop()
        return sizes

    assert on_virtual_clock(scenario) == [5, 10]
