"""Mining: every requested word's occurrences in one Aho-Corasick pass, then snippet windows around them.

An occurrence counts when it has a word boundary on both sides, and is accepted only when the tokenizer,
reading the context, produces exactly the word's standalone subword ids (see ``mine_snippets``).
"""

from __future__ import annotations

import random
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import ahocorasick

from ..foundations.limits import MAX_SNIPPET_LEN, MAX_SNIPPETS_PER_TOKEN
from ..foundations.snippet import Snippet
from ..foundations.vocab import WordSplit
from .sources import CorpusError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# Occurrences kept per word (reservoir sample) before tokenizing: frequent words never blow up memory/time.
MAX_OCCURRENCES_PER_WORD = 4096

_Docs = dict[int, tuple[str, str]]  # document index -> (label, text), only documents with an occurrence


# ---------------------------------------------------------------------------------------------------------
# Shared rules and argument checks
# ---------------------------------------------------------------------------------------------------------


def continues_word(ch: str) -> bool:
    # Letters, digits and combining marks would make the match part of a longer word.
    return ch.isalnum() or unicodedata.category(ch).startswith("M")


def word_rng(seed: int, word: str, purpose: str) -> random.Random:
    # String seeds hash with SHA-512 inside random: stable across runs and independent of PYTHONHASHSEED,
    # and each word's selection does not depend on which other words were requested.
    return random.Random(f"{seed}:{purpose}:{word}")


def check_snippet_count(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= MAX_SNIPPETS_PER_TOKEN:
        raise ValueError(
            f"{name} must be an integer between {minimum} and {MAX_SNIPPETS_PER_TOKEN}, got {value!r}."
        )


def check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}.")


def check_snippet_len(snippet_len: int, splits: list[WordSplit]) -> None:
    if isinstance(snippet_len, bool) or not isinstance(snippet_len, int):
        raise ValueError(f"snippet_len must be an integer, got {snippet_len!r}.")
    if snippet_len > MAX_SNIPPET_LEN:
        raise ValueError(f"snippet_len={snippet_len} is over the limit of {MAX_SNIPPET_LEN} tokens.")
    for split in splits:
        if snippet_len <= split.n_subwords + 1:
            raise ValueError(
                f"snippet_len={snippet_len} is too short for {split.word!r} ({split.n_subwords} subwords): "
                f"it must be at least {split.n_subwords + 2} so the word has context."
            )


def check_splits(splits: list[WordSplit]) -> list[WordSplit]:
    splits = list(splits)
    seen: set[str] = set()
    for split in splits:
        if not isinstance(split, WordSplit):
            raise ValueError(
                f"Expected WordSplit objects (see vocab.split_word), got {type(split).__name__}."
            )
        if split.word in seen:
            raise ValueError(f"Word {split.word!r} is listed twice.")
        if not split.word.strip():
            raise ValueError("A word must contain more than whitespace.")
        seen.add(split.word)
    return splits


def _check_mining_args(
    tokenizer: PreTrainedTokenizerBase, splits: list[WordSplit], snippet_len: int, max_per_word: int | None
) -> list[WordSplit]:
    splits = check_splits(splits)
    check_snippet_len(snippet_len, splits)
    if max_per_word is not None and (
        isinstance(max_per_word, bool) or not isinstance(max_per_word, int) or max_per_word < 1
    ):
        raise ValueError(f"max_per_word must be a positive integer or None, got {max_per_word!r}.")
    if not getattr(tokenizer, "is_fast", False):
        raise CorpusError(
            "Mining needs a fast (Rust) tokenizer with offset mapping; this tokenizer is a slow one."
        )
    return splits


# ---------------------------------------------------------------------------------------------------------
# mine_snippets
# ---------------------------------------------------------------------------------------------------------


@dataclass
class _Occurrence:
    doc: int
    start: int  # surface start (after the leading space of the mid-sentence form)
    end: int


@dataclass
class _Job:
    word_index: int
    occ: _Occurrence
    scale: int = 1
    result: tuple[tuple[int, ...], int] | None = None  # (window ids, word start) when accepted


