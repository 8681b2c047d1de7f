#!/usr/bin/env bash
# Set up (idempotently) and start RTC Caster on RTC_HOST:RTC_PORT (default 0.0.0.0:8088).
#   ./run.sh                 one process: pages, signaling, capture and encoding
#   ./run.sh --workers 4     a media owner and 4 daphne workers on one socket, through Redis
#                            (REDIS_URL, or a local redis-server started for you)
# Other arguments (--host, --port) go to the server.
set -euo pipefail
cd "$(dirname "$0")"
workers=1
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --workers) workers="$2"; shift 2 ;;
    --workers=*) workers="${1#*=}"; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
if [ "$workers" -gt 1 ] || [ -n "${REDIS_URL:-}" ]; then
  if [ -z "${REDIS_URL:-}" ]; then
    scripts/setup.sh --redis
    scripts/ensure-redis.sh
    export REDIS_URL=redis://127.0.0.1:6379/0
  else
    scripts/setup.sh
  fi
  exec .venv/bin/python manage.py cluster --workers "$workers" "${args[@]}"
fi
scripts/setup.sh
exec .venv/bin/python manage.py serve "${args[@]}"
