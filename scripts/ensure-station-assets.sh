#!/usr/bin/env bash
# The central station's front-end pieces (station/web/package-lock.json: uPlot, pinned),
# installed with npm and copied into station/static/vendor/, so the page needs no internet at
# run time. Re-run when the lock file changes; a second run with nothing changed does nothing.
set -euo pipefail
cd "$(dirname "$0")/../station"
vendor=static/vendor
stamp="$vendor/.lock-sha256"
want=$(sha256sum web/package-lock.json | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
if ! command -v npm >/dev/null; then
  echo "npm is needed once for the station's page: apt-get install nodejs npm" >&2
  exit 1
fi
echo "==> installing the station's front-end files (npm ci)"
npm ci --prefix web --no-audit --no-fund --loglevel=error
mkdir -p "$vendor"
cp web/node_modules/uplot/dist/uPlot.iife.min.js web/node_modules/uplot/dist/uPlot.min.css "$vendor/"
cp web/node_modules/uplot/LICENSE "$vendor/uPlot.LICENSE"
echo "$want" > "$stamp"
