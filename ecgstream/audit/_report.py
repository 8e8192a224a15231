"""What an audit reports: findings (already redacted and cut), what was scanned, and a collector
that deduplicates and bounds the findings of one source."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from ecgstream.audit._needles import Needles

Kind = Literal["identifier", "samples"]

EXCERPT_CHARS = 120
MAX_FINDINGS_PER_SOURCE = 100  # beyond this, findings of a source are counted, not listed


@dataclass(frozen=True)
class Finding:
    source: str  # a file, a URL, a text's name
    location: str  # file:line, metric and label, series and label (redacted)
    kind: Kind
    excerpt: str  # redacted, <= 120 characters


@dataclass
class AuditReport:
    findings: list[Finding] = field(default_factory=list)
    scanned: dict[str, int] = field(default_factory=dict)  # files, lines, series, ... counted
    suppressed: int = 0  # findings over the per-source limit: counted, not listed

    @property
    def ok(self) -> bool:
        return not self.findings and not self.suppressed

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "findings": [asdict(f) for f in self.findings],
            "suppressed": self.suppressed,
            "scanned": dict(sorted(self.scanned.items())),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)


def merge(*reports: AuditReport) -> AuditReport:
    out = AuditReport()
    for report in reports:
        out.findings.extend(report.findings)
        out.suppressed += report.suppressed
        for key, value in report.scanned.items():
            out.scanned[key] = out.scanned.get(key, 0) + value
    return out


class Collector:
    """Findings of one scan: redacted, deduplicated, at most `limit` listed per source."""

    def __init__(self, needles: Needles, limit: int = MAX_FINDINGS_PER_SOURCE) -> None:
        self.needles = needles
        self.limit = limit
        self.report = AuditReport()
        self._seen: set[Finding] = set()
        self._per_source: dict[str, int] = {}

    def count(self, key: str, n: int = 1) -> None:
        self.report.scanned[key] = self.report.scanned.get(key, 0) + n

    def add(self, source: str, location: str, kind: Kind, excerpt: str) -> None:
        finding = Finding(
            cut(self.needles.redact(source), 200),
            cut(self.needles.redact(location), 200),
            kind,
            excerpt,
        )
        if finding in self._seen:
            return
        self._seen.add(finding)
        listed = self._per_source.get(source, 0)
        if listed >= self.limit:
            self.report.suppressed += 1
            return
        self._per_source[source] = listed + 1
        self.report.findings.append(finding)


def cut(text: str, limit: int, focus: int = 0) -> str:
    text = "".join(c if c.isprintable() else " " for c in text).strip()
    if len(text) <= limit:
        return text
    start = max(0, min(focus - limit // 3, len(text) - limit))
    piece = text[start : start + limit]
    if start > 0:
        piece = "…" + piece[1:]
    if start + limit < len(text):
        piece = piece[:-1] + "…"
    return piece
