"""Limits and timeouts: the pure rules directly, then through the consumer."""
import json

import pytest
import websockets

from streams.ops.limits import MessageRate, listener_refusal
from streams.models import StreamProfile
from streams.runtime import get_runtime
from tests.helpers import run
from tests.listener import connect_like_a_browser
from tests.rigs.communicator import connected, offer


class FakeClock:
    """A clock the test moves by hand: the rule under test is about time, not about waiting."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_message_rate_allows_the_limit_per_window_then_refuses_until_it_slides():
    clock = FakeClock()
    rate = MessageRate(3, window=1.0, clock=clock)
    assert [rate.allow() for _ in range(4)] == [True, True, True, False]
    clock.now = 0.999
    assert not rate.allow()
    clock.now = 1.0
    assert rate.allow()


@pytest.mark.parametrize(
    "counts, refused",
    [
        (dict(stream_listeners=9, stream_max=10, address_listeners=0, address_max=20), None),
        (dict(stream_listeners=10, stream_max=10, address_listeners=0, address_max=20), "This stream is full (10 listeners)."),
        (dict(stream_listeners=500, stream_max=None, address_listeners=19, address_max=20), None),
        (dict(stream_listeners=0, stream_max=None, address_listeners=20, address_max=20), "Too many listeners from your address"),
        (dict(stream_listeners=0, stream_max=0, address_listeners=999, address_max=0), None),
    ],
)
def test_listener_refusal(counts, refused):
    reason = listener_refusal(**counts)
    assert (reason is None) if refused is None else reason.startswith(refused)


def test_local_admission_counts_seats_until_they_are_given_back():
    from streams.ops.limits import LocalAdmission, Seat

    async def scenario():
        admission = LocalAdmission()
        first, second, third = Seat(1, "10.0.0.1"), Seat(1, "10.0.0.2"), Seat(1, "10.0.0.3")  # one profile's
        results = [await admission.admit(first, 2, 0), await admission.admit(second, 2, 0),
                   await admission.admit(third, 2, 0)]
        admission.left(first)
        results.append(await admission.admit(third, 2, 0))
        return results

    assert run(scenario()) == [None, None, "This stream is full (2 listeners). Try again later.", None]


@pytest.mark.django_db(transaction=True)
def test_a_full_stream_refuses_the_next_listener_with_4429():
    StreamProfile.objects.create(name="Small", slug="small", max_listeners=2)

    async def scenario():
        first, second, third = [await connected("small") for _ in range(3)]
        assert (await offer(first))["type"] == "answer"
        assert (await offer(second))["type"] == "answer"
        refused = await offer(third)
        closed = await third.receive_output()
        for communicator in (first, second):
            await communicator.disconnect()
        return refused, closed

    refused, closed = run(scenario())
    assert refused["code"] == "too-many-listeners" and "full" in refused["message"]
    assert closed == {"type": "websocket.close", "code": 4429}


@pytest.mark.django_db(transaction=True)
def test_too_many_listeners_from_one_address_get_4429(settings):
    settings.RTC_MAX_LISTENERS_PER_ADDRESS = 1
    StreamProfile.objects.create(name="Open", slug="open")

    async def scenario():
        first = await connected("open", client=("192.0.2.10", 1))
        other = await connected("open", client=("192.0.2.11", 1))
        again = await connected("open", client=("192.0.2.10", 2))
        answers = [await offer(first), await offer(other)]
        refused = await offer(again)
        closed = await again.receive_output()
        for communicator in (first, other):
            await communicator.disconnect()
        return answers, refused, closed

    answers, refused, closed = run(scenario())
    assert [a["type"] for a in answers] == ["answer", "answer"]
    assert refused["code"] == "too-many-listeners" and "your address" in refused["message"]
    assert closed["code"] == 4429


@pytest.mark.django_db(transaction=True)
def test_the_consumer_itself_refuses_a_message_over_64_kib_with_4009():
    StreamProfile.objects.create(name="Hall", slug="hall")

    async def scenario():
        communicator = await connected("hall")
        await communicator.send_to(text_data=json.dumps({"type": "offer", "sdp": "x" * 70_000}))
        return await communicator.receive_json_from(), await communicator.receive_output()

    error, closed = run(scenario())
    assert error["code"] == "too-large"
    assert closed == {"type": "websocket.close", "code": 4009}


@pytest.mark.django_db(transaction=True)
def test_daphne_closes_a_message_over_64_kib_with_1009(server):
    StreamProfile.objects.create(name="Hall", slug="hall")

    async def scenario():
        async with connect_like_a_browser(server.ws_url("hall")) as ws:
            try:
                await ws.send("x" * (64 * 1024 + 1))
                await ws.recv()
            except websockets.ConnectionClosed as closed:
                return closed.rcvd.code if closed.rcvd else None

    assert run(scenario()) == 1009


@pytest.mark.django_db(transaction=True)
def test_more_than_the_allowed_messages_a_second_closes_the_socket(settings):
    settings.RTC_MAX_MESSAGES_PER_SECOND = 3
    StreamProfile.objects.create(name="Hall", slug="hall")

    async def scenario():
        communicator = await connected("hall")
        replies = []
        for _ in range(4):
            await communicator.send_to(text_data='{"type": "ping"}')
            replies.append(await communicator.receive_json_from())
        return replies, await communicator.receive_output()

    replies, closed = run(scenario())
    assert [r["code"] for r in replies] == ["unknown-type"] * 3 + ["too-many-messages"]
    assert closed == {"type": "websocket.close", "code": 4008}


@pytest.mark.django_db(transaction=True)
def test_a_socket_that_sends_no_offer_is_closed_after_the_offer_timeout(settings, caplog):
    settings.RTC_OFFER_TIMEOUT_SECONDS = 1
    StreamProfile.objects.create(name="Hall", slug="hall")

    async def scenario():
        communicator = await connected("hall")
        return await communicator.receive_json_from(timeout=5), await communicator.receive_output(timeout=5)

    error, closed = run(scenario())
    assert error["code"] == "offer-timeout"
    assert closed == {"type": "websocket.close", "code": 4408}
    assert "no usable offer within 1 s; closing the socket" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_a_listener_that_never_completes_ice_is_closed_after_the_ice_timeout(settings, caplog):
    settings.RTC_ICE_TIMEOUT_SECONDS = 1
    StreamProfile.objects.create(name="Hall", slug="hall")

    async def scenario():
        communicator = await connected("hall")
        # An offer whose ICE credentials and candidates lead nowhere: nothing will ever answer checks.
        answer = await offer(communicator)
        assert answer["type"] == "answer" and len(get_runtime().peers) == 1
        error = await communicator.receive_json_from(timeout=5)
        closed = await communicator.receive_output(timeout=5)
        return error, closed, len(get_runtime().peers)

    error, closed, peers = run(scenario())
    assert error["code"] == "ice-timeout"
    assert closed == {"type": "websocket.close", "code": 4408}
    assert peers == 0
    assert "ICE did not connect within 1 s; closing" in caplog.text


def test_loop_lag_summary():
    from streams.ops.loopwatch import lag_summary

    assert lag_summary([]) == {"p50": 0.0, "p99": 0.0, "max": 0.0, "samples": 0}
    summary = lag_summary([1.0] * 99 + [50.0])
    assert summary["p50"] == 1.0 and summary["max"] == 50.0 and summary["samples"] == 100
    assert 1.0 < summary["p99"] <= 50.0
