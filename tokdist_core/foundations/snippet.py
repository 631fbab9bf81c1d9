"""The unit of training data: one tokenized context window around one occurrence of a word."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Snippet:
    """A window of the teacher tokenization with the word's subwords at token_ids[start:start+n_subwords]."""

    word: str  # the new token's text, e.g. " Krankenwagen"
    token_ids: tuple[int, ...]
    start: int
    n_subwords: int
    source: str  # e.g. "bundled:lee_background.cor", "file:notes.txt", "hf:wikitext", "generated"

    def __post_init__(self) -> None:
        if not (self.start >= 0 and self.start + self.n_subwords <= len(self.token_ids) and self.n_subwords >= 1):
            raise ValueError(f"Snippet for {self.word!r}: word span out of range")

    @property
    def prefix(self) -> tuple[int, ...]:
        return self.token_ids[: self.start]

    @property
    def word_ids(self) -> tuple[int, ...]:
        return self.token_ids[self.start : self.start + self.n_subwords]

    @property
    def suffix(self) -> tuple[int, ...]:
        return self.token_ids[self.start + self.n_subwords :]

    def student_length(self) -> int:
        return len(self.token_ids) - self.n_subwords + 1
