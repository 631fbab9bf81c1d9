"""Cooperative cancellation: long work polls a `threading.Event` at safe points and stops there.

Whoever sets the event (a Stop button, a time limit, a client that went away) knows why; the work
only says where it stopped.
"""

from __future__ import annotations

import threading


class Cancelled(RuntimeError):
    """The cancel flag was set; the work stopped at a safe point and returned nothing half-done."""


def check_cancel(cancel: threading.Event | None, where: str) -> None:
    """Raise Cancelled(where) when the flag is set."""
    if cancel is not None and cancel.is_set():
        raise Cancelled(where)
