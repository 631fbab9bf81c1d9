"""What every kind of discovery produces and how candidates are filtered and ranked.

A candidate is a token in the form it will be added: the mid-sentence form with a leading space
(" Schopenhauer", or a phrase such as " New York"), valid by the ``vocab`` rules, that the model's
tokenizer splits into two or more pieces. Candidates are ranked by tokens saved = count x (pieces - 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..foundations.limits import MAX_TOP, MAX_WORD_CHARS
from ..foundations.vocab import WordError, WordSplit, normalize_word, split_words

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

SNIFF_BYTES = 8192  # how much of a user's file is read to tell text from binary
# Tokenizers that split numbers into single digits do it on purpose (arithmetic reads digit by digit); on
# the bundled corpus " 1960s"-like tokens cost more bits than the other words (docs/method.md).
DIGITS_REASON = "has digits, which this tokenizer reads one at a time on purpose (--keep-numbers keeps them)"


class DiscoveryError(ValueError):
    """A frequency list or another tokenizer cannot be used; the message says which one and why."""


@dataclass(frozen=True)
class Candidate:
    """One token worth adding, e.g. " Schopenhauer" (3 subwords, 120 occurrences: 240 tokens saved)."""

    token: str
    subwords: tuple[str, ...]  # the model's readable pieces today
    ids: tuple[int, ...]
    count: int | None  # occurrences counted; None when nothing was counted (a vocabulary alone)
    tokens_saved: int | None  # count x (pieces - 1)
    cumulative_saved_pct: float | None = None  # share of corpus_tokens saved by this and every higher one
    source_rank: int | None = None  # its id in the other tokenizer / its line in the frequency list

    @property
    def split(self) -> WordSplit:
        """What contexts and training take (``TokenDistillation.contexts([c.split for c in ...])``)."""
        return WordSplit(self.token, self.subwords, self.ids)

    def to_json(self) -> dict:
        return {"token": self.token, "count": self.count, "subwords": list(self.subwords),
                "tokens_saved": self.tokens_saved, "subword_ids": list(self.ids),
                "cumulative_saved_pct": self.cumulative_saved_pct, "source_rank": self.source_rank}


@dataclass(frozen=True)
class Rejection:
    """An entry a user gave (a frequency-list line) that is not a candidate, and why."""

    entry: str
    reason: str
    line: int | None = None


@dataclass
class Discovery:
    """Ranked candidates and what was counted; ``to_json()`` is the CLI's ``--json`` report."""

    model: str
    data: Any  # the corpus as given (JSON-able), or None
    source: str  # "corpus", "tokenizer:<name>" or "frequency list:<path>"
    corpus_tokens: int | None  # base-tokenizer tokens of the documents counted
    documents: int | None
    candidates: list[Candidate]
    filtered: dict[str, int] = field(default_factory=dict)  # reason -> how many candidates it removed
    rejected: list[Rejection] = field(default_factory=list)  # user entries not kept, each with its reason

    @property
    def splits(self) -> list[WordSplit]:
        return [c.split for c in self.candidates]

    @property
    def words(self) -> list[str]:
        return [c.token for c in self.candidates]

    def to_json(self) -> dict:
        return {"model": self.model, "data": self.data, "corpus_tokens": self.corpus_tokens,
                "candidates": [c.to_json() for c in self.candidates], "source": self.source,
                "documents": self.documents, "filtered": dict(self.filtered),
                "rejected": [{"entry": r.entry, "reason": r.reason, "line": r.line} for r in self.rejected]}


@dataclass
class PendingCandidate:
    """A candidate on its way: text in token form, its count and the model's piece count."""

    token: str
    count: int | None
    rank: int | None = None
    n_pieces: int = 0

    @property
    def saved(self) -> int:
        return (self.count or 0) * (self.n_pieces - 1)


# Argument checks (before any work)


