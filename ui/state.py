"""Per-session state: each browser tab (or gradio_client session) gets its own SessionState.

Gradio keeps the object server-side per session and hands the same object to every handler of that
session, so handlers mutate it in place. `job` is the session's heavy job while it waits or runs (set
and cleared by `ui.jobs.JobLine`): the Stop button reaches it there, and handlers that would change
the session refuse while it is set, so a run never sees its words or snippets change under it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields
from typing import Any

import gradio as gr

from tokdist_core import (
    NewTokenRows,
    StepRecord,
    TrainOutcome,
    Trajectory,
    WordContexts,
    WordSplit,
    with_word_history,
)


@dataclass
class SessionState:
    model_name: str | None = None
    mid_sentence: bool = True
    splits: list[WordSplit] = field(default_factory=list)  # words that can become new tokens
    contexts: dict[str, WordContexts] = field(default_factory=dict)
    context_settings: dict[str, Any] = field(default_factory=dict)  # for the export snippet
    rows: dict[str, NewTokenRows] = field(default_factory=dict)  # method -> learned rows
    histories: dict[str, list[StepRecord]] = field(default_factory=dict)
    trajectories: dict[str, Trajectory] = field(default_factory=dict)  # trained method -> rows during training
    # A word re-trained alone (Inspect tab): word -> method -> its own trajectory, shown instead of the run's.
    word_trajectories: dict[str, dict[str, Trajectory]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    train_config: dict[str, Any] = field(default_factory=dict)  # everything that produced `rows`
    metrics: dict[str, dict[str, dict]] | None = None  # method -> word -> metrics (held-out)
    cancelled: str | None = None
    # Inspect tab: words whose training snippets changed after their rows were trained (word -> what changed),
    # and what each word's last re-train alone did. A new run or new contexts make both moot.
    stale_words: dict[str, str] = field(default_factory=dict)
    retrained: dict[str, dict] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Not a dataclass field: Gradio serializes the initial state with dataclasses.asdict, and a job
        # holds locks and threads.
        self.job: Any = None
        self.view_job: Any = None  # a read-only view waiting or running (ui.jobs: VIEW_SLOT)

    def __getstate__(self) -> dict:
        # Picklable (e.g. for ZeroGPU workers): a job is process-local.
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def __setstate__(self, values: dict) -> None:
        self.__dict__.update(values)
        self.job = self.view_job = None

    def __deepcopy__(self, memo: dict) -> SessionState:
        # gr.State deep-copies its initial value per session.
        return SessionState(**{f.name: copy.deepcopy(getattr(self, f.name), memo) for f in fields(self)})

    # -- invalidation: a new earlier step makes later results meaningless -----------------------------
    def reset_from_words(self) -> None:
        self.splits = []
        self.reset_from_contexts()
        self.contexts = {}
        self.context_settings = {}

    def reset_from_contexts(self) -> None:
        self.rows, self.histories, self.seconds, self.train_config = {}, {}, {}, {}
        self.trajectories, self.word_trajectories = {}, {}
        self.metrics, self.cancelled = None, None
        self.stale_words, self.retrained = {}, {}

    # -- a word re-trained alone (Inspect tab) -------------------------------------------------------
    def merge_retrained(self, word: str, outcome: TrainOutcome, methods: list[str], n_train: int) -> dict:
        """Put the word's re-trained rows, held-out numbers, loss history and path in place of its old ones; the
        other words keep theirs (a word's row never depends on the words trained beside it).

        -> what the re-train did, also kept in `retrained[word]`: row change, final loss, hidden MSE before/after.
        """
        before = {m: dict((self.metrics or {}).get(m, {}).get(word, {})) for m in methods}
        moved = {}
        for m in methods:
            old = self.rows[m]
            self.rows[m] = old.with_word_rows(outcome.rows[m])
            moved[m] = old.row_distance(self.rows[m], word)
        if self.metrics is not None and outcome.metrics:
            for m in methods:
                self.metrics.setdefault(m, {})[word] = outcome.metrics[m][word]
        # Compare's loss curves and the Replay's path of this word now show the training its rows came from.
        for m, history in outcome.histories.items():
            self.histories[m] = with_word_history(self.histories.get(m, []), history, word)
        self.word_trajectories[word] = dict(outcome.trajectories)
        after = {m: dict((self.metrics or {}).get(m, {}).get(word, {})) for m in methods}
        self.stale_words.pop(word, None)
        # The rows now hold this word's snippet edits so far (the reproduce script replays them); others' stay.
        run_contexts = self.train_config.setdefault("contexts", {})
        run_contexts["snippet_edits"] = (
            [e for e in run_contexts.get("snippet_edits", []) if e[0] != word]
            + [e for e in self.context_settings.get("snippet_edits", []) if e[0] == word])
        self.retrained[word] = {
            "methods": methods, "train_snippets": n_train, "seconds": round(sum(outcome.seconds.values()), 3),
            "row_change": moved,
            "final_loss": {m: h[-1].word_losses[word] for m, h in outcome.histories.items() if h},
            "hidden_mse_before": {m: v.get("hidden_mse") for m, v in before.items()},
            "hidden_mse_after": {m: v.get("hidden_mse") for m, v in after.items()},
        }
        return self.retrained[word]

    # -- guards with messages that tell the user what to do next --------------------------------------
    def require_idle(self, action: str) -> None:
        if self.job is not None:
            raise gr.Error(f"Cannot {action} while {self.job.label} is running for this session: wait for it "
                           "to finish or press Stop in the Distill tab first.")

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

