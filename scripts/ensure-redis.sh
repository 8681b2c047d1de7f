#!/usr/bin/env bash
# Make sure a Redis answers on 127.0.0.1:6379 (the multi-process tests use it); start one if not.
set -euo pipefail
if redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; then
  exit 0
fi
echo "[setup] starting redis-server on 127.0.0.1:6379"
redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
for _ in $(seq 1 100); do
  redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG && exit 0
  sleep 0.1
done
echo "[setup] redis-server did not answer on 127.0.0.1:6379" >&2
exit 1
