"""New embedding rows for a set of words, held outside the (shared, frozen) base model."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import lru_cache

import torch
from transformers import AddedToken, PreTrainedTokenizerBase

from .forward import embed_scale


@dataclass
class NewTokenRows:
    """Rows one method produced. Input rows are in the embedding matrix's own (unscaled) space."""

    method: str
    words: list[str]
    input_rows: torch.Tensor  # [K, H]
    output_rows: torch.Tensor | None = None  # [K, H] for untied heads; None when tied (shares input rows)

    def __post_init__(self) -> None:
        if self.input_rows.ndim != 2 or self.input_rows.shape[0] != len(self.words):
            raise ValueError(f"{self.method}: {len(self.words)} words but input rows of shape {tuple(self.input_rows.shape)}")

    def index(self, word: str) -> int:
        return self.words.index(word)

    def output_matrix(self) -> torch.Tensor:
        return self.input_rows if self.output_rows is None else self.output_rows

    def scaled_input(self, model) -> torch.Tensor:
        return self.input_rows * embed_scale(model)


def tokenizer_with_words(tokenizer: PreTrainedTokenizerBase, words: tuple[str, ...]) -> PreTrainedTokenizerBase:
    """A private copy of the tokenizer that knows `words` as added tokens; the original is untouched."""
    return _tokenizer_with_words(tokenizer, tuple(words))


@lru_cache(maxsize=32)
def _tokenizer_with_words(tokenizer: PreTrainedTokenizerBase, words: tuple[str, ...]):
    private = copy.deepcopy(tokenizer)
    private.add_tokens([AddedToken(w, normalized=False, special=False) for w in words])
    return private
