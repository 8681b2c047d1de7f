"""One way to keep a long-lived task alive: catch, log once with the traceback, restart with
backoff, and give up visibly when restarting does not help.

A stream's hub, the relay's tasks, the owner's publisher and the admission's renewal each run
for as long as the stream or the process does. An exception that ended such a task silently
would leave a stream registered as playing that plays nothing, so each runs under a
`Supervisor`: it counts restarts (shown in /status.json and the metrics), tells its owner
(`on_crash`, e.g. to tell the listeners and rebuild an encoder) and, after `give_up_after`
crashes with no steady run in between, stops restarting and says so (`on_give_up`).
"""
import asyncio
import logging

logger = logging.getLogger(__name__)

FIRST_RETRY_SECONDS = 0.5
MAX_RETRY_SECONDS = 10.0
STEADY_SECONDS = 10.0  # running this long without failing counts as recovered
GIVE_UP_AFTER = 5  # crashes in a row, none after a steady run


class Backoff:
    """How long to wait before trying again: `first` after the first failure, then twice as
    long after each further one, up to `most`. Something that then ran for `steady` seconds
    before failing again starts from `first`; one that keeps failing soon after it starts keeps
    the longer waits. Pure: times come in as arguments."""

    def __init__(self, first=FIRST_RETRY_SECONDS, most=MAX_RETRY_SECONDS, steady=STEADY_SECONDS):
        self.first, self.most, self.steady = first, most, steady
        self._next = first
        self._running_since = None
        self.failures_in_a_row = 0

    def running(self, now):
        """It (re)started and works, from `now` on."""
        if self._running_since is None:
            self._running_since = now

    def failed(self, now):
        """It failed at `now`: the seconds to wait before trying again."""
        if self._running_since is not None and now - self._running_since >= self.steady:
            self._next = self.first
            self.failures_in_a_row = 0
        self._running_since = None
        self.failures_in_a_row += 1
        delay, self._next = self._next, min(self._next * 2, self.most)
        return delay


class Supervisor:
    """Runs `await run()` in a task, again after each exception (see the module's notes).

    `on_crash(error)` runs before each wait (it may rebuild what `run` uses; if it raises, that
    is logged and the restart goes ahead); `on_give_up(error)` runs once when restarting stops. A `run` that
    returns ends the task normally. `stop()` cancels it."""

    def __init__(self, name, run, on_crash=None, on_give_up=None, backoff=None, give_up_after=GIVE_UP_AFTER):
        self.name = name
        self.restarts = 0
        self.gave_up = False
        self._run = run
        self._on_crash = on_crash
        self._on_give_up = on_give_up
        self._backoff = backoff or Backoff()
        self._give_up_after = give_up_after
        self._task = asyncio.get_running_loop().create_task(self._supervise(), name=name)

    @property
    def running(self):
        return not self._task.done()

    @property
    def task(self):
        """The asyncio task, to await its end after `stop()`."""
        return self._task

    def stop(self):
        self._task.cancel()

    async def _supervise(self):
        loop = asyncio.get_running_loop()
        while True:
            self._backoff.running(loop.time())
            try:
                await self._run()
                return
            except asyncio.CancelledError:
                raise
            except Exception as error:
                delay = self._backoff.failed(loop.time())
                if self._backoff.failures_in_a_row > self._give_up_after:
                    self._give_up(error)
                    return
                self.restarts += 1
                # The traceback once per streak of failures; the repeats in one line each.
                logger.error("%s failed (%s: %s); restart %d in %.1f s", self.name, type(error).__name__, error,
                             self.restarts, delay, exc_info=self._backoff.failures_in_a_row == 1)
                try:
                    if self._on_crash:
                        self._on_crash(error)
                except Exception:
                    logger.exception("%s: could not prepare the restart", self.name)
                await asyncio.sleep(delay)

    def _give_up(self, error):
        self.gave_up = True
        logger.error("%s failed %d times in a row (last: %s: %s); giving up", self.name,
                     self._backoff.failures_in_a_row, type(error).__name__, error)
        if self._on_give_up:
            self._on_give_up(error)
