"""streams/whepforward.py on its own: which worker a session id names, and two workers' desks
on one channel layer (Channels' in-memory layer, in the test's loop). With real daphne workers
and Redis: tests/test_whep_multiprocess.py."""
import asyncio
import logging

import pytest
from channels.layers import InMemoryChannelLayer

from streams import whepforward
from tests.helpers import run
from tests.waiting import until

REQUEST = {"method": "DELETE", "slug": "hall", "session_id": "a-tag.token", "content_type": "", "body": b"",
           "if_match": ""}


def test_a_session_id_names_the_worker_that_made_it_and_no_other():
    tagged = f"0a1b2c3d-{whepforward.worker_tag('0a1b2c3d')}"
    assert whepforward.worker_of(f"{tagged}.zZ_-token") == "0a1b2c3d"
    assert whepforward.worker_of(f"0badc0de-{whepforward.worker_tag('0a1b2c3d')}.zZ_-token") is None  # another's tag
    assert whepforward.worker_of("0a1b2c3d-000000000000.zZ_-token") is None
    assert whepforward.worker_of("zZ_-token-of-one-process") is None  # one process: no worker named
    assert whepforward.worker_of(f"{'x' * 65}-{whepforward.worker_tag('x' * 65)}.token") is None  # not a channel name


async def two_desks(answer):
    layer = InMemoryChannelLayer()
    holding, asking = whepforward.Desk(layer, "holding"), whepforward.Desk(layer, "asking")
    holding.serve(answer)
    return holding, asking


def test_the_holder_answers_what_another_worker_forwards():
    async def answer(request):
        return 200, [("Content-Type", "text/plain"), ("Allow", "PATCH")], f"ended {request['session_id']}".encode()

    async def scenario():
        holding, asking = await two_desks(answer)
        try:
            return await asking.forward("holding", REQUEST)
        finally:
            await holding.stop()

    assert run(scenario()) == (200, [("Content-Type", "text/plain"), ("Allow", "PATCH")], b"ended a-tag.token")


def test_an_answer_that_fails_is_a_500_and_the_next_request_is_answered(caplog):
    calls = []

    async def answer(request):
        calls.append(request)
        if len(calls) == 1:
            raise RuntimeError("a bug")
        return 204, [], b""

    async def scenario():
        holding, asking = await two_desks(answer)
        try:
            return [await asking.forward("holding", REQUEST) for _ in range(2)]
        finally:
            await holding.stop()

    with caplog.at_level(logging.ERROR, logger="streams.whepforward"):
        first, second = run(scenario())
    assert (first[0], second) == (500, (204, [], b""))
    assert caplog.text.count("a WHEP request forwarded from another worker failed") == 1


def test_a_holder_too_slow_is_no_answer_and_its_late_answer_is_not_sent(monkeypatch, caplog):
    monkeypatch.setattr(whepforward, "FORWARD_TIMEOUT_SECONDS", 0.2)

    asker_gave_up = asyncio.Event()

    async def answer(request):
        await asker_gave_up.wait()  # the holder answers only once the asker has stopped waiting
        return 200, [], b""

    async def scenario():
        holding, asking = await two_desks(answer)
        try:
            with pytest.raises(whepforward.NoAnswer, match="did not answer within 0.2 s"):
                await asking.forward("holding", REQUEST)
            asker_gave_up.set()
            await until(lambda: "answered a forwarded WHEP request too late" in caplog.text, 2, "the late answer")
            return sum(queue.qsize() for queue in holding.layer.channels.values())  # messages in the layer
        finally:
            await holding.stop()

    with caplog.at_level(logging.WARNING, logger="streams.whepforward"):
        assert run(scenario()) == 0


def test_a_worker_that_is_not_there_is_no_answer(monkeypatch):
    monkeypatch.setattr(whepforward, "FORWARD_TIMEOUT_SECONDS", 0.2)

    async def scenario():
        asking = whepforward.Desk(InMemoryChannelLayer(), "asking")
        with pytest.raises(whepforward.NoAnswer):
            await asking.forward("gone", REQUEST)

    run(scenario())
