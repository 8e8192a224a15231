"""The layering rules of docs/decisions.md, checked on the source rather than trusted."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICE_CLIENTS = {"ray", "aiokafka", "asyncpg"}
# subpackages of `ecgstream` that talk to services; everything else in it is domain code
IO_SUBPACKAGES = {"cli", "io", "tools"}


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_domain_modules_import_no_service_client() -> None:
    offenders = {}
    for path in (ROOT / "ecgstream").rglob("*.py"):
        relative = path.relative_to(ROOT / "ecgstream")
        if relative.parts[0] in IO_SUBPACKAGES:
            continue
        bad = _imported_roots(path) & SERVICE_CLIENTS
        if bad:
            offenders[str(relative)] = sorted(bad)
    assert offenders == {}


def test_domain_modules_import_no_service_package() -> None:
    offenders = {}
    for path in (ROOT / "ecgstream").rglob("*.py"):
        relative = path.relative_to(ROOT / "ecgstream")
        if relative.parts[0] in IO_SUBPACKAGES:
            continue
        bad = _imported_roots(path) & {"cluster", "actors", "serve_app", "tuning"}
        if bad:
            offenders[str(relative)] = sorted(bad)
    assert offenders == {}
