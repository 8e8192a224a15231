"""Model search and release (control plane): Ray Tune search, selection, the holdout gate,
infravalidation through the real serving path, promotion with its guard (automatic rollback),
shadow and rollback."""

__all__ = [  # the public modules; others are private by their leading underscore
    "guard",
    "promotion",
    "release",
]
