"""Init methods for new token rows, one small module each, behind one registry."""

from . import random_init, subword_mean, subword_weighted, trained, vocab_mean  # noqa: F401  (they register)
from .base import REGISTRY, Method, MethodContext, MethodOutput, subword_rows

# Display order: baselines from weakest to strongest, then the trained methods.
METHOD_NAMES = tuple(n for n in ("random", "vocab_mean", "subword_mean", "subword_weighted", "ntp", "tokdist", "tokdist_antp") if n in REGISTRY)


def get_method(name: str) -> Method:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(METHOD_NAMES)}") from None


__all__ = ["REGISTRY", "METHOD_NAMES", "Method", "MethodContext", "MethodOutput", "get_method", "subword_rows"]
