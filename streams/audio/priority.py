"""Scheduling priority for the audio path, asked for as sound servers ask for theirs.

On a machine whose cores are busy with other programs, a capture thread and an event loop
at normal priority wait their turn behind them, and the device's sound reaches the
listeners in bursts, or is dropped (measured: bench/device_clock.py --load burn, see
docs/benchmarks.md). So, as PulseAudio does by default:

- the process (the event loop that encodes and sends, and every thread it starts) runs at
  nice -11, PulseAudio's "high-priority";
- each capture thread, which only ever waits for its device and then writes 10 ms into
  the rings, runs real-time (SCHED_FIFO at a low priority, 10), PulseAudio's
  "realtime-scheduling".

Each is taken only where the system grants it (root, CAP_SYS_NICE, or the RLIMIT_NICE /
RLIMIT_RTPRIO limits that desktop systems give the `audio` group); otherwise the server
logs once what it could not get and runs at normal priority. RTC_AUDIO_PRIORITY=0 asks for
nothing.
"""
import logging
import os

logger = logging.getLogger(__name__)

PROCESS_NICE = -11
CAPTURE_RT_PRIORITY = 10


def raise_process_priority():
    """At start, before other threads exist (Linux gives each thread its own nice value, and new
    threads inherit their creator's). Returns what was granted, in words."""
    if not hasattr(os, "setpriority"):
        return "normal priority (not supported on this system)"
    try:
        os.setpriority(os.PRIO_PROCESS, 0, PROCESS_NICE)
    except OSError as error:
        logger.warning("audio priority: could not raise the server's priority to nice %d (%s); under CPU load "
                       "listeners may hear gaps. Allow it with a RLIMIT_NICE of %d (e.g. the audio group's limits) "
                       "or set RTC_AUDIO_PRIORITY=0 to stop asking.", PROCESS_NICE, error.strerror, -PROCESS_NICE + 20)
        return "normal priority (not permitted)"
    return f"nice {PROCESS_NICE}"


def make_capture_thread_real_time():
    """Called on a capture thread. Returns what was granted, in words."""
    if not hasattr(os, "sched_setscheduler"):
        return "normal priority (not supported on this system)"
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(CAPTURE_RT_PRIORITY))
    except OSError as error:
        logger.info("audio priority: capture thread not real-time (%s); it keeps the process's priority",
                    error.strerror)
        return "not real-time (not permitted)"
    return f"real-time (SCHED_FIFO {CAPTURE_RT_PRIORITY})"
