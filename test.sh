#!/usr/bin/env bash
# Set up (idempotently, with the test tools) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh --dev
scripts/ensure-redis.sh
# Tests and benchmarks only ever use loopback for media (see README, RTC_ICE_ADDRESSES).
export RTC_ICE_ADDRESSES=127.0.0.1
exec .venv/bin/python -m pytest "$@"
