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


def _domain_modules_importing(forbidden: set[str]) -> dict[str, list[str]]:
    offenders = {}
    for path in (ROOT / "ecgstream").rglob("*.py"):
        relative = path.relative_to(ROOT / "ecgstream")
        if relative.parts[0] in IO_SUBPACKAGES:
            continue
        bad = _imported_roots(path) & forbidden
        if bad:
            offenders[str(relative)] = sorted(bad)
    return offenders


def test_domain_modules_import_no_service_client() -> None:
    assert _domain_modules_importing(SERVICE_CLIENTS) == {}


def test_domain_modules_import_no_service_package() -> None:
    assert _domain_modules_importing({"cluster", "actors", "serve_app", "tuning"}) == {}
