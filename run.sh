#!/usr/bin/env bash
# Set up (idempotently) and start RTC Caster on RTC_HOST:RTC_PORT (default 0.0.0.0:8088).
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh
exec .venv/bin/python manage.py serve "$@"
