"""Waiting on a condition with a deadline: the only way tests wait (never a bare sleep).

Both poll `condition()` every 50 ms and return its first truthy value; past `timeout` seconds
they fail with a message naming `what` was awaited.
"""
import asyncio
import time

POLL_SECONDS = 0.05


def wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(POLL_SECONDS)


async def until(condition, timeout, what):
    """wait_for for async code: the event loop keeps running while it polls."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(POLL_SECONDS)
