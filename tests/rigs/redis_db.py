"""The Redis of multi-process tests: the one on 127.0.0.1:6379 that the test set-up starts when
nothing answers (scripts/ensure-redis.sh). Two pytest runs side by side, or two pytest-xdist
workers, must not share a database: a run uses the URL in RTC_TEST_REDIS_URL if set, else xdist
worker gwN uses database 1+N, else database 13."""
import os


def _test_redis_url():
    if os.environ.get("RTC_TEST_REDIS_URL"):
        return os.environ["RTC_TEST_REDIS_URL"]
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    database = 1 + int(worker.removeprefix("gw")) if worker.startswith("gw") else 13
    return f"redis://127.0.0.1:6379/{database}"


REDIS_URL = _test_redis_url()
