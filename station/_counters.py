"""What the station counts (`/api/status`; the tests read it): no patient or bed in any of it."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Counters:
    chunks: int = 0
    beats: int = 0
    alarm_events: int = 0
    rejected: dict[str, int] = field(default_factory=dict)  # reason -> count
    escalations: int = 0
    escalation_failures: int = 0
    hl7_sent: int = 0
    hl7_refused: int = 0
    hl7_retries: int = 0
    pushes: int = 0
    clients: int = 0
    restarts: dict[str, int] = field(default_factory=dict)  # loop -> restarts after a failure
    # seconds from a chunk's Kafka timestamp to the push that carried its points
    push_delays: deque[float] = field(default_factory=lambda: deque(maxlen=5000))

    def reject(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1

    def view(self) -> dict[str, Any]:
        delays = sorted(self.push_delays)

        def pct(q: float) -> float | None:
            return round(delays[min(len(delays) - 1, int(q * len(delays)))], 3) if delays else None

        return {
            "chunks": self.chunks,
            "beats": self.beats,
            "alarm_events": self.alarm_events,
            "rejected": dict(self.rejected),
            "escalations": self.escalations,
            "escalation_failures": self.escalation_failures,
            "hl7_sent": self.hl7_sent,
            "hl7_refused": self.hl7_refused,
            "hl7_retries": self.hl7_retries,
            "pushes": self.pushes,
            "clients": self.clients,
            "restarts": dict(self.restarts),
            "push_delay_s": {"p50": pct(0.5), "p99": pct(0.99), "n": len(delays)},
        }
