"""Where the audit looks: log trees, Prometheus expositions, a Prometheus server's series, and
named texts such as dead-letter summaries."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from ecgstream.audit._needles import Needles
from ecgstream.audit._report import MAX_FINDINGS_PER_SOURCE, AuditReport, Collector, cut, merge
from ecgstream.audit._text_scan import TextScanner

BINARY_PROBE_BYTES = 8192


def _is_binary(path: Path) -> bool:
    with path.open("rb") as f:
        return b"\0" in f.read(BINARY_PROBE_BYTES)


def _text_files(roots: Iterable[Path]) -> Iterator[tuple[Path, Path]]:
    """(root, file) of every regular file under the roots, each once, symlinks not followed."""
    seen: set[Path] = set()
    for root in roots:
        root = Path(root)
        if not root.exists():
            raise FileNotFoundError(f"no such log root: {root}")
        if root.is_file():
            candidates: Iterable[Path] = [root]
        else:
            candidates = (
                Path(d) / name
                for d, dirs, files in os.walk(root)
                if not dirs.sort()  # a stable order
                for name in sorted(files)
            )
        for path in candidates:
            if path.is_symlink() or not path.is_file():
                continue
            real = path.resolve()
            if real not in seen:
                seen.add(real)
                yield root, path


def scan_log_roots(
    roots: Iterable[Path], needles: Needles, *, limit: int = MAX_FINDINGS_PER_SOURCE
) -> AuditReport:
    """Every text file under `roots` (recursively; rotated `.log.1` files included), line by
    line. Files whose first 8 KiB hold a NUL byte are binary and skipped. File names are
    checked for identifiers too. A root that does not exist is an error, not a clean scan."""
    c = Collector(needles, limit)
    for _, path in _text_files(roots):
        if needles.identifier_spans(str(path)):
            c.add(str(path), str(path), "identifier", cut(needles.redact(path.name), 120))
        try:
            if _is_binary(path):
                c.count("binary_files_skipped")
                continue
            scanner = TextScanner(c, str(path))
            with path.open(encoding="utf-8", errors="replace", newline=None) as f:
                lines = 0
                for lines, text in enumerate(f, start=1):
                    scanner.line(text.rstrip("\n"), f"{path}:{lines}")
        except OSError:
            c.count("unreadable_files")
            continue
        c.count("files")
        c.count("lines", lines)
    return c.report


def scan_texts(
    named_texts: Mapping[str, str], needles: Needles, *, limit: int = MAX_FINDINGS_PER_SOURCE
) -> AuditReport:
    """Named texts (dead-letter summaries, command output): each line like a log line."""
    c = Collector(needles, limit)
    for name, text in named_texts.items():
        scanner = TextScanner(c, name)
        lines = text.splitlines()
        for number, line in enumerate(lines, start=1):
            scanner.line(line, f"{name}:{number}")
        c.count("texts")
        c.count("text_lines", len(lines))
    return c.report


def _check_value(c: Collector, source: str, location: str, value: str) -> None:
    """One metric/label/series string: an identifier anywhere in it, or samples."""
    TextScanner(c, source).line(value, location)


def scan_exposition(
    text: str, source: str, needles: Needles, *, limit: int = MAX_FINDINGS_PER_SOURCE
) -> AuditReport:
    """A Prometheus text exposition: every metric name, label name and label value. An
    exposition the parser refuses is scanned line by line instead (counted as unparsed)."""
    from prometheus_client.parser import text_string_to_metric_families

    c = Collector(needles, limit)
    try:
        families = list(text_string_to_metric_families(text))
    except (ValueError, TypeError, IndexError):
        c.count("unparsed_expositions")
        return merge(c.report, scan_texts({source: text}, needles, limit=limit))
    c.count("expositions")
    for family in families:
        _check_value(c, source, f"metric {family.name} (help)", family.documentation)
        for sample in family.samples:
            c.count("metric_samples")
            _check_value(c, source, f"metric {sample.name} (name)", sample.name)
            for name, value in sample.labels.items():
                c.count("label_values")
                location = f"metric {sample.name} label {name}"
                _check_value(c, source, location + " (name)", name)
                _check_value(c, source, location, value)
    return c.report


def scan_prometheus(
    url: str,
    needles: Needles,
    *,
    timeout_s: float = 30.0,
    limit: int = MAX_FINDINGS_PER_SOURCE,
) -> AuditReport:
    """A Prometheus server's stored series (`/api/v1/series`, all of them) and every label's
    values (`/api/v1/labels`, `/api/v1/label/<name>/values`), over its whole retention."""
    import httpx

    c = Collector(needles, limit)
    base = url.rstrip("/")
    with httpx.Client(timeout=timeout_s) as client:

        def get(path: str, params: Mapping[str, str] | None = None) -> Any:
            response = client.get(base + path, params=params)
            response.raise_for_status()
            body = response.json()
            if body.get("status") != "success":
                raise RuntimeError(f"Prometheus {path}: {body.get('error', body)}")
            return body["data"]

        for series in get("/api/v1/series", {"match[]": '{__name__=~".+"}'}):
            c.count("series")
            metric = series.get("__name__", "?")
            for name, value in series.items():
                location = f"series {metric} label {name}"
                _check_value(c, base, location + " (name)", name)
                _check_value(c, base, location, value)
        for name in get("/api/v1/labels"):
            c.count("label_names")
            _check_value(c, base, f"label {name} (name)", name)
            for value in get(f"/api/v1/label/{name}/values"):
                c.count("label_values")
                _check_value(c, base, f"label {name} values", value)
    return c.report


class _KafkaRecord(Protocol):
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes | None]] | None: ...


def dead_letter_texts(records: Iterable[_KafkaRecord], topic: str = "deadletter") -> dict[str, str]:
    """The operator-facing summary of dead-letter records (their headers: reason, detail,
    source, truncated), one text per record, for `scan_texts`. The payload, the original
    message, belongs to the topic and is not part of the summary."""
    texts = {}
    for record in records:
        lines = [
            f"{name}={value.decode('utf-8', 'replace') if value is not None else ''}"
            for name, value in record.headers or ()
        ]
        texts[f"{topic}/{record.partition}/{record.offset}"] = "\n".join(lines)
    return texts
