"""The model registry: versions with their lineage in PostgreSQL, artifacts in an immutable store.

A version is registered once. Its artifact directory is copied into the store as
`<store>/<version>/` and made read-only; the registry records a sha256 over all of its files, and
`artifact_dir` checks it again before anything serves the version. Aliases (`production`,
`staging`, `shadow`) point at versions; every change of an alias is kept in a history, which is
what `rollback` reads, and every release decision is stored with its reasons.
"""

from __future__ import annotations

import builtins  # `list` inside Registry is its method: annotations there name the builtin
import contextlib
import hashlib
import json
import math
import shutil
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np

from ecgstream.errors import ConfigurationError
from ecgstream.settings import Settings

ALIASES = ("production", "staging", "shadow")
ARTIFACT_FILES = ("artifact.json", "model.pt", "model_card.json")


@dataclass(frozen=True)
class ModelVersion:
    version: str
    artifact_sha256: str
    location: Path
    data_fingerprint: str | None
    code_version: str | None
    hyperparameters: dict[str, Any]
    metrics: dict[str, Any]
    produced_by: str
    created_at: datetime
    aliases: tuple[str, ...] = ()

    def summary(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "aliases": list(self.aliases),
            "created_at": self.created_at.isoformat(timespec="seconds"),
            "produced_by": self.produced_by,
            "artifact_sha256": self.artifact_sha256,
            "location": str(self.location),
            "data_fingerprint": self.data_fingerprint,
            "code_version": self.code_version,
            "hyperparameters": self.hyperparameters,
            "metrics": self.metrics,
        }


@dataclass(frozen=True)
class Decision:
    run_id: str
    version: str | None
    step: str
    decision: str
    reasons: list[str]
    decided_at: datetime
    metrics: dict[str, Any] = field(default_factory=dict)  # the evidence it was decided on


def to_jsonb(value: Any) -> str:
    """JSON for a jsonb column: an undefined metric (NaN, e.g. +P of a class never predicted)
    becomes null, which PostgreSQL accepts and every reader understands."""

    def clean(item: Any) -> Any:
        if isinstance(item, np.generic):
            item = item.item()
        if isinstance(item, float) and not math.isfinite(item):
            return None
        if isinstance(item, dict):
            return {str(k): clean(v) for k, v in item.items()}
        if isinstance(item, list | tuple):
            return [clean(v) for v in item]
        return item

    return json.dumps(clean(value), default=str, allow_nan=False)


def artifact_sha256(path: Path) -> str:
    """One digest over the artifact's files (names and contents)."""
    digest = hashlib.sha256()
    for name in ARTIFACT_FILES:
        file = path / name
        if not file.exists():
            raise ConfigurationError(f"{path} is not a model artifact (missing {name})")
        digest.update(name.encode())
        digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


def _make_read_only(path: Path) -> None:
    for file in path.iterdir():
        file.chmod(0o444)
    path.chmod(0o555)


def _remove_store_dir(path: Path) -> None:
    path.chmod(0o755)
    for file in path.iterdir():
        file.chmod(0o644)
    shutil.rmtree(path)


def _row_to_version(row: asyncpg.Record, aliases: Sequence[str]) -> ModelVersion:
    return ModelVersion(
        version=row["version"],
        artifact_sha256=row["artifact_sha256"],
        location=Path(row["location"]),
        data_fingerprint=row["data_fingerprint"],
        code_version=row["code_version"],
        hyperparameters=json.loads(row["hyperparameters"]),
        metrics=json.loads(row["metrics"]),
        produced_by=row["produced_by"],
        created_at=row["created_at"],
        aliases=tuple(sorted(aliases)),
    )


