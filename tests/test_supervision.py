"""Long-lived tasks under supervision (streams/ops/supervision.py), and a stream's hub that fails:
an exception in its source or its encoder is logged, counted and restarted, its listeners are
told and hear sound again on the same connection; a hub that keeps failing leaves the registry."""
import asyncio
import logging

import numpy as np

from streams.audio import broadcast
from streams.audio.broadcast import BroadcastHub, HubRegistry
from streams.audio.config import StreamConfig
from streams.audio.pacing import RealTimePacer
from streams.webrtc.fanout import ListenerSender
from streams.ops.supervision import GIVE_UP_AFTER, Backoff, Supervisor
from tests.helpers import run
from tests.listener import dominant_frequency
from tests.rigs.faulty_source import FailingSource
from tests.rigs.peer_pair import connected_pair, send_path
from tests.waiting import until

CONFIG = StreamConfig(slug="faulty", source="sine", channels=2, codec="opus", sine_frequencies=(440.0, 440.0))


def quick_backoff():
    return Backoff(first=0.01, most=0.05, steady=10)


def hub_registry(fail_on=(), fail_every_open=False, announced=None):
    opened = []

    def open_source(config, on_device_state):
        source = FailingSource(CONFIG.sine_frequencies, fail_on if (fail_every_open or not opened) else ())
        opened.append(source)
        return source

    def make_hub(config, on_idle):
        hub = BroadcastHub(config, 50, open_source, lambda slug, state, message: announced.append(state), on_idle)
        hub.restart_backoff = quick_backoff
        return hub

    return HubRegistry(make_hub), opened


def test_a_task_that_fails_is_restarted_with_one_traceback_per_streak_and_counted(caplog):
    async def scenario():
        calls, crashes = [], []

        async def work():
            calls.append(1)
            if len(calls) <= 2:
                raise ValueError("boom")

        supervisor = Supervisor("work", work, on_crash=crashes.append, backoff=quick_backoff())
        await until(lambda: not supervisor.running, 5, "the work to finish")
        return len(calls), len(crashes), supervisor.restarts

    with caplog.at_level(logging.ERROR, logger="streams.ops.supervision"):
        assert run(scenario()) == (3, 2, 2)
    failures = [r for r in caplog.records if "work failed" in r.getMessage()]
    assert len(failures) == 2 and [bool(r.exc_info) for r in failures] == [True, False]


def test_a_task_that_keeps_failing_is_given_up_once_and_says_so(caplog):
    async def scenario():
        gave_up = []

        async def work():
            raise OSError("gone")

        supervisor = Supervisor("doomed", work, on_give_up=gave_up.append, backoff=quick_backoff(), give_up_after=3)
        await until(lambda: not supervisor.running, 5, "the supervisor to give up")
        return supervisor.restarts, supervisor.gave_up, len(gave_up)

    with caplog.at_level(logging.ERROR, logger="streams.ops.supervision"):
        assert run(scenario()) == (3, True, 1)
    assert any("giving up" in r.getMessage() for r in caplog.records)


def test_a_fault_in_the_source_restarts_the_hub_and_its_readers_go_on_without_resubscribing():
    async def scenario():
        announced = []
        hubs, opened = hub_registry(fail_on={5}, announced=announced)
        reader = hubs.subscribe_reader(CONFIG)
        packets = [await reader.recv() for _ in range(12)]
        hub = reader.hub
        reader.stop()
        return packets, hub.restarts, announced, len(opened)

    packets, restarts, announced, opened = run(scenario())
    assert restarts == 1 and opened == 2 and announced == ["restarting", "playing"]
    steps = [b.pts - a.pts for a, b in zip(packets, packets[1:])]
    assert steps == [960] * 11  # the timeline runs on over the restart
    assert [p.marker for p in packets].count(True) == 1  # only the first: the restart is seamless here


def test_a_fault_in_the_encoder_restarts_the_hub(monkeypatch):
    created = []
    real_create = broadcast.create_encoder

    def create_encoder(config):
        encoder = real_create(config)
        created.append(encoder)
        if len(created) == 1:
            real_encode, calls = encoder.encode, []

            def encode(pcm, pts):
                calls.append(1)
                if len(calls) == 3:
                    raise RuntimeError("injected encoder fault")
                return real_encode(pcm, pts)

            encoder.encode = encode
        return encoder

    monkeypatch.setattr(broadcast, "create_encoder", create_encoder)

    async def scenario():
        hubs, _ = hub_registry(announced=[])
        reader = hubs.subscribe_reader(CONFIG)
        packets = [await reader.recv() for _ in range(6)]
        hub = reader.hub
        reader.stop()
        return packets, hub.restarts

    packets, restarts = run(scenario())
    assert restarts == 1 and len(created) == 2 and len(packets) == 6


