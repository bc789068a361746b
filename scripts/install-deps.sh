#!/usr/bin/env bash
# Installs what building and testing sluice needs, and nothing when it is all
# there: Debian packages through apt-get, npm test dependencies from the
# committed lock file. Idempotent and quiet when there is nothing to do.
set -euo pipefail
cd "$(dirname "$0")/.."

DEB_PACKAGES=(
  build-essential pkg-config clang libclang-rt-14-dev
  libuv1-dev libcurl4-openssl-dev libyaml-dev libhiredis-dev libssl-dev libnghttp2-dev libcmocka-dev
  libcjson-dev
  redis-server nginx-light wrk curl nodejs npm
  iproute2 procps
)

missing=()
for p in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# A machine may have Node.js from elsewhere (not from Debian): then do not ask apt for it.
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  filtered=()
  for p in "${missing[@]}"; do [[ $p == nodejs || $p == npm ]] || filtered+=("$p"); done
  missing=("${filtered[@]}")
fi
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >/dev/null
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm test dependencies, from tests/e2e/package-lock.json.
if [ -f tests/e2e/package-lock.json ]; then
  stamp=tests/e2e/node_modules/.sluice-lock-stamp
  if [ ! -f "$stamp" ] || ! cmp -s tests/e2e/package-lock.json "$stamp"; then
    echo "install-deps: npm ci in tests/e2e"
    (cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    cp tests/e2e/package-lock.json "$stamp"
  fi
fi
