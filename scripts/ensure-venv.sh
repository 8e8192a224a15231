#!/usr/bin/env bash
# Make .venv/ point at a virtualenv with exactly requirements.lock installed.
#
# The virtualenv lives in a cache keyed on the dependency files and the Python version, so a
# second `make` (or CI on a fresh clone of the same dependencies) installs nothing. The checkout
# itself is added in "compat" editable mode: a .pth entry for the repo root, re-pointed cheaply
# when a different checkout uses the same cached environment.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd -P)
python=${ECGSTREAM_PYTHON:-python3}
cache=${ECGSTREAM_VENV_CACHE:-$HOME/.cache/ecgstream/venvs}

# the key covers what decides the installed set, not pyproject's tool settings
key=$( { cat requirements.lock; "$python" - <<'PY'
import json, sys, tomllib
with open("pyproject.toml", "rb") as f:
    project = tomllib.load(f)
print(sys.version)
print(json.dumps([project["build-system"], project["project"]["dependencies"],
                  project["project"].get("optional-dependencies")], sort_keys=True))
PY
} | sha256sum | cut -c1-16)
venv="$cache/$key"

if [ ! -f "$venv/.complete" ]; then
  echo "==> creating the Python environment $venv (first run only; torch is large)"
  rm -rf "$venv"
  mkdir -p "$cache"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --disable-pip-version-check -q --progress-bar on \
      -r requirements.lock
  touch "$venv/.complete"
fi

# the editable install is redone when the checkout or pyproject (entry points, packages) changes
checkout="$repo $(sha256sum pyproject.toml | cut -c1-16)"
if [ "$(cat "$venv/.checkout" 2>/dev/null)" != "$checkout" ]; then
  "$venv/bin/python" -m pip install --disable-pip-version-check -q --no-deps \
      --no-build-isolation --config-settings editable_mode=compat -e "$repo"
  echo "$checkout" > "$venv/.checkout"
fi

if [ "$(readlink .venv 2>/dev/null)" != "$venv" ]; then
  rm -rf .venv
  ln -s "$venv" .venv
fi
