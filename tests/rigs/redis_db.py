"""The Redis of multi-process tests: the one on 127.0.0.1:6379 that the test set-up starts when
nothing answers (scripts/ensure-redis.sh). Two pytest runs side by side, or two pytest-xdist
workers, must not share a database: a run uses database 13, or the one in RTC_TEST_REDIS_URL;
xdist worker gwN uses database 1+N, or N more than RTC_TEST_REDIS_URL's (./test.sh: 1 and 2 for
its two workers, 12 for the pytest beside them, 13 for the tests that time sound).

Databases do not separate pub/sub (one namespace per Redis server): the media owner's audio
channels name their database (streams/relay/wire.py), and nothing else here uses pub/sub."""
import os
from urllib.parse import urlsplit


def _test_redis_url():
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    index = int(worker.removeprefix("gw")) if worker.startswith("gw") else None
    given = os.environ.get("RTC_TEST_REDIS_URL")
    if not given:
        return f"redis://127.0.0.1:6379/{13 if index is None else 1 + index}"
    if index is None:
        return given
    parts = urlsplit(given)
    return parts._replace(path=f"/{int(parts.path.strip('/') or 0) + index}").geturl()


REDIS_URL = _test_redis_url()
