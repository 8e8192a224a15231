"""What the audit looks for: exact identifiers, identifier patterns, and the workload's samples;
and how a text is redacted so that a report never repeats what it found."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ecgstream.audit._samples import DEFAULT_WINDOW, SampleWindows, joined

DEFAULT_MIN_RUN = 16  # numbers in a row that count as a sample leak
DEFAULT_MIN_BLOB = 256  # characters of base64/hex that count as a sample leak
PATIENT_REF_PATTERN = r"(?<![A-Za-z0-9])pt-[0-9a-f]{12}(?![0-9a-f])"
_BLOB = re.compile(r"[A-Za-z0-9+/]{%d,}={0,2}")


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
        windows = parts[0] if len(parts) == 1 else joined(*parts) if parts else None
        return cls(
            exact=(*exact, *extra_ids),
            patterns=(*patterns, *extra_patterns),
            windows=windows,
        )

    # -- matching ------------------------------------------------------------------------------

    def identifier_spans(self, text: str) -> list[tuple[int, int]]:
        if self._any is not None and not self._any.search(text):
            return []
        spans: list[tuple[int, int]] = []
        for pattern in self._compiled:
            spans.extend(m.span() for m in pattern.finditer(text) if m.end() > m.start())
        return spans

    def blob_spans(self, text: str) -> list[tuple[int, int]]:
        """Runs of base64/hex characters long enough to hold samples."""
        if len(text) < self.min_blob:
            return []
        return [m.span() for m in self._blob.finditer(text)]

    def redact(self, text: str) -> str:
        """`text` with every identifier replaced by `<id>`."""
        return replace_spans(text, [(a, b, "<id>") for a, b in self.identifier_spans(text)])


def _alternation(patterns: list[re.Pattern[str]]) -> re.Pattern[str] | None:
    """One regex for a quick "any identifier here?" (None where the patterns cannot be joined,
    e.g. one uses a backreference or a global flag)."""
    if len(patterns) < 2 or any(p.groups for p in patterns):
        return None
    try:
        return re.compile("|".join(f"(?:{p.pattern})" for p in patterns))
    except re.error:
        return None


def replace_spans(text: str, spans: list[tuple[int, int, str]]) -> str:
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
