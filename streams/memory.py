"""Give memory that listener churn freed back to the system (glibc's allocator).

Every listener brings a peer connection, DTLS and SRTP contexts, sockets and a few
hundred small Python objects; when it leaves they are freed, but glibc keeps the freed
pages in its heaps for reuse, spread over one arena per thread that ever allocated (up
to 8 per core). After a churn of a thousand listeners the process then looks tens of MB
bigger than it is. Two glibc calls keep it honest:

- `limit_arenas(n)` at start-up (mallopt M_ARENA_MAX), before any thread allocates;
- `release_free_memory()` (malloc_trim) when a stream goes idle and once a minute.

Elsewhere than glibc (macOS, Windows, musl) both do nothing and say so.
"""
import ctypes
import ctypes.util
import logging
import sys

logger = logging.getLogger(__name__)

M_ARENA_MAX = -8  # from glibc's malloc.h


def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim  # glibc only (musl has no malloc_trim)
        libc.mallopt
    except (OSError, AttributeError):
        return None
    return libc


_libc = _glibc()


def limit_arenas(count):
    """Cap glibc's malloc arenas at `count` (0 leaves glibc's default). True if applied."""
    if not count:
        return False
    if _libc is None:
        logger.info("not glibc: RTC_MALLOC_ARENAS has no effect here")
        return False
    return bool(_libc.mallopt(M_ARENA_MAX, int(count)))


def release_free_memory():
    """Return free heap pages to the system. True if glibc released any."""
    if _libc is None:
        return False
    return bool(_libc.malloc_trim(0))
