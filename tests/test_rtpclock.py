"""streams.webrtc.rtpclock gives the NTP timestamps aiortc's own clock gives."""
import datetime

import aiortc.clock
from hypothesis import given
from hypothesis import strategies as st

from streams.webrtc import rtpclock

ONE_MICROSECOND = (1 << 32) // 1_000_000 + 1  # aiortc's clock has microsecond resolution
UTC = datetime.timezone.utc


@given(st.datetimes(min_value=datetime.datetime(1970, 1, 1), max_value=datetime.datetime(2100, 1, 1)))
def test_ntp_time_matches_aiortcs_datetime_conversion(moment):
    moment = moment.replace(tzinfo=UTC)
    expected = aiortc.clock.datetime_to_ntp(moment)
    assert abs(rtpclock.ntp_time(moment.timestamp()) - expected) <= ONE_MICROSECOND


def test_known_values():
    assert rtpclock.ntp_time(0) == 2_208_988_800 << 32
    assert rtpclock.ntp_time(1.5) == ((2_208_988_801) << 32) | (1 << 31)


def test_installed_in_aiortc_by_the_app():
    """apps.ready() installed it; the value agrees with aiortc's datetime version to within 50 ms."""
    assert aiortc.clock.current_ntp_time is rtpclock.current_ntp_time
    theirs = aiortc.clock.datetime_to_ntp(aiortc.clock.current_datetime())
    assert abs(aiortc.clock.current_ntp_time() - theirs) < (1 << 32) // 20
