"""What every release step decides, and the report `ecgstream release run --json` writes.

The JSON shape is a contract other tools read:
`{"steps": [{"name": .., "decision": "pass"|"fail", "reasons": [..]}], "promoted": <version|null>}`
(each step also carries its `metrics`, which readers may ignore).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StepDecision:
    name: str
    passed: bool
    reasons: list[str]
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def decision(self) -> str:
        return "pass" if self.passed else "fail"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "decision": self.decision,
            "reasons": list(self.reasons),
            "metrics": self.metrics,
        }


@dataclass
class ReleaseReport:
    run_id: str
    steps: list[StepDecision] = field(default_factory=list)
    candidate: str | None = None
    promoted: str | None = None

    @property
    def passed(self) -> bool:
        return bool(self.steps) and all(s.passed for s in self.steps)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "candidate": self.candidate,
            "steps": [s.to_dict() for s in self.steps],
            "promoted": self.promoted,
        }
