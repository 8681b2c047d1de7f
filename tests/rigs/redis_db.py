"""The Redis of multi-process tests: the one on 127.0.0.1:6379 that the test set-up starts when
nothing answers (scripts/ensure-redis.sh). Multi-process tests use database 13 of it, or the URL in
RTC_TEST_REDIS_URL (two test runs side by side on one machine must not share a database)."""
import os

REDIS_URL = os.environ.get("RTC_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
