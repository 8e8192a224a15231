"""AAMI EC57 beat classes and the MIT-BIH annotation symbols that map to them."""

from __future__ import annotations

from typing import Final

AAMI_CLASSES: Final = ("N", "S", "V", "F", "Q")
# the classes the model predicts; Q (unclassifiable, 8 beats in DS1) is too rare to learn
MODEL_CLASSES: Final = ("N", "S", "V", "F")

SYMBOL_TO_AAMI: Final[dict[str, str]] = {
    **dict.fromkeys("NLRej", "N"),
    **dict.fromkeys("AaJS", "S"),
    **dict.fromkeys("VE", "V"),
    "F": "F",
    **dict.fromkeys("/fQ", "Q"),
}


def aami_class(symbol: str) -> str | None:
    """The AAMI class of an annotation symbol, or None for non-beat annotations (+ ~ | ! x ...)."""
    return SYMBOL_TO_AAMI.get(symbol)
