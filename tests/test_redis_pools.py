"""Giving back idle Redis connections (streams/ops/redispools.py), against the real Redis in the
test run's own database (tests/rigs/redis_db.py). That a worker and an owner do so once their
listeners have gone: tests/test_idle_connections.py."""
import asyncio
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from channels.layers import InMemoryChannelLayer
from channels_redis.core import RedisChannelLayer

from streams.ops import redispools
from streams.ops.redispools import IdleSpells
from tests.helpers import run
from tests.rigs.redis_db import REDIS_URL
from tests.waiting import until

BURST = 8


def test_an_idle_spell_gives_back_after_its_delay_then_every_interval_and_starts_again_after_work():
    spells = IdleSpells(after=2, every=60)
    assert spells.due(False, 0) == 0  # busy
    assert spells.due(True, 10) == 0  # idle from 10 s
    assert spells.due(True, 11.9) == 0
    assert spells.due(True, 12) == 1  # 2 s into it: the first time
    assert spells.due(True, 13) == 0  # once, not on every poll
    assert spells.due(True, 71.9) == 0
    assert spells.due(True, 72) == 2  # a minute later
    assert spells.due(False, 73) == 0  # a listener came
    assert spells.due(True, 100) == 0
    assert spells.due(True, 101) == 0
    assert spells.due(True, 102) == 1  # a new spell: 2 s into it, its first time


def test_closing_idle_connections_keeps_one_leaves_a_command_in_use_alone_and_the_client_works_on_the_kept_one():
    async def scenario():
        client = aioredis.from_url(REDIS_URL)
        key = f"redispools-test-{id(client)}"
        try:
            # BURST commands at once, each waiting a moment on an empty list: BURST connections.
            await asyncio.gather(*(client.blpop([f"{key}:empty"], timeout=0.2) for _ in range(BURST)))
            opened = len(redispools.idle_connections(client))
            waiting = asyncio.ensure_future(client.blpop([key], timeout=5))  # in use while it waits
            await until(lambda: client.connection_pool._in_use_connections, 5, "the waiting command's connection")
            closed = await redispools.close_idle(client)
            left_open = len(redispools.idle_connections(client))
            await client.rpush(key, b"still there")  # on the kept connection
            answer = await waiting
            pong = await client.ping()
            open_after = len(redispools.idle_connections(client))  # the kept one and the waiting one's
            return opened, closed, left_open, answer, pong, open_after
        finally:
            await client.delete(key)
            await client.aclose()

    opened, closed, left_open, answer, pong, open_after = run(scenario())
    assert opened == BURST
    assert closed == BURST - 2 and left_open == 1  # all but the one kept and the one the waiting command took
    assert answer[1] == b"still there"
    assert pong is True
    assert open_after == 2  # nothing opened again: the commands after took the kept connection


def test_the_channel_layers_clients_are_its_redis_hosts_and_none_in_memory():
    async def scenario():
        layer = RedisChannelLayer(hosts=[REDIS_URL])
        try:
            clients = redispools.channel_layer_clients(layer)
            await clients[0].ping()
            return [client.connection_pool.connection_kwargs.get("db") for client in clients], \
                redispools.channel_layer_clients(InMemoryChannelLayer())
        finally:
            await layer.close_pools()

    databases, in_memory = run(scenario())
    assert databases == [int(urlsplit(REDIS_URL).path.strip("/") or 0)]
    assert in_memory == []


def test_a_channel_layers_idle_connections_are_closed_and_it_still_delivers():
    async def scenario():
        layer = RedisChannelLayer(hosts=[REDIS_URL])
        try:
            channel = await layer.new_channel()
            await asyncio.gather(*(layer.group_add(f"redispools-test-{n}", channel) for n in range(BURST)))
            opened = sum(len(redispools.idle_connections(c)) for c in redispools.channel_layer_clients(layer))
            closed = await redispools.close_idle(*redispools.channel_layer_clients(layer), keep=0)
            await layer.group_send("redispools-test-0", {"type": "hello"})
            message = await asyncio.wait_for(layer.receive(channel), 5)
            for n in range(BURST):
                await layer.group_discard(f"redispools-test-{n}", channel)
            return opened, closed, message
        finally:
            await layer.close_pools()

    opened, closed, message = run(scenario())
    assert opened > 1 and closed == opened
    assert message == {"type": "hello"}
