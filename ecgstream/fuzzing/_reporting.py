"""How a fuzz failure is shown: shared by the hypothesis runner and the atheris pass (which
runs in a subprocess of its own and must not import the runner that starts it)."""

from __future__ import annotations

MAX_REPR_CHARS = 300


def cut(text: str, limit: int = MAX_REPR_CHARS) -> str:
    """`text`, shortened to `limit` characters with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 3] + "..."
