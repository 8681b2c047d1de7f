"""Channel-layer group membership that lasts as long as the listener it is for.

A listener (a ListenerSession, an Ogg listener) follows its stream through a channel of its own,
joined to the stream's groups (runtime.status_group). The channel layer forgets members by
itself: channels_redis drops a member `group_expiry` after it joined (24 h by default), and a
Redis restart or flush drops every group at once. A listener that stayed longer, or lived
through the restart, would never again hear "stream stopped", "profile changed", "device lost"
or an access change.

So each process keeps its members joined, in one task (GroupKeeper, a part of its runtime that
stops when the runtime closes):

- every `group_expiry / 4` it adds every member again (group_add renews the member's time);
- every second it checks that the layer still has its groups: it sends a ping to a group that
  only its own probe channel joined. A ping that does not come back within the second means the
  groups are gone (Redis restarted or was flushed, or the layer dropped the members): every
  member is added again, and again each second until the ping comes back.

Why keep the layer's `group_expiry` (the default day) rather than set it "for ever": it is what
removes the channels of a process that died without leaving its groups (a killed worker); with
no expiry every message to a stream would go on being written to their queues. A member that
is renewed four times per expiry never lapses while its process lives, and one whose process
died lapses within the day.
"""
import asyncio
import itertools
import logging
import secrets

from channels.layers import get_channel_layer
from redis.exceptions import RedisError

from .runtime import get_runtime

logger = logging.getLogger(__name__)

PROBE_SECONDS = 1.0  # how often the layer is checked for its groups, and how long a ping may take
REFRESH_PARTS = 4  # members are added again every group_expiry / REFRESH_PARTS
LEAVE_SECONDS = 2.0  # leaving waits this long for the layer at most (a member left behind lapses by itself)
# What a layer that does not answer raises: channels_redis passes on redis-py's errors.
LAYER_ERRORS = (RedisError, OSError, asyncio.TimeoutError)


class GroupKeeper:
    """A process's members of channel-layer groups, kept joined while they are wanted: a part of
    its runtime (StreamRuntime.part), which stops keeping them when the runtime closes."""

    def __init__(self, runtime):
        self.runtime = runtime
        self.layer = get_channel_layer()
        self._members = {}  # channel -> its groups
        self._task = None
        self._closed = False
        self._stale = False  # some group_add failed: add every member again when the layer answers
        self._probe_group = f"groups-probe.{secrets.token_hex(6)}"
        self._pings = itertools.count()
        self._answered = -1
        self._answer = asyncio.Event()

    @property
    def refresh_seconds(self):
        return getattr(self.layer, "group_expiry", 86400) / REFRESH_PARTS

    async def join(self, channel, groups):
        """Add `channel` to `groups` and keep it there until leave(channel). If the layer does not
        answer now, the keeper adds it as soon as it does. After close(), it is added, not kept."""
        self._members[channel] = tuple(groups)
        if not self._closed and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self._keep(), name="group-keeper")
            self._task.add_done_callback(_said_if_failed)
        try:
            await self._add(channel, groups)
        except LAYER_ERRORS as error:
            logger.warning("the channel layer does not answer (%s); joining %s when it does", error, ", ".join(groups))
            self._stale = True

    async def leave(self, channel):
        """Take `channel` out of its groups (waiting at most LEAVE_SECONDS for the layer). Also
        after close()."""
        groups = self._members.pop(channel, ())
        if not self._members:
            await self._stop_keeping()  # nothing left to keep
        try:
            async with asyncio.timeout(LEAVE_SECONDS):
                for group in groups:
                    await self.layer.group_discard(group, channel)
        except LAYER_ERRORS as error:
            logger.info("could not leave %s (%s); the layer drops the member after its group_expiry",
                        ", ".join(groups), error or type(error).__name__)

    async def close(self):
        """Stop keeping members joined, for good (the runtime closes)."""
        self._closed = True
        await self._stop_keeping()

    async def _stop_keeping(self):
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])

    async def _add(self, channel, groups):
        for group in groups:
            await self.layer.group_add(group, channel)
        if channel not in self._members:  # it left while being added: do not leave it behind
            for group in groups:
                await self.layer.group_discard(group, channel)

    async def _keep(self):
        loop = asyncio.get_running_loop()
        probe = receiver = None
        try:
            probe = await self.layer.new_channel()  # the probe's channel: in the probe group only
            receiver = loop.create_task(self._receive_pings(probe), name="group-keeper-probe")
            await self._rejoin(probe)
            refresh_at = loop.time() + self.refresh_seconds
            while True:
                await asyncio.sleep(min(PROBE_SECONDS, self.refresh_seconds))
                lost = not await self._groups_answer()
                if lost and not self._stale:
                    logger.warning("the channel layer lost its groups (Redis restarted or flushed?): "
                                   "joining the %d listeners of this process again", len(self._members))
                if lost or self._stale or loop.time() >= refresh_at:
                    if await self._rejoin(probe):
                        refresh_at = loop.time() + self.refresh_seconds
        finally:
            if receiver is not None:
                receiver.cancel()
                await asyncio.wait([receiver])
            if probe is not None:  # a message on its way out: this task is being cancelled
                self.runtime.send_soon(self._leave_probe(probe))

    async def _leave_probe(self, channel):
        try:
            async with asyncio.timeout(LEAVE_SECONDS):
                await self.layer.group_discard(self._probe_group, channel)
        except LAYER_ERRORS:
            pass  # it lapses after the layer's group_expiry

    async def _rejoin(self, probe):
        """Add every member (and the probe) again. True if the layer took them all."""
        try:
            await self.layer.group_add(self._probe_group, probe)
            for channel, groups in list(self._members.items()):
                if channel in self._members:
                    await self._add(channel, groups)
        except LAYER_ERRORS as error:
            if not self._stale:
                logger.warning("cannot join listeners to their groups (%s); retrying every %g s", error, PROBE_SECONDS)
            self._stale = True
            return False
        if self._stale:
            logger.info("the listeners of this process are in their groups again")
        self._stale = False
        return True

    async def _groups_answer(self):
        """Send a ping to the probe group; True if it came back within PROBE_SECONDS."""
        ping = next(self._pings)
        self._answer.clear()
        try:
            async with asyncio.timeout(PROBE_SECONDS):
                await self.layer.group_send(self._probe_group, {"type": "groups.ping", "ping": ping})
                while self._answered < ping:
                    await self._answer.wait()
                    self._answer.clear()
        except LAYER_ERRORS:
            return False
        return True

    async def _receive_pings(self, channel):
        while True:
            try:
                message = await self.layer.receive(channel)
            except LAYER_ERRORS:
                await asyncio.sleep(PROBE_SECONDS / 2)
                continue
            self._answered = max(self._answered, message.get("ping", -1))
            self._answer.set()


def _said_if_failed(task):
    """A keeper that failed (a bug) says so once, with the traceback; the next join starts another."""
    if not task.cancelled() and task.exception() is not None:
        logger.error("keeping listeners in their groups failed; a new listener starts it again",
                     exc_info=task.exception())


def keeper():
    """This process's GroupKeeper (a part of the running loop's runtime)."""
    return get_runtime().part(GroupKeeper)
