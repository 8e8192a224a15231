"""How one text is read: line by line, identifiers, runs of numbers (an array print wrapped over
lines included) and blobs."""

from __future__ import annotations

import itertools
import math
import re
from typing import NamedTuple

from ecgstream.audit._needles import replace_spans
from ecgstream.audit._report import EXCERPT_CHARS, Collector, cut
from ecgstream.audit._samples import WINDOW_MAX

# numbers are separated by blanks, commas, semicolons and brackets
_SEP = r"[\s,;\[\](){}]"
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_NUM_TOKEN = rf"{_NUMBER.pattern}(?={_SEP}|$)"
# two or more numeric tokens in a row (a token is all of the text between separators)
_NUMBER_RUN = re.compile(rf"(?:^|(?<={_SEP})){_NUM_TOKEN}(?:{_SEP}+{_NUM_TOKEN})+")
# "(ConsumerActor pid=123, ip=10.0.0.2) " in front of a worker's printed line
_RAY_PREFIX = re.compile(r"^\s*\((?:[^()]*? )?pid=\d+(?:, ip=[^()]*)?\)")
_SEPS = " \t\r\n,;[](){}"
_DIGITS = str.maketrans("", "", "0123456789")


class _Run(NamedTuple):
    start: int
    end: int
    tokens: list[str]
    at_line_start: bool  # nothing but separators (and a Ray worker prefix) before it


class TextScanner:
    """Checks the lines of one text. A run of numbers that ends a line goes on into the next
    line when that one starts with numbers: an array print wrapped over several lines."""

    def __init__(self, collector: Collector, source: str) -> None:
        self.c = collector
        self.needles = collector.needles
        self.source = source
        self._carry: list[str] = []  # the numbers the previous line ended with
        self._carry_flagged = False  # that run was reported already

    def line(self, text: str, location: str) -> None:
        needles = self.needles
        id_spans = needles.identifier_spans(text)
        runs = _number_runs(text)
        blobs = needles.blob_spans(text)

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
            self._carry = carried[-2 * max(needles.min_run, WINDOW_MAX) :]
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
        excerpt = cut(replace_spans(text, placeholders), EXCERPT_CHARS, focus=first)
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
