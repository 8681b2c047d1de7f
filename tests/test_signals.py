"""Saving a profile tells its listeners (streams/signals.py): from async code without blocking the
loop, the send kept by the loop's runtime; a channel layer that fails is logged, the save stands."""
import asyncio
import logging

import pytest

from streams import runtime as runtime_module, signals
from streams.models import StreamProfile
from streams.runtime import get_runtime
from tests.helpers import make_profile, run
from tests.waiting import until

pytestmark = pytest.mark.django_db(transaction=True)


class HeldLayer:
    """A channel layer whose sends wait until `release` is set (made on the loop that sends)."""

    def __init__(self):
        self.release = asyncio.Event()
        self.sent, self.cancelled = [], []

    async def group_send(self, group, event):
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled.append(event["type"])
            raise
        self.sent.append((group, event["type"]))


class DownLayer:
    async def group_send(self, group, event):
        raise ConnectionError("Redis is down")


@pytest.fixture
def saving_from_async_code(monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # the ORM called on the loop, as a test may


def save_bitrate(profile, bitrate):
    profile.audio_bitrate = bitrate
    profile.save()


def test_a_save_from_async_code_returns_before_its_listeners_are_told_then_they_are(monkeypatch,
                                                                                    saving_from_async_code):
    profile = make_profile("hall")

    async def scenario():
        layer = HeldLayer()
        monkeypatch.setattr(signals, "get_channel_layer", lambda: layer)
        save_bitrate(profile, 64_000)  # would block the loop if it waited for the send
        assert layer.sent == []
        layer.release.set()
        return await until(lambda: layer.sent, 5, "the listeners to be told")

    assert run(scenario()) == [(f"stream.{profile.pk}", "stream.changed")]


def test_a_send_from_async_code_belongs_to_the_runtime_which_ends_it_when_it_closes(monkeypatch,
                                                                                   saving_from_async_code):
    profile = make_profile("hall")
    monkeypatch.setattr(runtime_module, "SEND_GRACE_SECONDS", 0.1)

    async def scenario():
        layer = HeldLayer()  # never released: a channel layer that hangs
        monkeypatch.setattr(signals, "get_channel_layer", lambda: layer)
        save_bitrate(profile, 64_000)
        await asyncio.wait_for(get_runtime().close(), 5)
        return layer.cancelled

    assert run(scenario()) == ["stream.changed"]


@pytest.mark.parametrize("where", ["sync", "async"])
def test_a_channel_layer_that_fails_is_logged_and_the_save_stands(monkeypatch, caplog, saving_from_async_code, where):
    profile = make_profile("hall")
    monkeypatch.setattr(signals, "get_channel_layer", DownLayer)
    warning = "could not tell the listeners of hall about stream.changed (Redis is down)"

    async def save_on_the_loop():
        save_bitrate(profile, 64_000)
        await until(lambda: warning in caplog.text, 5, "the warning")

    with caplog.at_level(logging.WARNING, logger="streams.signals"):
        if where == "sync":
            save_bitrate(profile, 64_000)
        else:
            run(save_on_the_loop())
    assert warning in caplog.text
    assert StreamProfile.objects.get(pk=profile.pk).audio_bitrate == 64_000
