"""Give the memory that listener churn freed back to the system.

Every listener brings a peer connection (DTLS and SRTP contexts, a certificate, sockets,
a few thousand Python objects, many of them in reference cycles that only Python's cyclic
garbage collector frees). When listeners leave, the cycles wait for a full collection and
glibc keeps freed pages in its heap for reuse, so after a crowd has gone the process still
looks as big as it was at its peak.

- `release_free_memory()` returns free heap pages to the system (malloc_trim); cheap, run
  once a minute.
- `release_free_memory(collect_garbage=True)` first runs a full garbage collection; that
  pauses the event loop for a moment, so it runs only when no one is listening.

Elsewhere than glibc (macOS, Windows, musl) the trim does nothing.
"""
import ctypes
import ctypes.util
import gc
import sys


def _glibc_malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None


_malloc_trim = _glibc_malloc_trim()


def release_free_memory(collect_garbage=False):
    """Free unreachable cycles (if asked), then return free heap pages to the system.
    True if glibc released any."""
    if collect_garbage:
        gc.collect()
    return bool(_malloc_trim and _malloc_trim(0))
