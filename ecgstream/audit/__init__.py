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

from ecgstream.audit._needles import PATIENT_REF_PATTERN, Needles, workload_identifiers
from ecgstream.audit._report import AuditReport, Finding, merge
from ecgstream.audit._samples import SampleWindows
from ecgstream.audit._sources import (
    dead_letter_texts,
    scan_exposition,
    scan_log_roots,
    scan_prometheus,
    scan_texts,
)

__all__ = [
    "PATIENT_REF_PATTERN",
    "AuditReport",
    "Finding",
    "Needles",
    "SampleWindows",
    "dead_letter_texts",
    "merge",
    "scan_exposition",
    "scan_log_roots",
    "scan_prometheus",
    "scan_texts",
    "workload_identifiers",
]
