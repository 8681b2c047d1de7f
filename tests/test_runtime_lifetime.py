"""The one media runtime (streams/runtime.py) lives as long as the event loop that serves: closed
once when serving ends, by serve's shutdown step or by the end of the loop; never dropped open
when another loop asks for one. What lives and dies with it (its parts: WHEP sessions, the WHEP
forwarding desk) is closed with it."""
import asyncio
import gc
import logging
import threading
import time
import types

import pytest
from django.test import AsyncClient

from streams import whep, whepforward
from streams.audio.capture import AudioCaptureManager
from streams.runtime import close_runtime, get_runtime
from tests import fake_pyaudiowpatch
from tests.helpers import AIORTC_OFFER, make_profile, run
from tests.waiting import until, wait_for

NO_DEVICE = "Nowhere: no such device"  # its capture thread keeps retrying until it is stopped


async def runtime_with_a_capture_thread():
    """The running loop's runtime, with a capture thread of its own (retrying a device that is not there)."""
    runtime = get_runtime()
    runtime.captures = AudioCaptureManager(0, module_factory=lambda: fake_pyaudiowpatch)
    subscription = runtime.captures.subscribe(NO_DEVICE, lambda capture: None)
    assert subscription.capture.thread.is_alive()
    return runtime, subscription.capture.thread


def counting_stops(runtime):
    """How many times `runtime` stopped its hubs (once per close)."""
    stops = []
    stop_all = runtime.hubs.stop_all
    runtime.hubs.stop_all = lambda: (stops.append(1), stop_all())
    return stops


def test_a_runtime_is_closed_when_the_loop_it_served_ends():
    hooks_before = list(gc.callbacks)
    runtime, thread = run(runtime_with_a_capture_thread())
    wait_for(lambda: not thread.is_alive(), 5, "the capture thread to end")
    assert runtime.closed
    assert gc.callbacks == hooks_before  # the loop-lag monitor's garbage-collector hook is gone too


def test_a_runtime_whose_loop_ended_without_closing_it_is_released_when_another_loop_asks(caplog):
    old_loop = asyncio.new_event_loop()
    try:
        old, thread = old_loop.run_until_complete(runtime_with_a_capture_thread())
        # The loop stops here without cancelling what is left on it: the runtime is still open.
        assert thread.is_alive()

        async def ask():
            return get_runtime()

        with caplog.at_level(logging.WARNING, logger="streams.runtime"):
            new = run(ask())
        wait_for(lambda: not thread.is_alive(), 5, "the old runtime's capture thread to end")
        assert new is not old and old.closed
        assert "ended without closing it" in caplog.text
    finally:
        left = asyncio.all_tasks(old_loop)
        for task in left:
            task.cancel()
        old_loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
        old_loop.close()


def test_a_loop_that_asks_while_another_running_loop_serves_is_refused():
    serving, done = threading.Event(), threading.Event()

    async def serve():
        get_runtime()
        serving.set()
        await asyncio.to_thread(done.wait, 30)

    server = threading.Thread(target=asyncio.run, args=(serve(),))
    server.start()
    try:
        assert serving.wait(10)

        async def ask():
            return get_runtime()

        with pytest.raises(RuntimeError, match="serves another running event loop"):
            run(ask())
    finally:
        done.set()
        server.join(10)


def test_a_runtime_closed_twice_closes_once_and_stays_closed_for_the_rest_of_its_loop():
    async def scenario():
        runtime = get_runtime()
        stops = counting_stops(runtime)
        await close_runtime()
        await close_runtime()
        assert get_runtime() is runtime  # code still finishing on this loop starts no other
        return runtime, stops

    runtime, stops = run(scenario())
    assert runtime.closed and stops == [1]  # the loop's end did not close it again


def test_serve_closes_the_runtime_once_at_shutdown(monkeypatch):
    import twisted.internet

    from streams.management.commands.serve import Command

    triggers = []
    reactor = types.SimpleNamespace(addSystemEventTrigger=lambda *trigger: triggers.append(trigger))
    monkeypatch.setattr(twisted.internet, "reactor", reactor, raising=False)  # no reactor is installed
    Command().close_streams_on_shutdown()
    [(phase, event, close_streams)] = triggers
    assert (phase, event) == ("before", "shutdown")

    async def scenario():
        runtime, thread = await runtime_with_a_capture_thread()
        stops = counting_stops(runtime)
        await close_streams().asFuture(asyncio.get_running_loop())
        assert runtime.closed and not thread.is_alive()
        return stops

    assert run(scenario()) == [1]  # and not again when the loop ended