@dataclass
class _Word:
    """One word's side of the tokenizing rounds: its shuffled occurrences and the snippets kept so far."""

    split: WordSplit
    occurrences: list[_Occurrence]
    need: int
    cursor: int = 0
    snippets: list[Snippet] = field(default_factory=list)
    windows: set[tuple[int, ...]] = field(default_factory=set)

    def next_jobs(self, word_index: int) -> list[_Job]:
        missing = self.need - len(self.snippets)
        if missing <= 0 or self.cursor >= len(self.occurrences):
            return []
        take = missing + missing // 5 + 2  # small slack for rejected/duplicate windows
        batch = self.occurrences[self.cursor : self.cursor + take]
        self.cursor += take
        return [_Job(word_index, occ) for occ in batch]

    def keep(self, job: _Job, docs: _Docs) -> None:
        if job.result is None or len(self.snippets) >= self.need:
            return
        window, start = job.result
        if window in self.windows:
            return
        self.windows.add(window)
        label = docs[job.occ.doc][0]
        self.snippets.append(Snippet(self.split.word, window, start, self.split.n_subwords, label))


def mine_snippets(
    documents: Iterable[tuple[str, str]],
    tokenizer: PreTrainedTokenizerBase,
    splits: list[WordSplit],
    snippet_len: int = 50,
    max_per_word: int | None = None,
    seed: int = 0,
) -> dict[str, list[Snippet]]:
    """Snippets for every word, in a seeded random order; every requested word is a key (maybe empty).

    Boundary rules (case-sensitive surface match, one Aho-Corasick pass for all words):
    * right: the next character is not a letter, digit or combining mark (" Krankenwagens" never counts);
    * mid-sentence form (" word"): the preceding character is a plain space, so the context tokenizes the
      word as " word";
    * word-initial form ("word"): start of document, or a preceding character that is neither a space nor
      a letter/digit/underscore (newline, quote, bracket, dash...).
    An occurrence is accepted only when the tokenizer, reading a character window around it, produces
    exactly ``split.ids`` for the word. The window is ``snippet_len`` tokens with ``(snippet_len - n)//2``
    before the word when available; identical windows are kept once. At most ``MAX_OCCURRENCES_PER_WORD``
    occurrences per word (a seeded reservoir sample) are considered.
    """
    splits = _check_mining_args(tokenizer, splits, snippet_len, max_per_word)
    if not splits:
        return {}
    cap = (
        MAX_OCCURRENCES_PER_WORD
        if max_per_word is None
        else min(MAX_OCCURRENCES_PER_WORD, max(8 * max_per_word, 256))
    )
    rngs = [word_rng(seed, s.word, "mine") for s in splits]
    reservoirs, docs = _sample_occurrences(documents, word_automaton(splits), rngs, cap)
    words = []
    for split, rng, occurrences in zip(splits, rngs, reservoirs, strict=True):
        occurrences.sort(key=lambda o: (o.doc, o.start))  # reservoir order depends on arrival; normalize first
        rng.shuffle(occurrences)
        need = len(occurrences) if max_per_word is None else min(max_per_word, len(occurrences))
        words.append(_Word(split, occurrences, need))
    _tokenize_in_rounds(words, docs, tokenizer, snippet_len)
    return {w.split.word: w.snippets for w in words}


def word_automaton(splits: list[WordSplit]) -> Any:
    """Aho-Corasick over the surfaces: surface -> (length, mid-sentence word indexes, word-initial ones)."""
    by_surface: dict[str, tuple[list[int], list[int]]] = {}
    for i, split in enumerate(splits):
        surface = split.surface  # a special token from a description is mined where its description occurs
        mid = surface.startswith(" ")
        forms = by_surface.setdefault(surface[1:] if mid else surface, ([], []))
        forms[0 if mid else 1].append(i)
    automaton = ahocorasick.Automaton()
    for surface, (mid_words, initial_words) in by_surface.items():
        automaton.add_word(surface, (len(surface), tuple(mid_words), tuple(initial_words)))
    automaton.make_automaton()
    return automaton


