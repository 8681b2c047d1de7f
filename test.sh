#!/usr/bin/env bash
# Set up (idempotently, with the test tools) and run the whole test suite.
#   ./test.sh            the whole suite
#   ./test.sh -k sdp     one pytest run with these arguments
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh --dev
scripts/ensure-redis.sh
# Tests and benchmarks only ever use loopback for media (see README, RTC_ICE_ADDRESSES).
export RTC_ICE_ADDRESSES=127.0.0.1
[ "$#" -gt 0 ] && exec .venv/bin/python -m pytest "$@"

# The whole suite, in two parts:
# 1. The tests that time sound against the wall clock or a browser's playout (marked times_sound)
#    run first, on their own: nothing else takes the CPU from them.
# 2. Then the rest, two test files at a time (pytest-xdist; each worker has a test database and a
#    Redis database of its own, tests/rigs/redis_db.py). Beside them, in a pytest of its own with
#    its own database and Redis database: the tests that spend their time waiting on timers
#    (consent expiry, deadlines, lockouts, Redis key expiry) or on the release build, which that
#    pytest starts at the lowest CPU priority as soon as it has collected them.
beside=(tests/test_vanished_listener.py tests/test_httpguard.py tests/test_login_throttle.py
        tests/test_owner_lock.py tests/test_cluster_admission.py tests/test_release.py)
ignore_beside=("${beside[@]/#/--ignore=}")
status=0
.venv/bin/python -m pytest -m times_sound "${ignore_beside[@]}" || status=$?

scratch=$(mktemp -d)
beside_pid=
# Stopped (Ctrl-C, say) before the pytest beside is done: it goes too, with what it started.
trap 'if [ -n "$beside_pid" ]; then kill -TERM -- -"$beside_pid" 2>/dev/null || true; fi; wait || true; rm -rf "$scratch"' EXIT
set -m  # the pytest beside in a process group of its own
RTC_TEST_DB_PATH="$scratch/test-db.sqlite3" RTC_TEST_REDIS_URL=redis://127.0.0.1:6379/12 \
  .venv/bin/python -m pytest -p no:cacheprovider --basetemp="$scratch/pytest" "${beside[@]}" \
  > "$scratch/beside.log" 2>&1 &
beside_pid=$!
set +m
.venv/bin/python -m pytest -n 2 --dist loadfile -m "not times_sound" "${ignore_beside[@]}" || status=$?
wait "$beside_pid" || status=$?
echo "=== the tests run beside: ${beside[*]} ==="
cat "$scratch/beside.log"
exit "$status"
