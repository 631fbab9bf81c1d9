"""The unit of training data: one tokenized context window around one occurrence of a word."""

from __future__ import annotations

from dataclasses import dataclass, replace


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

    def cut_after(self, tokens: int) -> Snippet:
        """This snippet ending `tokens` tokens after the word (itself when it is no longer than that)."""
        if tokens < 0:
            raise ValueError(f"cut_after: tokens must be >= 0, got {tokens}")
        end = self.start + self.n_subwords + tokens
        return self if end >= len(self.token_ids) else replace(self, token_ids=self.token_ids[:end])

    def student_length(self) -> int:
        return len(self.token_ids) - self.n_subwords + 1
