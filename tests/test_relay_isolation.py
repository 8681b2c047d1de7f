"""Two installations sharing one Redis server on different databases: Redis has one pub/sub
namespace per server, so the audio channel names the database (streams/relay/wire.py). A
profile with the same settings in both has the same stream key; neither may hear the other."""
from types import SimpleNamespace

import redis.asyncio as aioredis

from streams.audio.config import StreamConfig
from streams.relay import owner, worker
from tests.helpers import run
from tests.rigs.private_redis import PrivateRedis
from tests.waiting import until, until_awaited

CONFIG = StreamConfig(slug="default", source="sine", channels=2, codec="opus")


def test_a_worker_hears_only_the_owner_on_its_own_database(tmp_path):
    server = PrivateRedis(tmp_path).start()

    async def scenario():
        hub = worker.RelayHub(CONFIG, 50, server.url(db=1), "w-test", lambda *args: None, lambda hub: None)
        sink = hub.subscribe_reader()
        clients = {db: aioredis.Redis.from_url(server.url(db=db)) for db in (1, 2)}
        publishers = {db: owner.PacketPublisher(client, hub.key) for db, client in clients.items()}
        try:
            await until_awaited(lambda: subscribed(clients[1], publishers[1].channel), 10, "the relay subscribed")
            for pts in range(0, 10 * 960, 960):  # the other installation's packets first ...
                publishers[2].push(SimpleNamespace(pts=pts, payload=b"other"))
            for pts in range(0, 10 * 960, 960):  # ... then ours
                publishers[1].push(SimpleNamespace(pts=pts, payload=b"ours"))
            await until(lambda: sum(p.payload == b"ours" for p in sink._packets) == 10, 10, "our 10 packets relayed")
            return [packet.payload for packet in sink._packets]
        finally:
            for publisher in publishers.values():
                publisher.stop()
            hub.stop()
            for client in clients.values():
                await client.aclose()

    try:
        payloads = run(scenario())
    finally:
        server.stop()
    assert payloads == [b"ours"] * 10


async def subscribed(client, channel):
    return (await client.pubsub_numsub(channel))[0][1] > 0
