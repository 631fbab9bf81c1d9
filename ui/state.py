"""Per-session state: each browser tab (or gradio_client session) gets its own SessionState.

Gradio keeps the object server-side per session and hands the same object to every handler of that
session, so handlers mutate it in place; the Stop button reaches the running job through `cancel`.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field, fields
from typing import Any

import gradio as gr

from tokdist_core.corpus import WordContexts
from tokdist_core.distill import StepRecord
from tokdist_core.rows import NewTokenRows
from tokdist_core.vocab import WordSplit


@dataclass
class SessionState:
    model_name: str | None = None
    mid_sentence: bool = True
    splits: list[WordSplit] = field(default_factory=list)  # words that can become new tokens
    contexts: dict[str, WordContexts] = field(default_factory=dict)
    context_settings: dict[str, Any] = field(default_factory=dict)  # for the export snippet
    rows: dict[str, NewTokenRows] = field(default_factory=dict)  # method -> learned rows
    histories: dict[str, list[StepRecord]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    train_config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, dict[str, dict]] | None = None  # method -> word -> metrics (held-out)
    cancelled: str | None = None
    running: bool = False

    def __post_init__(self) -> None:
        # Per-session stop flag: set by the Stop button, polled by the trainer between steps. Not a
        # dataclass field, because Gradio serializes the initial state with dataclasses.asdict.
        self.cancel = threading.Event()

    def __getstate__(self) -> dict:
        # Picklable (e.g. for ZeroGPU workers): the Event is process-local and recreated on load.
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def __setstate__(self, values: dict) -> None:
        self.__dict__.update(values)
        self.cancel = threading.Event()

    def __deepcopy__(self, memo: dict) -> SessionState:
        # gr.State deep-copies its initial value per session; an Event holds a lock and cannot be copied.
        return SessionState(**{f.name: copy.deepcopy(getattr(self, f.name), memo) for f in fields(self)})

    # -- invalidation: a new earlier step makes later results meaningless -----------------------------
    def reset_from_words(self) -> None:
        self.splits = []
        self.reset_from_contexts()
        self.contexts = {}
        self.context_settings = {}

    def reset_from_contexts(self) -> None:
        self.rows, self.histories, self.seconds, self.train_config = {}, {}, {}, {}
        self.metrics, self.cancelled = None, None

    # -- guards with messages that tell the user what to do next --------------------------------------
    @property
    def words(self) -> list[str]:
        return [s.word for s in self.splits]

    def usable_splits(self) -> list[WordSplit]:
        """Words with training snippets (the ones a run can learn)."""
        return [s for s in self.splits if s.word in self.contexts and self.contexts[s.word].train]

    def require_splits(self) -> None:
        if not self.splits:
            raise gr.Error("No words yet: type your words in the Words tab and press 'Split into subwords'.")

    def require_contexts(self) -> None:
        self.require_splits()
        if not self.usable_splits():
            raise gr.Error("No snippets yet: open the Contexts tab and press 'Find contexts' "
                           "(at least one word needs snippets).")

    def require_rows(self) -> None:
        if not self.rows:
            raise gr.Error("Nothing trained yet: open the Distill tab and press 'Train'.")


def new_state() -> SessionState:
    return SessionState()
