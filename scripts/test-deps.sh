#!/usr/bin/env bash
# What `npm test` needs beyond npm packages, installed when missing (npm runs this as `pretest`):
#   redis-server  the distributed-mode tests start their own on a free port
#   chromium      test/web.test.ts drives the web page in headless Chromium (playwright-core;
#                 $CHROMIUM_PATH, default /usr/bin/chromium, Debian's package)
# Idempotent, and quick when everything is there. As root with apt-get, it installs what is
# missing; otherwise it says what to install and fails.
set -euo pipefail

chromium="${CHROMIUM_PATH:-/usr/bin/chromium}"
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
[ -x "$chromium" ] || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "test-deps: installing ${missing[*]} (apt-get)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
  still=()
  command -v redis-server >/dev/null 2>&1 || still+=(redis-server)
  [ -x "$chromium" ] || still+=("chromium at $chromium")
  if [ ${#still[@]} -gt 0 ]; then
    echo "test-deps: still missing after apt-get: ${still[*]}" >&2
    exit 1
  fi
  exit 0
fi

echo "test-deps: the tests need ${missing[*]}, which this machine lacks. Install them, e.g. on Debian/Ubuntu:" >&2
echo "  sudo apt-get install -y ${missing[*]}" >&2
[[ " ${missing[*]} " == *" chromium "* ]] && echo "  (or point CHROMIUM_PATH at a Chromium or Chrome binary; now: $chromium)" >&2
exit 1
