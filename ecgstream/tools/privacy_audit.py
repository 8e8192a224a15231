"""Privacy audit: no patient or device identifier and no raw sample outside Kafka and PostgreSQL.

Device ids and patient refs may travel only in the designated Kafka topics and database tables.
This scanner looks for them, and for raw ECG samples, everywhere else an operator sees:

- log files (the local stack's `<state_dir>/logs`, Ray's `<temp dir>/session_*/logs`):
  `scan_log_roots`, every text file under the roots, line by line (binary files are skipped);
- a Prometheus text exposition (ecgstream's `/metrics`, Ray's metrics endpoint): metric names,
  label names and label values, `scan_exposition`;
- a Prometheus server's series and label values through its HTTP API: `scan_prometheus`;
- any other named texts, such as dead-letter header summaries: `scan_texts`
  (`dead_letter_texts` builds them from consumed Kafka records).

What counts as a leak is given by `Needles`: exact identifier strings and regexes (caller-chosen;
`workload_identifiers` gives the exact ids of a replay and tight patterns for its prefixes), and
for samples a run of >= 16 numbers in one place (a line, or lines an array print wrapped), a
base64/hex blob of >= 256 characters, and, when the workload's sample arrays are given, any 8
consecutive values of them printed as integers (ADC units) or as millivolts (to 3 decimals).

Every finding's excerpt and location are redacted (identifiers become `<id>`, number runs and
blobs a placeholder) and cut to 120 characters, so the report never leaks what it found.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple, Protocol

import numpy as np

Kind = Literal["identifier", "samples"]

EXCERPT_CHARS = 120
DEFAULT_MIN_RUN = 16  # numbers in a row that count as a sample leak
DEFAULT_MIN_BLOB = 256  # characters of base64/hex that count as a sample leak
DEFAULT_WINDOW = 8  # consecutive workload samples that identify a leak exactly
MAX_FINDINGS_PER_SOURCE = 100  # beyond this, findings of a source are counted, not listed
BINARY_PROBE_BYTES = 8192
PATIENT_REF_PATTERN = r"(?<![A-Za-z0-9])pt-[0-9a-f]{12}(?![0-9a-f])"

# numbers are separated by blanks, commas, semicolons and brackets
_SEP = r"[\s,;\[\](){}]"
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_NUM_TOKEN = rf"{_NUMBER.pattern}(?={_SEP}|$)"
# two or more numeric tokens in a row (a token is all of the text between separators)
_NUMBER_RUN = re.compile(rf"(?:^|(?<={_SEP})){_NUM_TOKEN}(?:{_SEP}+{_NUM_TOKEN})+")
_INTEGER = re.compile(r"[-+]?\d{1,18}")
_BLOB = re.compile(r"[A-Za-z0-9+/]{%d,}={0,2}")
# "(ConsumerActor pid=123, ip=10.0.0.2) " in front of a worker's printed line
_RAY_PREFIX = re.compile(r"^\s*\((?:[^()]*? )?pid=\d+(?:, ip=[^()]*)?\)")
_SEPS = " \t\r\n,;[](){}"
_DIGITS = str.maketrans("", "", "0123456789")
_WINDOW_MAX = 64
_MIN_CHANGES = 3  # a window with fewer sample-to-sample changes (a flat line) identifies nothing


# ---------------------------------------------------------------------------------------------
# What to look for


def _trie_regex(words: Iterable[str]) -> str:
    """One regex matching any of `words`, as a trie (fast with thousands of ids)."""
    trie: dict[str, Any] = {}
    for word in words:
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}

    def emit(node: dict[str, Any]) -> str:
        alternatives = [
            re.escape(char) + emit(child) for char, child in sorted(node.items()) if char
        ]
        if not alternatives:
            return ""
        body = alternatives[0] if len(alternatives) == 1 else "(?:" + "|".join(alternatives) + ")"
        return f"(?:{body})?" if "" in node else body

    return emit(trie)


_SALTS = np.arange(1, _WINDOW_MAX + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_SHIFT_A = np.uint64(30)
_SHIFT_B = np.uint64(27)


def _window_hashes(values: np.ndarray, width: int) -> np.ndarray:
    """A 64-bit hash of every window of `width` consecutive int64 values (array arithmetic only,
    so the wrap-around is silent)."""
    v = np.ascontiguousarray(values, dtype=np.int64).view(np.uint64)
    n = len(v) - width + 1
    h = np.zeros(max(n, 0), dtype=np.uint64)
    if n <= 0:
        return h
    for i in range(width):
        x = v[i : i + n] + _SALTS[i]
        x ^= x >> _SHIFT_A
        x *= _MIX1
        x ^= x >> _SHIFT_B
        x *= _MIX2
        h = (h ^ x) * _MIX1 + _SALTS[i]
    return h


def _to_millis(values: np.ndarray) -> np.ndarray:
    return np.rint(np.asarray(values, dtype=np.float64) * 1000.0).astype(np.int64)


@dataclass(frozen=True, eq=False)
class SampleWindows:
    """Hashes of every `width` consecutive samples of the workload: as ADC integers and as
    millivolts to 3 decimals. Flat windows (fewer than 3 changes from one sample to the next)
    are left out: a run of equal numbers in a log identifies nothing."""

    width: int = DEFAULT_WINDOW
    int_keys: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))
    milli_keys: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))

    @classmethod
    def build(
        cls,
        *,
        adc: Iterable[np.ndarray] = (),
        millivolts: Iterable[np.ndarray] = (),
        width: int = DEFAULT_WINDOW,
    ) -> SampleWindows:
        """`adc`: integer arrays (1-D, or 2-D as leads x samples); `millivolts`: float arrays."""
        if not 2 <= width <= len(_SALTS):
            raise ValueError(f"window width must be 2..{len(_SALTS)}")
        ints = [_keys(row, width) for array in adc for row in _rows(array, integer=True)]
        millis = [
            _keys(_to_millis(row), width)
            for array in millivolts
            for row in _rows(array, integer=False)
        ]
        return cls(width, _sorted(ints), _sorted(millis))

    @classmethod
    def from_records(cls, records: Iterable[Any], width: int = DEFAULT_WINDOW) -> SampleWindows:
        """From `EcgRecord`s (or anything with `digital`, `adc_gain`, `adc_baseline`): the
        ADC values and the millivolts the stream computes from them."""
        from ecgstream.signal.units import adc_to_millivolts

        records = list(records)
        return cls.build(
            adc=[r.digital for r in records],
            millivolts=[adc_to_millivolts(r.digital, r.adc_gain, r.adc_baseline) for r in records],
            width=width,
        )

    def __len__(self) -> int:
        return len(self.int_keys) + len(self.milli_keys)

    def find(self, tokens: Sequence[str]) -> bool:
        """Whether `tokens` (numbers in a row, as printed) hold a window of the workload."""
        if len(tokens) < self.width:
            return False
        if len(self.int_keys):
            for run in _split_runs([_int_value(t) for t in tokens], self.width):
                if _contains(self.int_keys, _window_hashes(np.array(run), self.width)):
                    return True
        if len(self.milli_keys):
            for run in _split_runs([_milli_value(t) for t in tokens], self.width):
                if _contains(self.milli_keys, _window_hashes(np.array(run), self.width)):
                    return True
        return False


def _rows(array: np.ndarray, integer: bool) -> list[np.ndarray]:
    a = np.asarray(array)
    if integer and not np.issubdtype(a.dtype, np.integer):
        raise ValueError("adc arrays must hold integers; pass floats as millivolts")
    return [a] if a.ndim == 1 else list(a.reshape(-1, a.shape[-1]))


def _keys(row: np.ndarray, width: int) -> np.ndarray:
    """The hashes of the row's windows, less the flat ones."""
    row = np.asarray(row, dtype=np.int64)
    if len(row) < width:
        return np.zeros(0, dtype=np.uint64)
    changes = np.concatenate([[0], np.cumsum(row[1:] != row[:-1])])
    per_window = changes[width - 1 :] - changes[: len(row) - width + 1]
    return _window_hashes(row, width)[per_window >= _MIN_CHANGES]


