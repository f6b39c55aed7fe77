#!/usr/bin/env bash
# Installs the Debian packages whose programs the test suite runs for real: PostgreSQL (the
# decision log), Prometheus and promtool (history queries), Chromium (the review page).
# Idempotent: does nothing when everything is already there. The tests start their own
# throw-away servers on loopback (tests/pg_server.py, tests/prom_server.py); nothing here
# starts a daemon.
set -euo pipefail
need=()
for pkg in "$@"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
