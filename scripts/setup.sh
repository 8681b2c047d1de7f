#!/usr/bin/env bash
# One idempotent set-up for running and for testing RTC Caster.
#   scripts/setup.sh          system packages, .venv, requirements, migrations, default profile, admin user
#   scripts/setup.sh --dev    the same plus what the test suite needs (PulseAudio, Chromium, Redis, coturn, nginx, pytest)
#   scripts/setup.sh --redis  the same plus a Redis server (multi-process mode on this machine)
#   scripts/setup.sh --release system packages and .venv with the release build tools (scripts/release.py);
#                             no database
# A second run only checks: apt and pip are skipped when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
redis=0
release=0
for arg in "$@"; do
  case "$arg" in
    --dev) dev=1 ;;
    --redis) redis=1 ;;
    --release) release=1 ;;
    *) echo "usage: scripts/setup.sh [--dev] [--redis] [--release]" >&2; exit 2 ;;
  esac
done

runtime_apt=(portaudio19-dev libasound2-plugins libopus0 pulseaudio-utils)
dev_apt=(pulseaudio chromium redis-server coturn nginx-light ffmpeg opus-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-nice gstreamer1.0-libav python3-gst-1.0 gir1.2-gst-plugins-bad-1.0 gir1.2-nice-0.1 firefox-esr iproute2 xvfb python3-gi gir1.2-webkit2-4.1 gstreamer1.0-pulseaudio)  # coturn, nginx: the TURN and reverse-proxy tests; ffmpeg, opus-tools: the Ogg stream tests; gstreamer1.0-*, python3-gst-1.0, gir1.2-*: the GStreamer webrtcbin listener (tests/rigs/gstreamer_listener.py); firefox-esr, iproute2: Firefox in a loopback-only network namespace (tests/rigs/firefox.py); xvfb, python3-gi, gir1.2-webkit2-4.1, gstreamer1.0-pulseaudio: WebKitGTK (no WebRTC) playing the page's HTTP fallback into PulseAudio (tests/rigs/webkit.py)
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
  $sudo apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
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
  [ "$release" = 1 ] && reqs+=(requirements-release.txt)
  local stamp=".venv/.installed-${reqs[-1]}.sha256"
  local digest
  digest=$(cat "${reqs[@]}" | sha256sum | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ]; then
    say "python packages up to date"
    return
  fi
  say "installing python packages from ${reqs[-1]}"
  .venv/bin/python -m pip install -q --upgrade pip
  local args=()
  for file in "${reqs[@]}"; do args+=(-r "$file"); done
  .venv/bin/python -m pip install -q "${args[@]}"
  echo "$digest" > "$stamp"
}

# WHEP clients this project did not write, for tests/test_whep_end_to_end.py: tests/package.json,
# pinned by tests/package-lock.json; --ignore-scripts, so no package downloads anything of its own.
install_test_clients() {
  if ! command -v npm >/dev/null; then
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    say "installing nodejs and npm"
    $sudo apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends nodejs npm >/dev/null
  fi
  local stamp=tests/node_modules/.installed.sha256 digest
  digest=$(sha256sum tests/package-lock.json | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ]; then
    say "test clients up to date"
    return
  fi
  say "installing the test clients (tests/package.json)"
  (cd tests && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
  echo "$digest" > "$stamp"
}

# puppeteer-core, which drives the system's firefox-esr for tests/test_firefox_page.py: tests/js/package.json,
# pinned by tests/js/package-lock.json. PUPPETEER_SKIP_DOWNLOAD and --ignore-scripts: no browser is downloaded.
install_firefox_driver() {
  local stamp=tests/js/node_modules/.installed.sha256 digest
  digest=$(sha256sum tests/js/package-lock.json | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ]; then
    say "firefox driver up to date"
    return
  fi
  say "installing the firefox driver (tests/js/package.json)"
  (cd tests/js && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
  echo "$digest" > "$stamp"
}

prepare_database() {
  .venv/bin/python manage.py migrate --noinput -v 0
  .venv/bin/python manage.py bootstrap
}

install_system_packages
install_python_packages
if [ "$dev" = 1 ]; then install_test_clients; fi
if [ "$dev" = 1 ]; then install_firefox_driver; fi  # after install_test_clients, which installs npm
[ "$release" = 1 ] || prepare_database