def check_int(name: str, value: object, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ValueError(f"{name} must be an integer {bound}, got {value!r}.")


def check_options(top: int, min_count: int, min_chars: int, max_documents: int | None = None) -> None:
    check_int("top", top, 1, MAX_TOP)
    check_int("min_count", min_count, 1)
    check_int("min_chars", min_chars, 1, MAX_WORD_CHARS)
    if max_documents is not None:
        check_int("max_documents", max_documents, 1)


# Filters and ranking, shared by the three kinds of candidate lists


def reason_to_skip(token: str, count: int | None, min_count: int, min_chars: int,
                  stop_words: frozenset[str]) -> str | None:
    """Why `token` (" word" form) is not a candidate, judged without the tokenizer; None when it may be."""
    if count is not None and count < min_count:
        return "fewer than min_count occurrences"
    body = token[1:]
    if len(body) < min_chars:
        return "shorter than min_chars characters"
    words = body.split(" ")
    if not any(ch.isalpha() for ch in body):
        return "no letter (digits or punctuation only)"
    if len(words) > 1 and not all(any(ch.isalpha() for ch in w) for w in words):
        return "a word of the phrase has no letter"
    if "," in body:
        return "contains a comma (word lists use it as a separator)"
    if len(words) > 1 and (words[0].lower() in stop_words or words[-1].lower() in stop_words):
        return "phrase starts or ends with a stop word"
    try:
        if normalize_word(body) != token:
            return "not a valid token (vocab rules)"
    except WordError:
        return "not a valid token (vocab rules)"
    return None


def _reason_of(error: WordError) -> str:
    text = str(error)
    if "already a single token" in text:
        return "already one token"
    if "special token" in text:
        return "contains a special token"
    return "does not survive a tokenizer round trip"


def _count_pieces(tokenizer: PreTrainedTokenizerBase, entries: list[PendingCandidate], batch_size: int = 4096) -> None:
    for start in range(0, len(entries), batch_size):
        chunk = entries[start : start + batch_size]
        ids = tokenizer([e.token for e in chunk], add_special_tokens=False, return_attention_mask=False)["input_ids"]
        for entry, token_ids in zip(chunk, ids, strict=True):
            entry.n_pieces = len(token_ids)


def reads_digits_one_by_one(tokenizer: PreTrainedTokenizerBase) -> bool:
    """True when the tokenizer gives every digit of a number its own token (Llama 3, SmolLM2, Qwen, ...)."""
    ids = tokenizer(" 1234567 2024 90210", add_special_tokens=False)["input_ids"]
    pieces = [tokenizer.decode([i]) for i in ids]
    return not any(sum(ch.isdigit() for ch in piece) > 1 for piece in pieces)


def select_candidates(tokenizer: PreTrainedTokenizerBase, entries: list[PendingCandidate], top: int, ranked: bool,
            corpus_tokens: int | None, keep_numbers: bool = False) -> tuple[list[Candidate], list[tuple[PendingCandidate, str]]]:
    """The first `top` entries that pass every rule of check_new_word, in rank order.

    -> (candidates, [(entry, reason)] for those refused while looking). Ranked: by tokens saved, then
    count, then the source's own order; otherwise in the source's order. Unless `keep_numbers`, entries
    with a digit are refused when the tokenizer reads digits one at a time (DIGITS_REASON).
    """
    refused: list[tuple[PendingCandidate, str]] = []
    if not keep_numbers and reads_digits_one_by_one(tokenizer):
        refused = [(e, DIGITS_REASON) for e in entries if any(ch.isdigit() for ch in e.token)]
        entries = [e for e in entries if not any(ch.isdigit() for ch in e.token)]
    _count_pieces(tokenizer, entries)
    refused += [(e, "already one token") for e in entries if e.n_pieces < 2]
    pool = [e for e in entries if e.n_pieces >= 2]
    if ranked:
        pool.sort(key=lambda e: (-e.saved, -(e.count or 0), e.rank if e.rank is not None else 0, e.token))
    candidates: list[Candidate] = []
    saved_so_far = 0
    step = max(64, top + top // 4)
    for start in range(0, len(pool), step):
        chunk = pool[start : start + step]
        for entry, split in zip(chunk, split_words(tokenizer, [e.token for e in chunk]), strict=True):
            if isinstance(split, WordError):
                refused.append((entry, _reason_of(split)))
                continue
            saved = entry.saved if entry.count is not None else None
            saved_so_far += saved or 0
            share = round(100.0 * saved_so_far / corpus_tokens, 4) if corpus_tokens and saved is not None else None
            candidates.append(Candidate(split.word, split.pieces, split.ids, entry.count, saved, share, entry.rank))
            if len(candidates) == top:
                return candidates, refused
    return candidates, refused
