"""Model release: the policy, the gate and its simulated power, the promotion guard's rule,
the step report."""

__all__ = [  # the public modules; others are private by their leading underscore
    "gate",
    "gate_power",
    "guard",
    "policy",
    "report",
]