class Part:
    """A part of a runtime that says when it was closed, and whether the runtime's hubs still ran then."""

    def __init__(self, runtime):
        self.runtime = runtime
        self.hub_stops = counting_stops(runtime)
        self.closed = []  # (its class's name, how many times the hubs had stopped) per close

    async def close(self):
        self.closed.append((type(self).__name__, len(self.hub_stops)))


class LaterPart(Part):
    pass


def test_a_part_is_one_per_runtime_closed_with_it_and_new_in_the_next_runtime():
    async def scenario():
        runtime = get_runtime()
        part = runtime.part(Part)
        assert runtime.part(Part) is part and part.runtime is runtime
        await close_runtime()
        return part

    part = run(scenario())
    assert part.closed == [("Part", 0)]  # once: not again when the loop ended
    assert run(scenario()) is not part


def test_parts_close_newest_first_before_the_hubs_stop():
    async def scenario():
        runtime = get_runtime()
        closed = []
        first, later = runtime.part(Part), runtime.part(LaterPart)
        first.closed = later.closed = closed
        await close_runtime()
        return closed

    assert run(scenario()) == [("LaterPart", 0), ("Part", 0)]


def test_a_closed_runtime_makes_no_new_part_and_keeps_those_it_had():
    async def scenario():
        runtime = get_runtime()
        part = runtime.part(Part)
        await close_runtime()
        assert runtime.part(Part) is part  # for code still finishing on the loop
        with pytest.raises(RuntimeError, match="closed: it makes no new LaterPart"):
            runtime.part(LaterPart)

    run(scenario())


def session_tasks():
    return [task for task in asyncio.all_tasks() if task.get_name().startswith("session-events")]


@pytest.mark.django_db(transaction=True)
def test_closing_the_runtime_ends_its_whep_sessions_and_gives_back_what_they_held():
    make_profile("hall")

    async def scenario():
        runtime = get_runtime()
        response = await AsyncClient().post("/whep/hall/", AIORTC_OFFER, content_type="application/sdp")
        assert response.status_code == 201
        assert (len(whep.resources()), len(runtime.peers), runtime.admission.seats_held) == (1, 1, 1)
        await close_runtime()
        return len(whep.resources()), len(runtime.peers), runtime.admission.seats_held, len(session_tasks())

    assert run(scenario()) == (0, 0, 0, 0)


def whepforward_tasks():
    """The loop's unfinished tasks running code of streams/whepforward.py."""
    return [task for task in asyncio.all_tasks() if not task.done()
            and task.get_coro().cr_code.co_filename == whepforward.__file__]


def test_closing_the_runtime_stops_its_whep_forwarding_desk_and_the_answers_it_was_making():
    async def scenario():
        runtime = get_runtime()
        desk = whepforward.desk()
        asked = asyncio.Event()

        async def answer(request):  # still answering when the runtime closes
            asked.set()
            await asyncio.Event().wait()

        desk.serve(answer)
        await desk.layer.send(whepforward.inbox(runtime.worker_id),
                              {"type": whepforward.REQUEST, "request": {}, "reply_to": "nobody",
                               "deadline": time.time() + whepforward.FORWARD_TIMEOUT_SECONDS})
        await until(asked.is_set, 5, "the desk to take the forwarded request")
        assert len(whepforward_tasks()) == 2  # receiving, answering
        await close_runtime()
        left = whepforward_tasks()
        desk.serve(answer)  # a late WHEP session on the closed runtime starts it no more
        return left, desk.serving, whepforward.desk() is desk

    assert run(scenario()) == ([], False, True)


def test_a_send_that_fails_is_logged_once_and_its_exception_retrieved(caplog):
    """The channel layer's Redis restarting made every status send end in "Task exception was
    never retrieved" from asyncio (seen in bench/faultsoak.py's runs)."""
    async def redis_restarting():
        raise ConnectionError("Connection refused")

    async def scenario():
        task = get_runtime().send_soon(redis_restarting())
        await until(task.done, 5, "the send to fail")

    with caplog.at_level(logging.WARNING):
        run(scenario())
        gc.collect()  # an unretrieved exception is reported when its task is collected
    assert [r.getMessage() for r in caplog.records if "could not be sent" in r.getMessage()] == [
        "a message could not be sent: Connection refused"]
    assert "never retrieved" not in caplog.text
