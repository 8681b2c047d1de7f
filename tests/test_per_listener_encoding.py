"""RTC_ENCODE_PER_LISTENER (the benchmark's baseline: aiortc's sender encodes for each listener)
follows an operator's profile change as the default encode-once path does: the listener moves to
the new settings' hub on the same connection, its RTP clock running on."""
import asyncio
import fractions
from dataclasses import replace

import av
import numpy as np
import pytest
from aiortc.clock import current_ms

from streams.audio.broadcast import BroadcastHub, HubRegistry, ListenerTrack
from streams.audio.config import StreamConfig
from streams.ops.supervision import Backoff
from streams.runtime import get_runtime
from streams.webrtc import rtcinternals
from tests.helpers import make_profile, run, save_profile
from tests.listener import Listener, dominant_frequency
from tests.rigs.admin_http import operator
from tests.rigs.faulty_source import FailingSource
from tests.rigs.whep import NOTHING, WhepListener, async_http, held
from tests.waiting import until, wait_for

PER_LISTENER = {"RTC_ENCODE_PER_LISTENER": "1"}
STEREO = StreamConfig(slug="raw", source="sine", channels=2, codec="opus", sine_frequencies=(440.0, 660.0))
PCMU = StreamConfig(slug="raw-pcmu", source="sine", channels=1, codec="pcmu", sine_frequencies=(700.0,))


def per_listener_hubs(fail_on=()):
    """A registry of hubs that hand raw frames to each listener's own encoder (aiortc's sender);
    the first source opened fails on the frame numbers `fail_on`."""
    opened = []

    def open_source(config, on_device_state):
        opened.append(FailingSource(config.sine_frequencies, () if opened else fail_on))
        return opened[-1]

    def make_hub(config, on_idle):
        hub = BroadcastHub(config, 50, open_source, lambda *a: None, on_idle, per_listener=True)
        hub.restart_backoff = lambda: Backoff(first=0.01, most=0.05, steady=10)
        return hub

    return HubRegistry(make_hub)


async def read(track, count):
    return [await track.recv() for _ in range(count)]


def assert_raw_frames_on_one_clock(frames, channels):
    """What aiortc's encoder needs: 20 ms s16 frames at 48 kHz, each pts one frame after the last."""
    assert all(isinstance(frame, av.AudioFrame) for frame in frames)
    shapes = {(frame.format.name, len(frame.layout.channels), frame.sample_rate, frame.samples) for frame in frames}
    assert shapes == {("s16", channels, 48_000, 960)}
    assert {frame.time_base for frame in frames} == {fractions.Fraction(1, 48_000)}
    assert np.diff([frame.pts for frame in frames]).tolist() == [960] * (len(frames) - 1)


@pytest.mark.parametrize("config", [STEREO, PCMU], ids=["opus", "pcmu"])
def test_listeners_handed_over_together_get_the_new_hubs_raw_frames_on_their_own_clock(config):
    async def scenario():
        hubs = per_listener_hubs()
        tracks = [hubs.subscribe(config) for _ in range(2)]
        before = await asyncio.gather(*(read(track, 5) for track in tracks))
        changed = replace(config, sine_frequencies=tuple(hz * 2 for hz in config.sine_frequencies))
        for track in tracks:
            track.handover(hubs.subscribe(changed))
        after = await asyncio.gather(*(read(track, 10) for track in tracks))  # through the old tracks, as aiortc reads
        configs = [hub.config for hub in hubs.running()]
        for track in tracks:
            track.stop()
        return before, after, configs, hubs.running()

    before, after, configs, left = run(scenario())
    for first, then in zip(before, after):
        assert_raw_frames_on_one_clock(first + then, config.channels)
    assert all(x is y for x, y in zip(*after))  # one re-stamped copy for both listeners
    heard = np.concatenate([frame.to_ndarray().reshape(-1, config.channels) for frame in after[0][2:]])
    assert abs(dominant_frequency(heard[:, 0], 48_000) - 2 * config.sine_frequencies[0]) <= 7  # the new hub's tone
    assert configs == [replace(config, sine_frequencies=tuple(hz * 2 for hz in config.sine_frequencies))]
    assert left == []  # the old hub stopped with its last listener, the new one with the tracks


def test_raw_frames_run_on_one_clock_over_a_restart_of_the_hub():
    async def scenario():
        hubs = per_listener_hubs(fail_on={5})
        track = hubs.subscribe(STEREO)
        frames = await read(track, 12)
        hub = track.hub
        track.stop()
        return frames, hub.restarts

    frames, restarts = run(scenario())
    assert restarts == 1
    assert_raw_frames_on_one_clock(frames, 2)


class LevelNotingListener(Listener):
    """tests/listener.py's listener, noting each packet's audio-level header extension: aiortc's
    sender sets it on what it encodes itself; the hub's send loop (streams/webrtc/fanout.py) sets none."""

    def _record_rtp(self, receiver):
        super()._record_rtp(receiver)
        self.audio_levels = []

        async def noting(packet, arrival_time_ms):
            self.audio_levels.append(packet.extensions.audio_level)
            return True

        rtcinternals.on_received_rtp(receiver, noting)


