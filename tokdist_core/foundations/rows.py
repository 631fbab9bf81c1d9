"""New embedding rows for a set of words, held outside the (shared, frozen) base model."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import torch
from transformers import PreTrainedTokenizerBase

from .forward import embed_scale
from .vocab import added_tokens


@dataclass
class NewTokenRows:
    """Rows one method produced. Input rows are in the embedding matrix's own (unscaled) space."""

    method: str
    words: list[str]
    input_rows: torch.Tensor  # [K, H]
    output_rows: torch.Tensor | None = None  # [K, H] for untied heads; None when tied (shares input rows)
    # Special tokens among `words` -> the description the original model read in their place.
    descriptions: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.input_rows.ndim != 2 or self.input_rows.shape[0] != len(self.words):
            raise ValueError(f"{self.method}: {len(self.words)} words but input rows of shape {tuple(self.input_rows.shape)}")

    def index(self, word: str) -> int:
        return self.words.index(word)

    def output_matrix(self) -> torch.Tensor:
        return self.input_rows if self.output_rows is None else self.output_rows

    def scaled_input(self, model) -> torch.Tensor:
        return self.input_rows * embed_scale(model)

    def select(self, words: Sequence[str]) -> NewTokenRows:
        """A new object holding only `words`' rows, in that order."""
        order = [self.index(w) for w in words]
        return NewTokenRows(self.method, list(words), self.input_rows[order],
                            None if self.output_rows is None else self.output_rows[order],
                            {w: d for w, d in self.descriptions.items() if w in words})

    def with_word_rows(self, other: NewTokenRows) -> NewTokenRows:
        """A new object: these rows with each of `other`'s words replaced by its row there (same method).

        For re-training some words alone (words are independent, docs/method.md step 5); self is unchanged."""
        if other.method != self.method:
            raise ValueError(f"rows of method {other.method!r} cannot replace rows of {self.method!r}")
        missing = [w for w in other.words if w not in self.words]
        if missing:
            raise ValueError(f"{', '.join(map(repr, missing))} not among the {self.method} rows' words")
        if (self.output_rows is None) != (other.output_rows is None):
            raise ValueError("one set of rows has output rows and the other has none (tied vs untied model?)")
        if other.input_rows.shape[1:] != self.input_rows.shape[1:]:
            raise ValueError(f"row width {other.input_rows.shape[1]} differs from {self.input_rows.shape[1]}")
        input_rows = self.input_rows.clone()
        output_rows = None if self.output_rows is None else self.output_rows.clone()
        for i, word in enumerate(other.words):
            j = self.index(word)
            input_rows[j] = other.input_rows[i].to(input_rows.dtype)
            if output_rows is not None:
                output_rows[j] = other.output_rows[i].to(output_rows.dtype)
        return NewTokenRows(method=self.method, words=list(self.words), input_rows=input_rows, output_rows=output_rows,
                            descriptions=dict(self.descriptions))

    def row_distance(self, other: NewTokenRows, word: str) -> float:
        """Euclidean distance between `word`'s input row here and in `other` (how far a re-train moved it)."""
        return float((self.input_rows[self.index(word)].float() - other.input_rows[other.index(word)].float()).norm())


@dataclass
class Trajectory:
    """One trained method's new input rows during training (`train(..., record_trajectory=True)`).

    `rows[k]` holds every word's row after `steps[k]` optimizer steps: `steps[0] == 0` is the start (the
    subword mean), `steps[-1]` the last step, whose rows equal the method's final rows exactly. Long runs
    keep evenly spaced steps only (at most `trajectory_points`), always with the start and the end.
    """

    method: str
    words: list[str]
    steps: list[int]
    rows: torch.Tensor  # [len(steps), len(words), hidden], cpu float32, the embedding matrix's unscaled space

    def __post_init__(self) -> None:
        if self.rows.ndim != 3 or self.rows.shape[:2] != (len(self.steps), len(self.words)):
            raise ValueError(f"{self.method}: trajectory of {len(self.steps)} steps x {len(self.words)} words but "
                             f"rows of shape {tuple(self.rows.shape)}")

    def of(self, word: str) -> torch.Tensor:
        """[len(steps), hidden]: one word's row at every recorded step."""
        if word not in self.words:
            raise ValueError(f"{word!r} was not trained by {self.method}; its words: "
                             f"{', '.join(repr(w) for w in self.words)}")
        return self.rows[:, self.words.index(word)]


def tokenizer_with_words(tokenizer: PreTrainedTokenizerBase, words: tuple[str, ...],
                         descriptions: dict[str, str] | None = None) -> PreTrainedTokenizerBase:
    """A private copy of the tokenizer that knows `words` as added tokens (those in `descriptions` as special
    tokens); the original is untouched."""
    return _tokenizer_with_words(tokenizer, tuple(words), tuple(sorted((descriptions or {}).items())))


@lru_cache(maxsize=32)
def _tokenizer_with_words(tokenizer: PreTrainedTokenizerBase, words: tuple[str, ...],
                          descriptions: tuple[tuple[str, str], ...]):
    private = copy.deepcopy(tokenizer)
    private.add_tokens(added_tokens(words, dict(descriptions)))
    return private
