"""Evidence, not product: the `ecgstream bench ...` measurements. Each compares against a
baseline measured in the same run and prints JSON (ratios, not absolute times)."""

__all__ = [  # the public modules; others are private by their leading underscore
    "api",
    "bandwidth",
    "drift",
    "edge",
    "nodes",
    "pipeline",
    "preprocess",
    "soak",
]
