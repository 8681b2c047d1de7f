#!/usr/bin/env bash
# One idempotent set-up for running and for testing RTC Caster.
#   scripts/setup.sh          system packages, .venv, requirements, migrations, default profile, admin user
#   scripts/setup.sh --dev    the same plus what the test suite needs (PulseAudio, Chromium, Redis, coturn, nginx, pytest)
#   scripts/setup.sh --redis  the same plus a Redis server (multi-process mode on this machine)
# A second run only checks: apt and pip are skipped when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
redis=0
for arg in "$@"; do
  case "$arg" in
    --dev) dev=1 ;;
    --redis) redis=1 ;;
    *) echo "usage: scripts/setup.sh [--dev] [--redis]" >&2; exit 2 ;;
  esac
done

runtime_apt=(portaudio19-dev libasound2-plugins libopus0 pulseaudio-utils)
dev_apt=(pulseaudio chromium redis-server coturn nginx-light)  # coturn, nginx: the TURN and reverse-proxy tests
# Those two run as the tests' own processes; when the set-up installs them, their system
# services are switched off again, so a developer's machine is not left serving TURN or HTTP.
test_only_services=(coturn:coturn nginx-light:nginx)
redis_apt=(redis-server)

say() { printf '[setup] %s\n' "$*"; }

install_system_packages() {
  local wanted=("${runtime_apt[@]}")
  [ "$dev" = 1 ] && wanted+=("${dev_apt[@]}")
  [ "$redis" = 1 ] && wanted+=("${redis_apt[@]}")
  if ! command -v dpkg-query >/dev/null; then
    say "not a Debian/Ubuntu system: install these yourself: ${wanted[*]}"
    return
  fi
  local missing=()
  for pkg in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [ "${#missing[@]}" = 0 ] && { say "system packages present"; return; }
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  say "installing system packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ -d /run/systemd/system ] || return 0  # no systemd: nothing was started
  for entry in "${test_only_services[@]}"; do
    if printf '%s\n' "${missing[@]}" | grep -qx "${entry%%:*}"; then
      $sudo systemctl disable --now "${entry#*:}" >/dev/null 2>&1 || true
    fi
  done
}

install_python_packages() {
  local python="${PYTHON:-python3}"
  [ -x .venv/bin/python ] || { say "creating .venv"; "$python" -m venv .venv; }
  local reqs=(requirements.txt)
  [ "$dev" = 1 ] && reqs+=(requirements-dev.txt)
  local stamp=".venv/.installed-${reqs[-1]}.sha256"
  local digest
  digest=$(cat requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ]; then
    say "python packages up to date"
    return
  fi
  say "installing python packages from ${reqs[-1]}"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r "${reqs[-1]}"
  echo "$digest" > "$stamp"
}

prepare_database() {
  .venv/bin/python manage.py migrate --noinput -v 0
  .venv/bin/python manage.py bootstrap
}

install_system_packages
install_python_packages
prepare_database
