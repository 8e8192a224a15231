#!/usr/bin/env bash
# Re-resolve the dependency set from pyproject.toml into requirements.lock (run after changing
# dependencies; the cached virtualenv is keyed on both files, so the next `make` rebuilds it).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q ".[dev]"
{
  echo "# Exact versions installed by make/.ci/run (generated with scripts/lock-deps.sh from pyproject.toml)."
  "$tmp/venv/bin/pip" freeze --all --exclude-editable | grep -vE "^(ecgstream|pip)[= @]"
} > requirements.lock
