"""Init methods for new token rows, one small module each, behind one registry."""

from . import random_init, subword_mean, subword_weighted, trained, vocab_mean  # noqa: F401  (they register)
from .base import REGISTRY, Method, MethodContext, MethodOutput, subword_rows

METHOD_NAMES = tuple(sorted(REGISTRY, key=lambda name: REGISTRY[name].order))


def get_method(name: str) -> Method:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(METHOD_NAMES)}") from None


__all__ = ["REGISTRY", "METHOD_NAMES", "Method", "MethodContext", "MethodOutput", "get_method", "subword_rows"]