class Registry:
    """Registry operations on one PostgreSQL connection (each write is one transaction)."""

    def __init__(self, conn: asyncpg.Connection, store: Path) -> None:
        self._conn = conn
        self.store = store

    @property
    def connection(self) -> asyncpg.Connection:
        """For reports that join the registry with results (e.g. the shadow comparison)."""
        return self._conn

    # -- versions ----------------------------------------------------------------------------

    async def register(
        self,
        artifact: Path,
        produced_by: str,
        metrics: dict[str, Any] | None = None,
        extra_files: dict[str, bytes] | None = None,
    ) -> ModelVersion:
        """Copy the artifact into the store and record it. Registering the same artifact again
        returns the existing version; a different artifact under a known version is refused."""
        card = json.loads((artifact / "model_card.json").read_text())
        manifest = json.loads((artifact / "artifact.json").read_text())
        version = manifest["version"]
        digest = artifact_sha256(artifact)
        existing = await self.get(version)
        if existing is not None:
            if existing.artifact_sha256 != digest:
                raise ConfigurationError(
                    f"{version} is registered with different contents; artifacts are immutable"
                )
            return existing
        target = self.store / version
        if target.exists() and artifact_sha256(target) != digest:
            # a copy left by a registration that failed before its row was written: nothing
            # refers to it, so it is replaced
            _remove_store_dir(target)
        if not target.exists():
            staging = self.store / f".{version}.incoming"
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            for name in ARTIFACT_FILES:
                shutil.copy2(artifact / name, staging / name)
            for name, content in (extra_files or {}).items():
                (staging / name).write_bytes(content)
            _make_read_only(staging)
            staging.rename(target)
        if artifact_sha256(target) != digest:
            raise ConfigurationError(f"{target} holds other contents than {artifact}")
        await self._conn.execute(
            """INSERT INTO model_versions (version, artifact_sha256, location, data_fingerprint,
                   code_version, hyperparameters, metrics, produced_by)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
            version,
            digest,
            str(target),
            card.get("data", {}).get("fingerprint_sha256"),
            card.get("code_version"),
            to_jsonb(card.get("hyperparameters", {})),
            to_jsonb({**card.get("metrics", {}), **(metrics or {})}),
            produced_by,
        )
        registered = await self.get(version)
        assert registered is not None
        return registered

    async def add_metrics(self, version: str, split: str, metrics: dict[str, Any]) -> None:
        """Metrics measured after registration (e.g. the holdout gate's) join the version's."""
        await self._conn.execute(
            "UPDATE model_versions SET metrics = metrics || $2::jsonb WHERE version = $1",
            version,
            to_jsonb({split: metrics}),
        )

    async def get(self, version: str) -> ModelVersion | None:
        row = await self._conn.fetchrow("SELECT * FROM model_versions WHERE version = $1", version)
        if row is None:
            return None
        aliases = await self._conn.fetch(
            "SELECT alias FROM model_aliases WHERE version = $1", version
        )
        return _row_to_version(row, [a["alias"] for a in aliases])

    async def list(self) -> list[ModelVersion]:
        rows = await self._conn.fetch("SELECT * FROM model_versions ORDER BY created_at, version")
        aliases: dict[str, list[str]] = {}
        for a in await self._conn.fetch("SELECT alias, version FROM model_aliases"):
            aliases.setdefault(a["version"], []).append(a["alias"])
        return [_row_to_version(r, aliases.get(r["version"], [])) for r in rows]

    async def artifact_dir(self, version: str) -> Path:
        """The stored artifact of a version, checked against the recorded digest."""
        found = await self.get(version)
        if found is None:
            raise ConfigurationError(f"no model version {version!r} in the registry")
        if artifact_sha256(found.location) != found.artifact_sha256:
            raise ConfigurationError(
                f"the stored artifact of {version} at {found.location} was modified"
            )
        return found.location

    # -- aliases -----------------------------------------------------------------------------

    async def alias(self, alias: str) -> str | None:
        _check_alias(alias)
        return await self._conn.fetchval(
            "SELECT version FROM model_aliases WHERE alias = $1", alias
        )

    async def set_alias(self, alias: str, version: str | None, reason: str) -> str | None:
        """Point `alias` at `version` (None clears it); returns the version it pointed at."""
        _check_alias(alias)
        async with self._conn.transaction():
            previous = await self._conn.fetchval(
                "SELECT version FROM model_aliases WHERE alias = $1 FOR UPDATE", alias
            )
            if version is None:
                await self._conn.execute("DELETE FROM model_aliases WHERE alias = $1", alias)
            else:
                await self._conn.execute(
                    """INSERT INTO model_aliases (alias, version) VALUES ($1, $2)
                       ON CONFLICT (alias) DO UPDATE SET version = $2, updated_at = now()""",
                    alias,
                    version,
                )
            await self._conn.execute(
                """INSERT INTO model_alias_history (alias, version, previous, reason)
                   VALUES ($1, $2, $3, $4)""",
                alias,
                version,
                previous,
                reason,
            )
        return previous

    async def production_lineage(self) -> builtins.list[str | None]:
        """The versions production went through that a rollback can return to, oldest first;
        None is the shipped default model (production before the first promotion). A rollback
        pops the current version, so rolling back twice goes back two promotions."""
        rows = await self._conn.fetch(
            """SELECT version, reason FROM model_alias_history WHERE alias = 'production'
               ORDER BY id"""
        )
        lineage: list[str | None] = [None]
        for row in rows:
            if row["reason"] == "rollback":
                if len(lineage) > 1:
                    lineage.pop()
            else:
                lineage.append(row["version"])
        return lineage

    async def alias_history(self, limit: int = 50) -> builtins.list[dict[str, Any]]:
        rows = await self._conn.fetch(
            "SELECT * FROM model_alias_history ORDER BY id DESC LIMIT $1", limit
        )
        return [
            {
                "alias": r["alias"],
                "version": r["version"],
                "previous": r["previous"],
                "reason": r["reason"],
                "changed_at": r["changed_at"].isoformat(timespec="seconds"),
            }
            for r in rows
        ]

    # -- decisions ---------------------------------------------------------------------------

    async def record_decision(
        self,
        run_id: str,
        version: str | None,
        step: str,
        passed: bool,
        reasons: Sequence[str],
        metrics: dict[str, Any] | None = None,
    ) -> None:
        await self._conn.execute(
            """INSERT INTO release_decisions (run_id, version, step, decision, reasons, metrics)
               VALUES ($1, $2, $3, $4, $5, $6)""",
            run_id,
            version,
            step,
            "pass" if passed else "fail",
            to_jsonb(list(reasons)),
            to_jsonb(metrics or {}),
        )

    async def decisions(self, version: str) -> builtins.list[Decision]:
        rows = await self._conn.fetch(
            "SELECT * FROM release_decisions WHERE version = $1 ORDER BY id", version
        )
        return [
            Decision(
                r["run_id"],
                r["version"],
                r["step"],
                r["decision"],
                json.loads(r["reasons"]),
                r["decided_at"],
                json.loads(r["metrics"]) if r["metrics"] else {},
            )
            for r in rows
        ]


def _check_alias(alias: str) -> None:
    if alias not in ALIASES:
        raise ConfigurationError(f"unknown alias {alias!r}; one of {', '.join(ALIASES)}")


@contextlib.asynccontextmanager
async def open_registry(settings: Settings) -> AsyncIterator[Registry]:
    conn = await asyncpg.connect(settings.postgres_dsn())
    try:
        yield Registry(conn, settings.artifact_store)
    finally:
        await conn.close()
