"""An asyncio event loop on a clock the test owns: code that times itself by `loop.time()` and
`asyncio.sleep()` runs at once, and exactly on time.

Where the loop would wait (nothing ready, a timer due later), the clock jumps to the timer
instead. `loop.hold_up(seconds)` moves the clock on with nothing run, as a blocking call or a
busy machine would hold a real loop up.

    result = run_on_virtual_clock(scenario)   # the coroutine scenario(loop) on a fresh VirtualClockLoop
"""
import asyncio
import selectors


class _JumpingSelector(selectors.DefaultSelector):
    """Never waits: a select with a timeout moves the loop's clock on by it instead."""

    def __init__(self):
        super().__init__()
        self.clock = None

    def select(self, timeout=None):
        if timeout is None:
            raise RuntimeError("the virtual-clock loop has nothing scheduled: it would wait forever")
        self.clock.now += max(timeout, 0)
        return super().select(0)


class VirtualClockLoop(asyncio.SelectorEventLoop):
    def __init__(self, start=1000.0):
        selector = _JumpingSelector()
        super().__init__(selector)
        selector.clock = self
        self.now = start

    def time(self):
        return self.now

    def hold_up(self, seconds):
        """The loop held up for `seconds`: time passes, nothing runs."""
        self.now += seconds


def run_on_virtual_clock(scenario):
    """Run the coroutine `scenario(loop)` on a fresh VirtualClockLoop; its result."""
    loop = VirtualClockLoop()
    try:
        return loop.run_until_complete(scenario(loop))
    finally:
        loop.close()