def test_a_hub_that_keeps_failing_tells_its_listeners_and_leaves_the_registry():
    async def scenario():
        announced = []
        hubs, opened = hub_registry(fail_on={1}, fail_every_open=True, announced=announced)
        reader = hubs.subscribe_reader(CONFIG)
        await until(lambda: not hubs.running(), 10, "the failed hub to leave the registry")
        starts = len(opened)
        again = hubs.subscribe_reader(CONFIG)  # the next listener starts the stream afresh
        fresh = again.hub
        again.stop()
        return announced, reader.readyState, fresh is not reader.hub, starts

    announced, state, fresh, opened = run(scenario())
    assert announced[-1] == "stream-failed" and state == "ended" and fresh
    assert opened == GIVE_UP_AFTER + 1  # the first start and each restart


def test_a_real_listener_hears_the_tone_again_after_the_hub_restarts_on_the_same_connection():
    async def scenario():
        server, client, sender, payload_type = await connected_pair()
        try:
            hubs, _ = hub_registry(fail_on={50}, announced=[])  # fails after 1 s of sound
            listener = hubs.subscribe(CONFIG)
            assert isinstance(listener, ListenerSender)
            listener.connect(send_path(sender, payload_type))
            track = client.getTransceivers()[0].receiver.track
            frames = []
            hub = listener.hub
            while hub.restarts == 0 or len(frames) < 150:  # 1 s before the fault, 2 s after
                frames.append(await asyncio.wait_for(track.recv(), 5))
            listener.stop()
            return frames, hub.restarts
        finally:
            await client.close()
            await server.close()

    frames, restarts = run(scenario())
    assert restarts == 1
    after = np.concatenate([f.to_ndarray().reshape(-1, 2) for f in frames[-50:]])
    assert abs(dominant_frequency(after[:, 0].astype(float), frames[-1].sample_rate) - 440) <= 5


def test_the_relay_and_the_publisher_run_under_supervision_and_come_back_after_a_fault(monkeypatch):
    """A fault injected into a worker's relay loop and into the owner's publisher: each is
    restarted and counted, and packets flow again on a timeline that never goes back, through a
    real Redis (tests/rigs/redis_db.py)."""
    from streams.relay import owner, worker
    from tests.rigs.redis_db import REDIS_URL

    async def scenario():
        hub = worker.RelayHub(CONFIG, 50, REDIS_URL, "w-test", lambda *args: None, lambda hub: None)
        real_forward = hub._forward
        forwarded = []

        def forward(data, last):
            forwarded.append(data)
            if len(forwarded) == 10:  # mid-stream: the relay's timeline must run on after it
                raise RuntimeError("injected relay fault")
            return real_forward(data, last)

        hub._forward = forward
        sink = hub.subscribe_reader()
        import redis.asyncio as aioredis
        redis = aioredis.Redis.from_url(REDIS_URL)
        publisher = owner.PacketPublisher(redis, hub.key)
        real_publish = redis.publish
        publish_faults = [1]

        async def publish(channel, data):
            if publish_faults[0]:
                publish_faults[0] -= 1
                raise RuntimeError("injected publisher fault")
            return await real_publish(channel, data)

        redis.publish = publish

        async def publish_packets():
            pacer = RealTimePacer("relay test")  # a packet each 20 ms, as a stream sends them
            while True:
                frame = await pacer.wait()
                publisher.push(type("P", (), {"pts": frame * 960, "payload": b"x"})())

        publishing = asyncio.ensure_future(publish_packets())
        try:
            await until(lambda: len(forwarded) >= 15, 10, "5 packets relayed after both faults")
            return [packet.pts for packet in sink._packets], hub.restarts, publisher._task.restarts
        finally:
            publishing.cancel()
            publisher.stop()
            hub.stop()
            await redis.aclose()

    relayed, relay_restarts, publisher_restarts = run(scenario())
    assert len(relayed) >= 13 and relay_restarts == 1 and publisher_restarts == 1
    assert all(later > earlier for earlier, later in zip(relayed, relayed[1:])), relayed  # never back to 0