def change_the_tone_while_listening(server, admin, profile, hz):
    """Listen for 1 s, save `sine_frequency=hz` in admin, listen on for 1 s from 2.5 s after the
    save; (what was heard, each packet's audio level, the save's time on aiortc's arrival clock,
    the samples of the second before the save and of the second from 2.5 s after it)."""
    async def scenario():
        listener = LevelNotingListener(server.ws_url(profile.slug))
        await listener.connect()
        try:
            await until(lambda: len(listener.heard.packets) >= 50, 20, "1 s of packets")
            _, before = await listener.record(1.0)
            saved_at = current_ms()
            await asyncio.to_thread(admin.save_profile, profile, sine_frequency=hz)
            await until(lambda: current_ms() > saved_at + 2500, 10, "2.5 s after the save")
            _, after = await listener.record(1.0)
            return listener.heard, listener.audio_levels, saved_at, before, after
        finally:
            await listener.close()

    return run(scenario())


@pytest.mark.django_db(transaction=True)
@pytest.mark.times_sound  # no gap of 100 ms around the change: run alone
def test_a_per_listener_encoded_listener_hears_a_tone_change_on_the_same_connection(own_server):
    server = own_server(PER_LISTENER)
    profile = make_profile("per-listener", channels=1, sine_frequency=440)
    heard, levels, saved_at, before, after = change_the_tone_while_listening(server, operator(server), profile, 660)

    assert None not in levels  # every packet from the listener's own aiortc encoder
    assert len(after) >= 0.9 * heard.sample_rate, "no sound after the change"
    assert abs(dominant_frequency(before[:, 0], heard.sample_rate) - 440) <= 5
    assert abs(dominant_frequency(after[:, 0], heard.sample_rate) - 660) <= 5
    assert [m["type"] for m in heard.messages].count("answer") == 1  # one connection throughout
    # One RTP clock: every packet one 20 ms frame after the one before, none back, none skipped.
    steps = np.diff([p[2] for p in heard.packets]) % (1 << 32)
    assert set(steps) == {960}, f"timestamp steps {sorted(set(steps))}"
    arrivals = [p[0] for p in heard.packets if p[0] > saved_at - 500]
    assert max(np.diff(arrivals)) < 100, "a gap in the sound around the change"

    status = wait_for(lambda: (s := server.status())["peers"] == 0 and not s["hubs"] and s, 10, "peers to close")
    assert (status["peers"], status["connected_peers"], status["hubs"]) == (0, 0, [])
    assert "Traceback" not in server.log()


@pytest.mark.django_db(transaction=True)
def test_a_per_listener_whep_session_follows_a_change_and_leaves_nothing_behind(settings):
    """In the test's own event loop, so that what the server holds can be counted: its peers,
    places, sessions, hubs, and every task (aiortc's senders' among them)."""
    settings.RTC_ENCODE_PER_LISTENER = True
    profile = make_profile("raw-whep", channels=1, sine_frequency=440)

    async def scenario():
        runtime = get_runtime()
        runtime.publish_snapshot()  # the runtime's own tasks, there before any listener
        before = asyncio.all_tasks()
        listener = WhepListener(async_http(), "/whep/raw-whep/")
        await listener.connect()
        await listener.listen_for(0.5)
        peer = next(iter(runtime.peers))
        assert isinstance(peer.track, ListenerTrack)  # raw frames, which aiortc's sender encodes
        await asyncio.to_thread(save_profile, profile, sine_frequency=660)
        await until(lambda: peer.track.hub.config.sine_frequencies == (660.0,), 5, "the session to switch streams")
        _, after = await listener.record(1.0)
        holding = held(runtime)
        await listener.delete()
        await listener.close()
        released = held(runtime)
        this = asyncio.current_task()
        await until(lambda: not asyncio.all_tasks() - before - {this}, 5, "the listener's tasks to end")
        return after, listener.heard.sample_rate, holding, released

    after, rate, holding, released = run(scenario())
    assert len(after) >= 0.9 * rate, "no sound after the change"
    assert abs(dominant_frequency(after[:, 0], rate) - 660) <= 5
    assert holding == {**NOTHING, "peers": 1, "seats": 1, "sessions": 1, "tasks": 1, "hubs": 1}  # one hub: the new
    assert released == NOTHING


@pytest.mark.django_db(transaction=True)
def test_the_ogg_stream_says_it_is_not_served_in_per_listener_mode(settings):
    settings.RTC_ENCODE_PER_LISTENER = True
    make_profile("raw-ogg", sine_frequency=440)

    async def scenario():
        status, _, text = await async_http()("GET", "/stream/raw-ogg.ogg")
        return status, text, get_runtime().hubs.running()

    status, text, hubs = run(scenario())
    assert status == 503 and "RTC_ENCODE_PER_LISTENER" in text
    assert not hubs  # refused before any stream started
