"""Where the local stack keeps its state: one directory (default `.ecgstream/`) holding every
component's data, config, log and pid file, so `rm -rf` of it is a full reset."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StatePaths:
    root: Path

    def component_dir(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def pid_file(self, name: str) -> Path:
        return self.root / "run" / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.root / "logs" / f"{name}.log"

    def short_tmp_dir(self, name: str, prefix: str = "ecgstream") -> Path:
        """A short path under /tmp unique to this state dir.

        Ray puts unix sockets under its temp dir and socket paths are limited to 107 bytes, so
        Ray's temp dir cannot live under an arbitrarily deep state dir.
        """
        digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:10]
        return Path("/tmp") / f"{prefix}-{name}-{digest}"


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    pid: int | None
    endpoint: str
    healthy: bool
    detail: str
    log_file: Path | None = None
