"""The delivery engine (fetch -> process -> classify -> write -> commit), free of Ray and of any
service client: the runtime wraps it, unit tests drive it with fakes and crash it at every step."""

__all__ = [  # the public modules; others are private by their leading underscore
    "engine",
    "ports",
]