def boundary_matches(text: str, automaton: Any) -> Iterator[tuple[int, int, tuple[int, ...]]]:
    """(start, end, word indexes) of every match with a word boundary on both sides (the rules above).

    Multi-word tokens (" New York") follow the same rules: the surface, inner spaces included, matches
    literally, and only its two ends are checked.
    """
    length = len(text)
    for end, (size, mid_words, initial_words) in automaton.iter(text):
        b = end + 1
        if b < length and continues_word(text[b]):
            continue
        a = b - size
        prev = text[a - 1] if a > 0 else ""
        if prev == " ":
            matched = mid_words  # " word": after a plain space
        elif prev == "_" or prev.isalnum():
            continue
        else:
            matched = initial_words  # "word": document start or after a non-word character
        if matched:
            yield a, b, matched


def _sample_occurrences(
    documents: Iterable[tuple[str, str]], automaton: Any, rngs: list[random.Random], cap: int
) -> tuple[list[list[_Occurrence]], _Docs]:
    """One pass: matches with a word boundary on both sides, a seeded reservoir of ``cap`` per word."""
    reservoirs: list[list[_Occurrence]] = [[] for _ in rngs]
    seen_counts = [0] * len(rngs)
    docs: _Docs = {}
    for doc_index, (label, text) in enumerate(documents):
        if not text:
            continue
        for a, b, matched in boundary_matches(text, automaton):
            for wi in matched:
                k = seen_counts[wi]
                seen_counts[wi] = k + 1
                if k < cap:
                    reservoirs[wi].append(_Occurrence(doc_index, a, b))
                else:
                    r = rngs[wi].randrange(k + 1)
                    if r < cap:
                        reservoirs[wi][r] = _Occurrence(doc_index, a, b)
            if doc_index not in docs:
                docs[doc_index] = (label, text)
    return reservoirs, docs


def count_occurrences(documents: Iterable[tuple[str, str]], words: list[str]) -> list[int]:
    """How often each word (" word" or "word" form) occurs with the boundary rules ``mine_snippets`` uses.

    One Aho-Corasick pass; memory holds only the words and their counts, however long the corpus.
    """
    counts = [0] * len(words)
    if not words:
        return counts
    automaton = word_automaton([WordSplit(word=w, pieces=(), ids=()) for w in words])
    for _label, text in documents:
        for _a, _b, matched in boundary_matches(text, automaton):
            for wi in matched:
                counts[wi] += 1
    return counts


@dataclass
class ValidationSlice:
    """Documents picked for holding some words, and the text they were picked from."""

    texts: list[str]
    scanned_bytes: int  # UTF-8 bytes of every document read, the skipped ones included
    scanned_occurrences: list[int]  # each word's occurrences in every document read


def documents_with_words(documents: Iterable[tuple[str, str]], words: list[str], per_word: int,
                         max_bytes: int) -> ValidationSlice:
    """Texts that hold the words, in corpus order, for a validation slice: a document is taken while one of
    its words has fewer than `per_word` occurrences in the slice so far; stops when every word has them or
    at `max_bytes` of UTF-8 (mining's boundary rules)."""
    picked = ValidationSlice([], 0, [0] * len(words))
    if not words:
        return picked
    automaton = word_automaton([WordSplit(word=w, pieces=(), ids=()) for w in words])
    need = [per_word] * len(words)
    wanting, size = len(words), 0
    for _label, text in documents:
        found = [wi for _a, _b, matched in boundary_matches(text, automaton) for wi in matched]
        picked.scanned_bytes += len(text.encode("utf-8"))
        for wi in found:
            picked.scanned_occurrences[wi] += 1
        if not any(need[wi] > 0 for wi in found):
            continue
        picked.texts.append(text)
        size += len(text.encode("utf-8"))
        for wi in found:
            need[wi] -= 1
            wanting -= need[wi] == 0
        if wanting == 0 or size >= max_bytes:
            break
    return picked


def _tokenize_in_rounds(
    words: list[_Word], docs: _Docs, tokenizer: PreTrainedTokenizerBase, snippet_len: int
) -> None:
    """Tokenize windows in rounds, only as many as each word still needs."""
    splits = [w.split for w in words]
    while True:
        jobs = [job for wi, word in enumerate(words) for job in word.next_jobs(wi)]
        if not jobs:
            return
        _run_jobs(jobs, docs, tokenizer, splits, snippet_len)
        # Commit in each word's shuffled order so the outcome does not depend on batching.
        for job in jobs:
            words[job.word_index].keep(job, docs)


# ---------------------------------------------------------------------------------------------------------
# Windows
# ---------------------------------------------------------------------------------------------------------


