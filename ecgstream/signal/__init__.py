"""Signal processing (domain): filters, resampling, the QRS detector, per-chunk statistics."""

__all__ = [  # the public modules; others are private by their leading underscore
    "chunk_stats",
    "detector",
    "filters",
    "resample",
    "units",
]