def _sorted(parts: list[np.ndarray]) -> np.ndarray:
    # sorted, duplicates kept: numpy's unique hashes and is many times slower on millions
    return np.sort(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.uint64)


def _contains(sorted_keys: np.ndarray, hashes: np.ndarray) -> bool:
    index = np.searchsorted(sorted_keys, hashes).clip(max=len(sorted_keys) - 1)
    return bool(np.any(sorted_keys[index] == hashes))


def _int_value(token: str) -> int | None:
    return int(token) if _INTEGER.fullmatch(token) else None


def _milli_value(token: str) -> int | None:
    try:
        value = float(token) * 1000.0
    except ValueError:
        return None
    return round(value) if math.isfinite(value) and abs(value) < 1e15 else None


def _split_runs(values: list[int | None], width: int) -> Iterator[list[int]]:
    run: list[int] = []
    for value in [*values, None]:
        if value is None:
            if len(run) >= width:
                yield run
            run = []
        else:
            run.append(value)


class _Device(Protocol):
    @property
    def device_id(self) -> str: ...
    @property
    def patient_id(self) -> str: ...


def workload_identifiers(
    devices: Iterable[_Device | str],
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(exact ids, regexes) of a workload's devices: replay `ReplayDevice`s, or device ids (their
    patient refs are then the replay's pseudonyms). The regexes match any device of the same
    prefixes (`<prefix>-NNNN`) and any pseudonymous patient ref (`pt-` + 12 hex digits)."""
    exact: dict[str, None] = {}
    prefixes: set[str] = set()
    for device in devices:
        if isinstance(device, str):
            from ecgstream.io.device_simulator import pseudonym

            device_id, patient_id = device, pseudonym(device)
        else:
            device_id, patient_id = device.device_id, device.patient_id
        exact[device_id] = None
        if patient_id:
            exact[patient_id] = None
        prefix, _, number = device_id.rpartition("-")
        if prefix and number.isdigit():
            prefixes.add(prefix)
    patterns = []
    if prefixes:
        names = "|".join(re.escape(p) for p in sorted(prefixes))
        patterns.append(rf"(?<![A-Za-z0-9])(?:{names})-\d{{4,}}(?![A-Za-z0-9])")
    patterns.append(PATIENT_REF_PATTERN)
    return tuple(exact), tuple(patterns)


@dataclass(frozen=True)
class Needles:
    """What the audit looks for: exact strings, regexes, and (optionally) the workload's samples."""

    exact: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    windows: SampleWindows | None = None
    min_run: int = DEFAULT_MIN_RUN
    min_blob: int = DEFAULT_MIN_BLOB
    _compiled: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)
    _blob: re.Pattern[str] = field(init=False, repr=False, compare=False)
    _any: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "exact", tuple(s for s in self.exact if s))
        compiled = [re.compile(p) for p in self.patterns]
        if self.exact:
            trie = _trie_regex(self.exact)
            compiled.insert(0, re.compile(f"(?<![A-Za-z0-9])(?:{trie})(?![A-Za-z0-9])"))
        object.__setattr__(self, "_compiled", tuple(compiled))
        object.__setattr__(self, "_any", _alternation(compiled))
        object.__setattr__(self, "_blob", re.compile(_BLOB.pattern % self.min_blob))

    @classmethod
    def from_workload(
        cls,
        devices: Iterable[_Device | str],
        *,
        records: Iterable[Any] = (),
        adc: Iterable[np.ndarray] = (),
        millivolts: Iterable[np.ndarray] = (),
        extra_ids: Iterable[str] = (),
        extra_patterns: Iterable[str] = (),
        window: int = DEFAULT_WINDOW,
    ) -> Needles:
        """The needles of a workload: its devices' ids and patient refs (exact and as patterns),
        and, given its records (`EcgRecord`s) or sample arrays, windows of their samples."""
        exact, patterns = workload_identifiers(devices)
        records = list(records)
        adc, millivolts = list(adc), list(millivolts)
        parts = []
        if records:
            parts.append(SampleWindows.from_records(records, window))
        if adc or millivolts:
            parts.append(SampleWindows.build(adc=adc, millivolts=millivolts, width=window))
        windows = parts[0] if len(parts) == 1 else _join(*parts) if parts else None
        return cls(
            exact=(*exact, *extra_ids),
            patterns=(*patterns, *extra_patterns),
            windows=windows,
        )

    # -- matching ------------------------------------------------------------------------------

    def identifier_spans(self, text: str) -> list[tuple[int, int]]:
        if self._any is not None and not self._any.search(text):
            return []
        spans = []
        for pattern in self._compiled:
            spans.extend(m.span() for m in pattern.finditer(text) if m.end() > m.start())
        return spans

    def redact(self, text: str) -> str:
        """`text` with every identifier replaced by `<id>`."""
        return _replace(text, [(a, b, "<id>") for a, b in self.identifier_spans(text)])


