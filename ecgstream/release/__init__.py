"""Model release: the policy, the holdout gate (more steps of issue #7 to come)."""

__all__ = [  # the public modules; others are private by their leading underscore
    "gate",
    "policy",
    "report",
]
