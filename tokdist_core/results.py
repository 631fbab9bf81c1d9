"""What compare() returns (`Comparison`, whose to_json() is the CLI's report) and the words it skipped.

One train() call returns a TrainOutcome (methods.runner)."""

from __future__ import annotations

from dataclasses import dataclass, field

from . import contexts as corpus
from .evaluation.metrics import METRICS
from .foundations.rows import NewTokenRows
from .foundations.vocab import WordSplit
from .training import StepRecord


@dataclass
class Skipped:
    word: str
    reason: str


@dataclass
class Comparison:
    """Everything one compare run produced; `to_json()` is the CLI's report format."""

    model: dict
    config: dict
    splits: list[WordSplit]
    contexts: dict[str, corpus.WordContexts]
    rows: dict[str, NewTokenRows] = field(default_factory=dict)
    histories: dict[str, list[StepRecord]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, dict[str, dict]] = field(default_factory=dict)  # method -> word -> metrics
    skipped: list[Skipped] = field(default_factory=list)
    cancelled: str | None = None

    def to_json(self) -> dict:
        words = []
        for split in self.splits:
            ctx = self.contexts.get(split.word)
            words.append({
                "word": split.word,
                **({"description": split.description} if split.description else {}),
                "subwords": list(split.pieces),
                "subword_ids": list(split.ids),
                "train_snippets": len(ctx.train) if ctx else 0,
                "heldout_snippets": len(ctx.heldout) if ctx else 0,
                "sources": dict(ctx.sources) if ctx else {},
                "methods": {
                    m: {**{k: v for k, v in self.metrics[m][split.word].items() if not k.startswith("layer_")},
                        "seconds": self.seconds.get(m, 0.0)}
                    for m in self.metrics if split.word in self.metrics[m]
                },
            })
        summary = {}
        for method in self.metrics:
            vals = [w["methods"][method] for w in words if method in w["methods"]]
            if vals:
                summary[method] = {k: sum(v[k] for v in vals) / len(vals)
                                   for k in METRICS}
        return {
            "model": self.model,
            "config": self.config,
            "words": words,
            "skipped": [{"word": s.word, "reason": s.reason} for s in self.skipped],
            "summary": summary,
            "cancelled": self.cancelled,
        }