def _alternation(patterns: list[re.Pattern[str]]) -> re.Pattern[str] | None:
    """One regex for a quick "any identifier here?" (None where the patterns cannot be joined,
    e.g. one uses a backreference or a global flag)."""
    if len(patterns) < 2 or any(p.groups for p in patterns):
        return None
    try:
        return re.compile("|".join(f"(?:{p.pattern})" for p in patterns))
    except re.error:
        return None


def _join(a: SampleWindows, b: SampleWindows) -> SampleWindows:
    if a.width != b.width:
        raise ValueError("sample windows of different widths")
    return SampleWindows(
        a.width,
        _sorted([a.int_keys, b.int_keys]),
        _sorted([a.milli_keys, b.milli_keys]),
    )


def _replace(text: str, spans: list[tuple[int, int, str]]) -> str:
    """Replace spans (possibly overlapping) by their placeholders; overlaps merge."""
    if not spans:
        return text
    merged: list[list[Any]] = []
    for start, end, label in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
            if label == "<id>":
                merged[-1][2] = label
        else:
            merged.append([start, end, label])
    out, last = [], 0
    for start, end, label in merged:
        out.append(text[last:start])
        out.append(label)
        last = end
    out.append(text[last:])
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# Findings and the report


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


class _Collector:
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
            _cut(self.needles.redact(source), 200),
            _cut(self.needles.redact(location), 200),
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


