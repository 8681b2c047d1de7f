"""Waiting on a condition with a deadline: the only way tests wait (never a bare sleep).

Both poll `condition()` every 50 ms and return its first truthy value; past `timeout` seconds
they fail with a message naming `what` was awaited.
"""
import asyncio
import time

POLL_SECONDS = 0.05


def _attempts(timeout, what):
    """Yields once per attempt until the deadline has passed, then fails naming `what`."""
    deadline = time.monotonic() + timeout
    yield
    while time.monotonic() <= deadline:
        yield
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")


def wait_for(condition, timeout, what):
    for _ in _attempts(timeout, what):
        result = condition()
        if result:
            return result
        time.sleep(POLL_SECONDS)


async def until(condition, timeout, what):
    """wait_for for async code: the event loop keeps running while it polls."""
    for _ in _attempts(timeout, what):
        result = condition()
        if result:
            return result
        await asyncio.sleep(POLL_SECONDS)


async def until_awaited(condition, timeout, what):
    """`until` for a condition that is itself a coroutine function (reading getStats(), say)."""
    for _ in _attempts(timeout, what):
        result = await condition()
        if result:
            return result
        await asyncio.sleep(POLL_SECONDS)
