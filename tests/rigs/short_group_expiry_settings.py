"""The project's settings with a Channels layer that forgets group members after
RTC_TEST_GROUP_EXPIRY seconds (channels_redis's and the in-memory layer's `group_expiry`, a day
by default): for servers of tests in which listeners stay longer than that
(`DJANGO_SETTINGS_MODULE=tests.rigs.short_group_expiry_settings`)."""
import os

from rtccaster_site.settings import *  # noqa: F401,F403 (these are the settings, with one change)
from rtccaster_site.settings import CHANNEL_LAYERS

CHANNEL_LAYERS["default"].setdefault("CONFIG", {})["group_expiry"] = int(os.environ["RTC_TEST_GROUP_EXPIRY"])
