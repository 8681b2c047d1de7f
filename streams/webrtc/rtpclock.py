"""aiortc's wall clock in NTP format, read without building datetime objects.

aiortc stamps every RTP packet it sends with `clock.current_ntp_time()` (the abs-send-time
header extension, and the time its next RTCP sender report quotes), twice per packet. Its
version builds two timezone-aware datetimes and a timedelta each time: with hundreds of
listeners that was about 5 % of the server's CPU (bench/listeners.py --profile). The same
value comes from `time.time()` with integer arithmetic.
"""
import time

from . import rtcinternals

NTP_UNIX_OFFSET = 2_208_988_800  # seconds from 1900-01-01 (NTP era 0) to 1970-01-01 (Unix)


def ntp_time(unix_seconds):
    """64-bit NTP timestamp (32.32 fixed point since 1900) of a Unix time in seconds."""
    whole = int(unix_seconds)
    fraction = int((unix_seconds - whole) * (1 << 32))
    return ((whole + NTP_UNIX_OFFSET) << 32) | fraction


def current_ntp_time():
    return ntp_time(time.time())


def install():
    """Make aiortc read the clock this way (its modules look `clock.current_ntp_time` up per call)."""
    rtcinternals.use_ntp_clock(current_ntp_time)
