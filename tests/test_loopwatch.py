"""The event loop's lag monitor (streams/ops/loopwatch.py): stopping it once its loop has ended."""
import asyncio
import gc

from streams.ops.loopwatch import LoopLagMonitor


def test_a_monitor_whose_loop_ended_without_stopping_it_lets_go_of_the_garbage_collector():
    hooks_before = list(gc.callbacks)
    loop = asyncio.new_event_loop()

    async def start():
        return LoopLagMonitor()

    try:
        monitor = loop.run_until_complete(start())
        assert gc.callbacks != hooks_before  # it times the garbage collector's pauses
        monitor.abandon()  # the loop has ended: nothing runs on it
        assert gc.callbacks == hooks_before
    finally:
        left = asyncio.all_tasks(loop)
        for task in left:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
        loop.close()