def _cut(text: str, limit: int, focus: int = 0) -> str:
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


class _Run(NamedTuple):
    start: int
    end: int
    tokens: list[str]
    at_line_start: bool  # nothing but separators (and a Ray worker prefix) before it


class _TextScanner:
    """Checks the lines of one text. A run of numbers that ends a line goes on into the next
    line when that one starts with numbers: an array print wrapped over several lines."""

    def __init__(self, collector: _Collector, source: str) -> None:
        self.c = collector
        self.needles = collector.needles
        self.source = source
        self._carry: list[str] = []  # the numbers the previous line ended with
        self._carry_flagged = False  # that run was reported already

    def line(self, text: str, location: str) -> None:
        needles = self.needles
        id_spans = needles.identifier_spans(text)
        runs = _number_runs(text)
        blobs = (
            [m.span() for m in needles._blob.finditer(text)]
            if len(text) >= needles.min_blob
            else []
        )

        continued = bool(
            self._carry and runs and runs[0].at_line_start and len(runs[0].tokens) >= 2
        )
        sample_spans: list[tuple[int, int]] = []
        first_tokens = runs[0].tokens if runs else []
        for i, run in enumerate(runs):
            if i == 0 and continued:
                first_tokens = [*self._carry, *run.tokens]
                if not self._carry_flagged and self._is_samples(first_tokens):
                    sample_spans.append((run.start, run.end))
            elif self._is_samples(run.tokens):
                sample_spans.append((run.start, run.end))

        last = runs[-1] if runs else None
        if last is not None and len(last.tokens) >= 2 and last.end == len(text.rstrip(_SEPS)):
            carried = first_tokens if len(runs) == 1 else last.tokens
            self._carry = carried[-2 * max(needles.min_run, _WINDOW_MAX) :]
            self._carry_flagged = (last.start, last.end) in sample_spans or (
                len(runs) == 1 and continued and self._carry_flagged
            )
        else:
            self._carry, self._carry_flagged = [], False

        if not id_spans and not sample_spans and not blobs:
            return
        placeholders = [(a, b, "<id>") for a, b in id_spans]
        placeholders += [(a, b, f"<{b - a} chars of samples>") for a, b in sample_spans]
        placeholders += [(a, b, f"<{b - a} chars of base64/hex>") for a, b in blobs]
        # every run of 8 or more numbers is hidden as well, reported or not
        placeholders += [(r.start, r.end, "<numbers>") for r in runs if len(r.tokens) >= 8]
        first = min(a for a, _, _ in placeholders)
        excerpt = _cut(_replace(text, placeholders), EXCERPT_CHARS, focus=first)
        if id_spans:
            self.c.add(self.source, location, "identifier", excerpt)
        if sample_spans or blobs:
            self.c.add(self.source, location, "samples", excerpt)

    def _is_samples(self, tokens: list[str]) -> bool:
        needles = self.needles
        if len(tokens) >= needles.min_run and not _arithmetic(tokens):
            return True
        return needles.windows is not None and needles.windows.find(tokens)


