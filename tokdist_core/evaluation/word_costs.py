"""What each new word costs on some text: its occurrences, the text read after them, and what its output row
takes everywhere else (adapt's harm check)."""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..foundations.models import LoadedModel
from ..foundations.rows import NewTokenRows
from .parts import char_bits, char_bytes, elsewhere_tokens, word_owners
from .report import (
    DEFAULT_TOKEN_BUDGET,
    device_rows,
    encode_documents,
    extended_vocab,
    rolling_windows,
    token_nll,
)
from .report_inputs import check_documents, check_rows, check_settings


@dataclass
class WordCost:
    """What one new word costs on some text against the original tokenization: on the word's own characters
    and on the text read after it (its share of the `new_words` and `after_new` parts), and what its row takes
    on the rest (its share of the `elsewhere` part)."""

    word: str
    occurrences: int
    bits_change: float  # > 0: the word makes the model worse there than the original pieces did
    bits_original: float  # the original's bits on the same characters
    bits_elsewhere: float = 0.0  # >= 0: the probability its output row takes from the original tokens elsewhere
    occurrences_represented: int | None = None  # in the text the documents stand for (word_costs' represents_*)

    @property
    def bits_total(self) -> float:
        """What the word costs on the whole text, or on the text the documents stand for: > 0, the text reads
        worse with it than without it (its gain per occurrence here, times its occurrences there)."""
        if self.occurrences_represented is None or not self.occurrences:
            return self.bits_change + self.bits_elsewhere
        return self.bits_change * self.occurrences_represented / self.occurrences + self.bits_elsewhere

    @property
    def harmful(self) -> bool:
        """The text reads worse with the word than with its pieces; a word absent from it is not judged."""
        return self.occurrences > 0 and self.bits_total > 0


def word_costs(lm: LoadedModel, documents: Sequence[str], rows: NewTokenRows, *, max_length: int | None = None,
               token_budget: int = DEFAULT_TOKEN_BUDGET, mixed_precision: str = "auto",
               cancel: threading.Event | None = None, represents_bytes: int | None = None,
               represents_occurrences: Sequence[int] | None = None) -> list[WordCost]:
    """Each of `rows`' words' cost on `documents`, scored as domain_report scores them (needs a fast
    tokenizer: the costs are charged by characters). Where no new word is read, the adapted model differs from
    the original only by the probability the new rows take; each word is charged its row's share of that.

    `represents_bytes`, `represents_occurrences`: the UTF-8 size of the text `documents` were picked from for
    holding the words (a validation slice), and each word's occurrences in it. The rows take probability on all
    of that text, so `bits_elsewhere` is extrapolated from the documents' own elsewhere text to the rest of it
    at the same rate per byte, and `bits_total` weighs each word's gain by its occurrences there."""
    docs = check_documents(documents)
    (rows,) = check_rows(lm, [rows])
    settings = check_settings(lm, max_length, token_budget, mixed_precision)
    words = list(rows.words)
    represented = list(represents_occurrences) if represents_occurrences is not None else [None] * len(words)
    if len(represented) != len(words):
        raise ValueError(f"represents_occurrences has {len(represented)} counts for {len(words)} words")
    extended, vocab = extended_vocab(lm, words)
    original, adapted = encode_documents(lm.tokenizer, docs, cancel), encode_documents(extended, docs, cancel)
    if original["offsets"] is None:
        raise ValueError("word costs need a fast tokenizer (character offsets)")
    run = {**settings, "cancel": cancel}
    word_of = {t: k for k, t in enumerate(vocab.new_ids)}
    windows = [rolling_windows(ids, settings["start_token_id"], settings["max_length"]) for ids in adapted["ids"]]
    elsewhere = [elsewhere_tokens(ids, word_of, w) for ids, w in zip(adapted["ids"], windows)]
    nll_original, _ = token_nll(lm, vocab, original["ids"], None, run, lambda *_: None)
    nll_adapted, taken = token_nll(lm, vocab, adapted["ids"], device_rows(lm, rows, words), run,
                                    lambda *_: None, charged=elsewhere)
    change, base, count = np.zeros(len(words)), np.zeros(len(words)), np.zeros(len(words), dtype=np.int64)
    elsewhere_bytes = 0
    for d, text in enumerate(docs):
        ids = adapted["ids"][d]
        owners = word_owners(ids, adapted["offsets"][d], len(text), word_of, windows[d])
        charged = owners >= 0
        elsewhere_bytes += int(char_bytes(text)[~charged].sum())
        if not charged.any():
            continue
        before = char_bits(text, nll_original[d], original["offsets"][d])
        after = char_bits(text, nll_adapted[d], adapted["offsets"][d])
        change += np.bincount(owners[charged], weights=(after - before)[charged], minlength=len(words))
        base += np.bincount(owners[charged], weights=before[charged], minlength=len(words))
        count += np.bincount([word_of[t] for t in ids if t in word_of], minlength=len(words))
    taken_bits = taken / math.log(2) if taken is not None else np.zeros(len(words))
    slice_bytes = sum(len(t.encode("utf-8")) for t in docs)
    if represents_bytes is not None and represents_bytes > slice_bytes and elsewhere_bytes:
        taken_bits = taken_bits * (elsewhere_bytes + represents_bytes - slice_bytes) / elsewhere_bytes
    return [WordCost(w, int(n), float(c), float(b), float(e), None if r is None else int(r))
            for w, n, c, b, e, r in zip(words, count, change, base, taken_bits, represented)]
