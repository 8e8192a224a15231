"""Rhythm analysis beyond single beats: what the signal itself says between beats (silence,
fibrillation), the reference episodes of annotated records, and how alarms are scored."""

__all__ = [  # the public modules; others are private by their leading underscore
    "reference",
    "scoring",
    "ticks",
]
