"""`make demo` / `ecgstream demo`: the live demo on the local stack and its HTML report."""

__all__ = ["live"]
