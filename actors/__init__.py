"""The pipeline's Ray actors (runtime): coordinator, consumers, monitor, model directory,
edge ingest; `pipeline` brings lanes up and down (control plane, docs/architecture.md)."""

__all__ = [  # the public modules; others are private by their leading underscore
    "coordinator",
    "model_directory",
    "naming",
    "pipeline",
]
