#!/usr/bin/env bash
# Make .venv/ this checkout's Python environment, over a shared one with requirements.lock.
#
# The dependencies (torch, Ray, ... ~5 GB) live in a virtualenv in a cache keyed on the
# dependency files and the Python version, so a second checkout, or CI on a fresh clone of the
# same dependencies, installs nothing. The project itself is *not* in it: each checkout gets its
# own small .venv (a venv whose site-packages chain to the shared ones, the project installed
# editable into it, and the shared tools re-bound to its interpreter), so two checkouts side by
# side each run their own code, and deleting one never breaks the other.
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
shared="$cache/$key"

if [ ! -f "$shared/.complete" ]; then
  echo "==> creating the Python environment $shared (first run only; torch is large)"
  rm -rf "$shared"
  mkdir -p "$cache"
  "$python" -m venv "$shared"
  "$shared/bin/python" -m pip install --disable-pip-version-check -q --progress-bar on \
      -r requirements.lock
  touch "$shared/.complete"
fi
# earlier versions of this script installed the project into the shared environment, pointing
# it at whichever checkout ran last: take that out (once)
if [ -f "$shared/.checkout" ]; then
  "$shared/bin/python" -m pip uninstall --disable-pip-version-check -q -y ecgstream || true
  rm -f "$shared/.checkout"
fi

# this checkout's environment: rebuilt when the shared one or pyproject (entry points) changes
stamp="$shared $(sha256sum pyproject.toml | cut -c1-16)"
if [ -L .venv ] || [ "$(cat .venv/.ecgstream-env 2>/dev/null)" != "$stamp" ]; then
  rm -rf .venv
  "$shared/bin/python" -m venv --without-pip .venv
  site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
  shared_site=$("$shared/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
  # the shared packages after this environment's own (addsitedir also runs their .pth files)
  echo "import site; site.addsitedir('$shared_site')" > "$site/_ecgstream_shared.pth"
  "$shared/bin/python" -m pip --python .venv/bin/python install --disable-pip-version-check \
      -q --no-deps --no-build-isolation --config-settings editable_mode=compat -e "$repo"
  # the shared tools (pytest, ray, ruff, ...) run by this checkout's interpreter: scripts get
  # its shebang, binaries are linked
  for tool in "$shared"/bin/*; do
    name=$(basename "$tool")
    case "$name" in python*|pip*|activate*|Activate*|deactivate) continue ;; esac
    [ -e ".venv/bin/$name" ] && continue
    if [ "$(head -c 256 "$tool" | tr -d '\0' | head -n1)" = "#!$shared/bin/python" ]; then
      { echo "#!$repo/.venv/bin/python"; tail -n +2 "$tool"; } > ".venv/bin/$name"
      chmod +x ".venv/bin/$name"
    else
      ln -s "$tool" ".venv/bin/$name"
    fi
  done
  echo "$stamp" > .venv/.ecgstream-env
fi
