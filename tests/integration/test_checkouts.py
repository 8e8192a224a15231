"""Two checkouts side by side each run their own code (scripts/ensure-venv.sh).

The dependencies are shared (one cached environment keyed on the dependency files, so this
installs nothing new); the project is per checkout. Before, the shared environment's editable
install pointed at whichever checkout ran `make` last, so a fresh clone's CI re-pointed the
first checkout's `.venv/bin/ecgstream` at the clone, and broke it when the clone was deleted.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _clone(at: Path) -> Path:
    subprocess.run(["git", "clone", "-q", str(ROOT), str(at)], check=True)
    # the working tree's script (what is being tested), in a clone of the committed code
    shutil.copy2(ROOT / "scripts" / "ensure-venv.sh", at / "scripts" / "ensure-venv.sh")
    subprocess.run([str(at / "scripts" / "ensure-venv.sh")], check=True, capture_output=True)
    return at


def _where(checkout: Path, module: str) -> Path:
    """Where `module` (a package, ecgstream a namespace one) is imported from in a checkout."""
    done = subprocess.run(
        [str(checkout / ".venv/bin/python"), "-c", f"import {module} as m; print(*m.__path__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=checkout.parent,  # not a checkout: `python -c` puts the working directory first
    )
    return Path(done.stdout.strip()).resolve()


def test_two_checkouts_side_by_side_each_run_their_own_code(tmp_path: Path) -> None:
    first, second = _clone(tmp_path / "first"), _clone(tmp_path / "second")
    for checkout in (first, second):
        assert not (checkout / ".venv").is_symlink()
        for module in ("ecgstream", "actors", "cluster", "serve_app", "tuning"):
            assert _where(checkout, module).is_relative_to(checkout.resolve()), module
        # the console scripts and the shared tools run this checkout's interpreter (Ray's
        # workers run the interpreter `ray start` ran under)
        for tool in ("ecgstream", "ray", "pytest"):
            shebang = (checkout / ".venv/bin" / tool).read_text().splitlines()[0]
            assert shebang == f"#!{checkout.resolve()}/.venv/bin/python", (tool, shebang)
        assert not _where(checkout, "torch").is_relative_to(checkout.resolve())  # shared
    shutil.rmtree(first)
    version = subprocess.run(
        [str(second / ".venv/bin/ecgstream"), "--help"], capture_output=True, text=True
    )
    assert version.returncode == 0, version.stderr
    assert _where(ROOT, "ecgstream").is_relative_to(ROOT)  # this checkout is untouched