def _number_runs(text: str) -> list[_Run]:
    """Each run of two or more numeric tokens in `text`."""
    if len(text) - len(text.translate(_DIGITS)) < 2:
        return []
    prefix = _RAY_PREFIX.match(text)
    offset = prefix.end() if prefix else 0
    runs = []
    for match in _NUMBER_RUN.finditer(text, offset):
        start, end = match.span()
        at_line_start = not text[offset:start].strip(_SEPS)
        runs.append(_Run(start, end, _NUMBER.findall(match.group()), at_line_start))
    return runs


def _arithmetic(tokens: list[str]) -> bool:
    """A range such as partition or port numbers (equal steps), not a signal."""
    try:
        values = [float(t) for t in tokens]
    except ValueError:
        return False
    step = values[1] - values[0]
    return step != 0 and all(
        math.isclose(b - a, step, rel_tol=1e-9, abs_tol=1e-9) for a, b in itertools.pairwise(values)
    )


# ---------------------------------------------------------------------------------------------
# Scans


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
    c = _Collector(needles, limit)
    for _, path in _text_files(roots):
        if needles.identifier_spans(str(path)):
            c.add(str(path), str(path), "identifier", _cut(needles.redact(path.name), 120))
        try:
            if _is_binary(path):
                c.count("binary_files_skipped")
                continue
            scanner = _TextScanner(c, str(path))
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
    c = _Collector(needles, limit)
    for name, text in named_texts.items():
        scanner = _TextScanner(c, name)
        lines = text.splitlines()
        for number, line in enumerate(lines, start=1):
            scanner.line(line, f"{name}:{number}")
        c.count("texts")
        c.count("text_lines", len(lines))
    return c.report


def _check_value(c: _Collector, source: str, location: str, value: str) -> None:
    """One metric/label/series string: an identifier anywhere in it, or samples."""
    _TextScanner(c, source).line(value, location)


def scan_exposition(
    text: str, source: str, needles: Needles, *, limit: int = MAX_FINDINGS_PER_SOURCE
) -> AuditReport:
    """A Prometheus text exposition: every metric name, label name and label value. An
    exposition the parser refuses is scanned line by line instead (counted as unparsed)."""
    from prometheus_client.parser import text_string_to_metric_families

    c = _Collector(needles, limit)
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

    c = _Collector(needles, limit)
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