def _cut_window(
    ids: list[int], offsets: list[tuple[int, int]], a_rel: int, b_rel: int, split: WordSplit,
    cut_left: bool, cut_right: bool, snippet_len: int, allow_retry: bool = True,
) -> tuple[str, tuple[tuple[int, ...], int] | None]:  # fmt: skip
    """('ok', (window, start)) | ('reject', None) | ('retry', None) for one tokenized character window."""
    n = split.n_subwords
    j = next((k for k, (_s, e) in enumerate(offsets) if e > a_rel), None)
    if j is None or j + n > len(ids):
        return ("retry" if allow_retry else "reject"), None
    # A lone space token (" 19th" -> ' ', '1', '9', 'th') ends where the word starts, so it may be one before j.
    j = next((c for c in (j, j - 1) if c >= 0 and c + n <= len(ids) and tuple(ids[c : c + n]) == split.ids
              and offsets[c + n - 1][1] == b_rel), None)
    if j is None:
        return "reject", None  # context tokenization differs from the standalone split
    lo = 1 if cut_left else 0  # the first token of a window cut inside a document may be a partial word
    hi = len(ids) - 1 if cut_right else len(ids)
    if j < lo or j + n > hi:
        return ("retry" if allow_retry else "reject"), None
    total = snippet_len - n
    want_before = total // 2
    avail_before, avail_after = j - lo, hi - (j + n)
    # Would more characters on a cut side change the window? Then widen and tokenize again.
    if allow_retry and cut_left and avail_before < total - min(total - want_before, avail_after):
        return "retry", None
    if allow_retry and cut_right and avail_after < total - min(want_before, avail_before):
        return "retry", None
    before = min(want_before, avail_before)
    after = min(total - before, avail_after)
    before = min(avail_before, total - after)  # near a document end: take more before the word
    window = tuple(ids[j - before : j + n + after])
    return "ok", (window, before)


def _char_window(job: _Job, text: str, split: WordSplit, snippet_len: int) -> tuple[int, int]:
    """Character range [lo, hi) around the occurrence that should hold the token window."""
    total = snippet_len - split.n_subwords
    before_tok = total // 2 + 2
    after_tok = total - total // 2 + 2
    # Near a document edge the other side must supply the rest of the window.
    chars_per_tok = 6 * job.scale
    if job.occ.start < before_tok * chars_per_tok:
        after_tok = total + 2
    if len(text) - job.occ.end < after_tok * chars_per_tok:
        before_tok = total + 2
    lo = max(0, job.occ.start - 1 - before_tok * chars_per_tok - 16)
    hi = min(len(text), job.occ.end + after_tok * chars_per_tok + 16)
    return lo, hi


def _run_jobs(
    jobs: list[_Job], docs: _Docs, tokenizer: PreTrainedTokenizerBase, splits: list[WordSplit], snippet_len: int,
) -> None:  # fmt: skip
    """Tokenize character windows around occurrences; widen and retry the ones that were too narrow."""
    pending = jobs
    for attempt in range(4):
        texts: list[str] = []
        meta: list[tuple[int, int, bool, bool]] = []
        for job in pending:
            text = docs[job.occ.doc][1]
            lo, hi = _char_window(job, text, splits[job.word_index], snippet_len)
            texts.append(text[lo:hi])
            meta.append((job.occ.start - lo, job.occ.end - lo, lo > 0, hi < len(text)))
        retry: list[_Job] = []
        for start in range(0, len(texts), 512):
            enc = tokenizer(
                texts[start : start + 512],
                add_special_tokens=False,
                return_offsets_mapping=True,
                return_attention_mask=False,
            )
            for k, (ids, offsets) in enumerate(zip(enc["input_ids"], enc["offset_mapping"], strict=True)):
                job = pending[start + k]
                a_rel, b_rel, cut_left, cut_right = meta[start + k]
                status, payload = _cut_window(
                    ids, offsets, a_rel, b_rel, splits[job.word_index],
                    cut_left, cut_right, snippet_len, allow_retry=attempt < 3,
                )  # fmt: skip
                if status == "retry":
                    job.scale *= 4
                    retry.append(job)
                else:
                    job.result = payload
        if not retry:
            return
        pending = retry
