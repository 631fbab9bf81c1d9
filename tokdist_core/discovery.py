"""Which words to add: corpus counts, another tokenizer's vocabulary, a frequency list.

A candidate is a token in the form it will be added: the mid-sentence form with a leading space
(" Schopenhauer", or a phrase such as " New York"), valid by the ``vocab`` rules, that the model's
tokenizer splits into two or more pieces. Corpus counts follow the rules ``mine_snippets`` uses: an
occurrence is preceded by a plain space and ends at a word boundary, the places where the extended
tokenizer uses the token and mining finds its snippets. Candidates are ranked by tokens saved =
count x (pieces - 1).

The cumulative share of the corpus's tokens saved by the top N is an upper bound when phrases and
their own words are both listed (" New York" and " York" save on the same occurrences).
"""

from __future__ import annotations

import codecs
import json
import os
import threading
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import regex

from .contexts.documents import DocumentSplit, _until_cancelled, iter_documents
from .contexts.mining import count_occurrences
from .contexts.sources import (
    BundledSource,
    CorpusError,
    DataSpec,
    FileSource,
    GeneratedSource,
    Source,
    _first_line,
    parse_sources,
)
from .vocab import MAX_PHRASE_WORDS, MAX_WORD_CHARS, WordError, WordSplit, normalize_word, split_words

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

MAX_TOP = 100_000
_DOC_BATCH_CHARS = 1 << 20  # documents are counted in batches of about 1 MB of text: bounded memory
_SNIFF_BYTES = 8192
# A word: letters/digits, then letters, digits or combining marks (mining's _continues_word). A run is a
# maximal sequence of words joined by single spaces whose first word follows a plain space: every n-gram
# inside a run is an occurrence of " w1 w2 ..." with a space before it and a word boundary after it.
_WORD = r"[\p{L}\p{N}][\p{L}\p{N}\p{M}]*"
_RUN = regex.compile(rf"(?<= ){_WORD}(?: {_WORD})*")
_BYTE_TOKEN = regex.compile(r"<0x[0-9A-Fa-f]{2}>")


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
class _Entry:
    """A candidate on its way: text in token form, its count and the model's piece count."""

    token: str
    count: int | None
    rank: int | None = None
    n_pieces: int = 0

    @property
    def saved(self) -> int:
        return (self.count or 0) * (self.n_pieces - 1)


# ---------------------------------------------------------------------------------------------------------
# Argument checks (before any work)
# ---------------------------------------------------------------------------------------------------------


def _check_int(name: str, value: object, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ValueError(f"{name} must be an integer {bound}, got {value!r}.")


def _check_options(top: int, min_count: int, min_chars: int, max_documents: int | None = None) -> None:
    _check_int("top", top, 1, MAX_TOP)
    _check_int("min_count", min_count, 1)
    _check_int("min_chars", min_chars, 1, MAX_WORD_CHARS)
    if max_documents is not None:
        _check_int("max_documents", max_documents, 1)


def _stop_words(stop_words: str | Collection[str] | None) -> frozenset[str]:
    if stop_words is None:
        return frozenset()
    if stop_words == "english":
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

        return frozenset(ENGLISH_STOP_WORDS)
    if isinstance(stop_words, str):
        raise ValueError(f"stop_words must be 'english', a collection of words or None, got {stop_words!r}.")
    return frozenset(w.lower() for w in stop_words)


def corpus_sources(data: DataSpec | Iterable[DataSpec]) -> list[Source]:
    """The text sources of ``data`` ("auto" reads the bundled corpus), local files checked now.

    Raises CorpusError for generated text (nothing to count), binary or non-UTF-8 text files, and a
    corpus made only of empty local files.
    """
    sources = [BundledSource() if isinstance(s, BundledSource) else s
               for s in parse_sources(data) if not isinstance(s, GeneratedSource)]
    if not sources:
        raise CorpusError("'generated' is not a corpus: discovery counts words in existing text; use 'bundled', "
                          "files, folders or 'hf:<dataset>'.")
    files = [path for s in sources if isinstance(s, FileSource) for path in s.files()]
    empty = [path for path in files if _sniff_text_file(path)]
    if files and len(empty) == len(files) == len(sources):
        raise CorpusError(f"The corpus is empty: {', '.join(map(str, empty))} hold{'s' if len(empty) == 1 else ''} "
                          "no text.")
    return sources


def _sniff_text_file(path: Path) -> bool:
    """Raise CorpusError for a binary or non-UTF-8 text file; -> whether it is empty (whitespace only)."""
    if path.suffix.lower() == ".parquet":
        return False  # a binary format by design; datasets reads and checks it
    with path.open("rb") as fh:
        head = fh.read(_SNIFF_BYTES)
        more = bool(fh.read(1))
    if b"\x00" in head:
        raise CorpusError(f"{str(path)!r} is a binary file (it contains NUL bytes; UTF-16 text?); "
                          "give UTF-8 text, .jsonl, .csv or .parquet files.")
    try:
        text = codecs.getincrementaldecoder("utf-8-sig")().decode(head, final=not more)
    except UnicodeDecodeError as exc:
        raise CorpusError(f"{str(path)!r} is not UTF-8 text (invalid byte at offset {exc.start}); "
                          "save it as UTF-8.") from None
    return not more and not text.strip()


def _describe_data(data: object) -> Any:
    if isinstance(data, (str, os.PathLike)):
        return str(data)
    if hasattr(data, "spec"):
        return data.spec
    if isinstance(data, Iterable):
        return [_describe_data(d) for d in data]
    return repr(data)


# ---------------------------------------------------------------------------------------------------------
# Reading the corpus: counts and base-tokenizer tokens, one batch of documents at a time
# ---------------------------------------------------------------------------------------------------------


def _scan(documents: Iterable[tuple[str, str]], tokenizer: PreTrainedTokenizerBase,
          count_batch: Callable[[list[str]], None]) -> tuple[int, int]:
    """Feed documents in ~1 MB batches to ``count_batch``; -> (documents, base-tokenizer tokens)."""
    n_docs = n_tokens = 0
    batch: list[str] = []
    size = 0

    def flush() -> int:
        ids = tokenizer(batch, add_special_tokens=False, return_attention_mask=False, verbose=False)["input_ids"]
        count_batch(batch)
        return sum(map(len, ids))

    for _label, text in documents:
        if not text:
            continue
        batch.append(text)
        size += len(text)
        n_docs += 1
        if size >= _DOC_BATCH_CHARS:
            n_tokens += flush()
            batch, size = [], 0
    if batch:
        n_tokens += flush()
    return n_docs, n_tokens


def _ngram_counter(max_words: int, counts: Counter[str]) -> Callable[[list[str]], None]:
    """-> a function adding to ``counts`` every 1..max_words-gram inside the texts' runs (never across
    punctuation, line breaks or double spaces)."""
    from sklearn.feature_extraction.text import CountVectorizer

    # scikit-learn's analyzer makes the n-grams, a Counter sums them: fit_transform's sparse matrix and
    # sorted vocabulary per batch measured 4-5x slower for the same counts on the bundled corpus.
    ngrams = CountVectorizer(tokenizer=str.split, token_pattern=None, lowercase=False,
                             ngram_range=(1, max_words)).build_analyzer()

    def count_batch(texts: list[str]) -> None:
        for text in texts:
            for run in _RUN.findall(text):
                counts.update(ngrams(run))

    return count_batch


def _read_corpus(data: DataSpec | Iterable[DataSpec], tokenizer: PreTrainedTokenizerBase, text_column: str,
                 max_documents: int | None, cancel: threading.Event | None,
                 count_batch: Callable[[list[str]], None], document_split: DocumentSplit | None = None,
                 ) -> tuple[list[Source], int, int]:
    sources = corpus_sources(data)
    documents = iter_documents(sources, text_column=text_column, max_documents=max_documents)
    if document_split is not None:  # the held-out documents stay unseen for a report
        documents = document_split.select(documents, "train")
    documents = _until_cancelled(documents, cancel)
    n_docs, n_tokens = _scan(documents, tokenizer, count_batch)
    if n_docs == 0:
        raise CorpusError(f"The corpus is empty: no text in {', '.join(s.spec for s in sources)}.")
    return sources, n_docs, n_tokens


# ---------------------------------------------------------------------------------------------------------
# Filters and ranking, shared by the three kinds of candidate lists
# ---------------------------------------------------------------------------------------------------------


def _cheap_reason(token: str, count: int | None, min_count: int, min_chars: int,
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


def _count_pieces(tokenizer: PreTrainedTokenizerBase, entries: list[_Entry], batch_size: int = 4096) -> None:
    for start in range(0, len(entries), batch_size):
        chunk = entries[start : start + batch_size]
        ids = tokenizer([e.token for e in chunk], add_special_tokens=False, return_attention_mask=False)["input_ids"]
        for entry, token_ids in zip(chunk, ids, strict=True):
            entry.n_pieces = len(token_ids)


def _select(tokenizer: PreTrainedTokenizerBase, entries: list[_Entry], top: int, ranked: bool,
            corpus_tokens: int | None) -> tuple[list[Candidate], list[tuple[_Entry, str]]]:
    """The first `top` entries that pass every rule of check_new_word, in rank order.

    -> (candidates, [(entry, reason)] for those refused while looking). Ranked: by tokens saved, then
    count, then the source's own order; otherwise in the source's order.
    """
    _count_pieces(tokenizer, entries)
    refused = [(e, "already one token") for e in entries if e.n_pieces < 2]
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


# ---------------------------------------------------------------------------------------------------------
# 1. Words and phrases counted in a corpus
# ---------------------------------------------------------------------------------------------------------


def discover_words(
    tokenizer: PreTrainedTokenizerBase,
    data: DataSpec | Iterable[DataSpec] = "bundled",
    top: int = 50,
    min_count: int = 2,
    min_chars: int = 3,
    max_words: int = 1,
    max_documents: int | None = None,
    text_column: str = "text",
    stop_words: str | Collection[str] | None = "english",
    cancel: threading.Event | None = None,
    model_name: str = "",
    document_split: DocumentSplit | None = None,
) -> Discovery:
    """The `top` words (and, with ``max_words`` 2 or 3, phrases) of a corpus that save the most tokens.

    ``data`` takes what contexts take ("auto"/"bundled", files, folders, "hf:<dataset>", typed sources or
    a list). Counting is case-sensitive and streams the documents in ~1 MB batches; memory holds the
    counts of distinct words/phrases, so ``max_documents`` caps very large corpora. Phrases whose first or last word is a stop word (" of the", " Minister of") are skipped unless
    ``stop_words=None``.
    """
    _check_options(top, min_count, min_chars, max_documents)
    _check_int("max_words", max_words, 1, MAX_PHRASE_WORDS)
    stop = _stop_words(stop_words)
    counts: Counter[str] = Counter()
    _sources, n_docs, n_tokens = _read_corpus(data, tokenizer, text_column, max_documents, cancel,
                                              _ngram_counter(max_words, counts), document_split)
    filtered: Counter[str] = Counter()
    entries = []
    for phrase, count in counts.items():
        token = " " + phrase
        reason = _cheap_reason(token, count, min_count, min_chars, stop)
        if reason is None:
            entries.append(_Entry(token, count))
        else:
            filtered[reason] += 1
    candidates, refused = _select(tokenizer, entries, top, ranked=True, corpus_tokens=n_tokens)
    filtered.update(reason for _e, reason in refused)
    return Discovery(model_name, _describe_data(data), "corpus", n_tokens, n_docs, candidates, dict(filtered))


# ---------------------------------------------------------------------------------------------------------
# 2. Another tokenizer's vocabulary
# ---------------------------------------------------------------------------------------------------------


def load_tokenizer(name: str | os.PathLike) -> PreTrainedTokenizerBase:
    """AutoTokenizer from a local folder or hub id (never trust_remote_code); DiscoveryError naming it."""
    text = str(name).strip()
    if not text:
        raise DiscoveryError("No tokenizer given: pass a local folder with tokenizer files or a hub id.")
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise DiscoveryError(f"Tokenizer {text!r} is a file; give the folder that holds the tokenizer files.")
    looks_local = text.startswith((".", "/", "~", "\\")) or text.count("/") > 1 or "\\" in text
    if looks_local and not path.is_dir():
        raise DiscoveryError(f"Tokenizer folder {text!r} does not exist.")
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path) if path.is_dir() else text, trust_remote_code=False)
    except Exception as exc:  # OSError, ValueError, EnvironmentError... from many loaders
        where = "the folder holds no loadable tokenizer" if path.is_dir() else "the Hugging Face Hub may be unreachable"
        raise DiscoveryError(f"Could not load tokenizer {text!r} ({where}): {_first_line(exc)}") from exc


def _marker_of(other: PreTrainedTokenizerBase, vocab: dict[str, int]) -> str:
    from .vocab import whitespace_marker

    marker = whitespace_marker(other)
    if len(marker) == 1:
        return marker
    # Small tokenizers may lack " the", and some merge across spaces ("▁the▁the"): fall back to the
    # marker that many vocabulary tokens start with.
    starts = Counter(token[0] for token in vocab if token[:1] in ("Ġ", "▁"))
    common = starts.most_common(1)
    return common[0][0] if common and common[0][1] >= 0.05 * len(vocab) else ""


def _continuation_prefix(other: PreTrainedTokenizerBase) -> str | None:
    """WordPiece's '##' (tokens with it continue a word) when the tokenizer has one."""
    backend = getattr(other, "backend_tokenizer", None)
    model = getattr(backend, "model", None)
    return getattr(model, "continuing_subword_prefix", None) or None


def _vocab_token_text(token: str, other: PreTrainedTokenizerBase, marker: str, prefix: str | None,
                      added: dict[str, Any], special: set[str]) -> tuple[str | None, str | None]:
    """-> (the token as text in " word" form, None) or (None, why it is skipped)."""
    if token in special:
        return None, "special token"
    if _BYTE_TOKEN.fullmatch(token):
        return None, "byte token"
    if token in added:
        content = added[token].content
        return (content, None) if content.startswith(" ") else (None, "word continuation (no leading space)")
    if marker and token.startswith(marker):
        body = token[len(marker):]
        if not body:
            return None, "whitespace marker alone"
        text = " " + other.convert_tokens_to_string([body])
    elif not marker and prefix and not token.startswith(prefix):
        text = " " + other.convert_tokens_to_string([token])
    else:
        # No marker: the token continues a word ("ing"); added as text it would match inside words.
        return None, "word continuation (no leading space)"
    if len(text.strip()) <= 1:
        return None, "single character"
    if "\ufffd" in text:
        return None, "partial UTF-8 bytes"
    return text, None


def candidates_from_tokenizer(
    tokenizer: PreTrainedTokenizerBase,
    other: str | os.PathLike | PreTrainedTokenizerBase,
    data: DataSpec | Iterable[DataSpec] | None = None,
    top: int = 50,
    min_count: int = 2,
    min_chars: int = 3,
    max_documents: int | None = None,
    text_column: str = "text",
    cancel: threading.Event | None = None,
    model_name: str = "",
    document_split: DocumentSplit | None = None,
) -> Discovery:
    """Tokens of another tokenizer that the model's tokenizer splits into 2+ pieces.

    Whitespace markers are mapped ('Ġ' byte-level, '▁' SentencePiece: a leading space); tokens without
    one continue a word and are skipped (added as text they would fire inside words), as are special
    and byte tokens and single characters. With ``data`` the candidates are counted in that corpus and
    ranked by tokens saved; without it they keep the other tokenizer's order (id, i.e. merge rank for BPE)
    and include word fragments (" cla" of " claimed") that a corpus would count zero times as whole words.
    """
    _check_options(top, min_count, min_chars, max_documents)
    other_tok = other if not isinstance(other, (str, os.PathLike)) else load_tokenizer(other)
    name = str(other) if isinstance(other, (str, os.PathLike)) else getattr(other, "name_or_path", "tokenizer")
    if data is not None:
        corpus_sources(data)  # fail on a bad corpus now, before reading the vocabulary
    vocab = other_tok.get_vocab()
    marker, prefix = _marker_of(other_tok, vocab), _continuation_prefix(other_tok)
    added = {t.content: t for t in other_tok.added_tokens_decoder.values()}
    special = set(other_tok.all_special_tokens) | {c for c, t in added.items() if t.special}
    filtered: Counter[str] = Counter()
    entries: dict[str, _Entry] = {}
    for token, token_id in sorted(vocab.items(), key=lambda kv: kv[1]):
        text, reason = _vocab_token_text(token, other_tok, marker, prefix, added, special)
        reason = reason or _cheap_reason(text, None, min_count, min_chars, frozenset())
        if reason is None and text in entries:
            reason = "duplicate text"
        if reason is not None:
            filtered[reason] += 1
            continue
        entries[text] = _Entry(text, None, token_id)
    n_docs = n_tokens = None
    pool = list(entries.values())
    if data is not None:
        pool, n_docs, n_tokens = _count_entries(pool, data, tokenizer, text_column, max_documents, cancel,
                                                min_count, filtered, document_split)
    candidates, refused = _select(tokenizer, pool, top, ranked=data is not None, corpus_tokens=n_tokens)
    filtered.update(reason for _e, reason in refused)
    return Discovery(model_name, None if data is None else _describe_data(data), f"tokenizer:{name}", n_tokens,
                     n_docs, candidates, dict(filtered))


def _count_entries(entries: list[_Entry], data: DataSpec | Iterable[DataSpec], tokenizer: PreTrainedTokenizerBase,
                   text_column: str, max_documents: int | None, cancel: threading.Event | None, min_count: int,
                   filtered: Counter[str], document_split: DocumentSplit | None = None,
                   ) -> tuple[list[_Entry], int, int]:
    """Count fixed candidates in a corpus with mining's boundary rules; drop those under min_count."""
    totals = [0] * len(entries)
    words = [e.token for e in entries]

    def count_batch(texts: list[str]) -> None:
        for i, n in enumerate(count_occurrences((("", t) for t in texts), words)):
            totals[i] += n

    _sources, n_docs, n_tokens = _read_corpus(data, tokenizer, text_column, max_documents, cancel, count_batch,
                                              document_split)
    kept = []
    for entry, count in zip(entries, totals, strict=True):
        entry.count = count
        if count < min_count:
            filtered["fewer than min_count occurrences"] += 1
        else:
            kept.append(entry)
    return kept, n_docs, n_tokens


# ---------------------------------------------------------------------------------------------------------
# 3. A frequency list: `word<TAB>count` lines or JSONL {"word": ..., "count": ...}
# ---------------------------------------------------------------------------------------------------------


@dataclass
class FrequencyList:
    """A parsed frequency list: (line, token, count) entries and every line that was not one."""

    path: str
    entries: list[tuple[int, str, int]]
    rejected: list[Rejection]


def _parse_line(text: str, jsonl: bool) -> tuple[str, int]:
    """One line -> (word as written, count); ValueError saying what is wrong with it."""
    if jsonl:
        try:
            row = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not JSON ({exc.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("word"), str) or "count" not in row:
            raise ValueError('expected {"word": "...", "count": N}')
        word, count = row["word"], row["count"]
    else:
        parts = text.split("\t")
        if len(parts) > 2:
            raise ValueError(f"expected word<TAB>count, got {len(parts)} tab-separated fields")
        parts = parts if len(parts) == 2 else text.rsplit(None, 1)
        if len(parts) != 2:
            raise ValueError("expected word<TAB>count (no count found)")
        word, raw = parts
        try:
            count = int(raw.strip())
        except ValueError:
            raise ValueError(f"count {raw.strip()[:20]!r} is not a whole number") from None
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"count {count!r} is not a whole number >= 0")
    return word, count


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    with path.open("rb") as fh:
        head = fh.read(_SNIFF_BYTES)
        if b"\x00" in head:
            raise DiscoveryError(f"Frequency list {str(path)!r} is a binary file (it contains NUL bytes; UTF-16 "
                                 "text?); give UTF-8 word<TAB>count lines or JSONL.")
        fh.seek(0)
        for number, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise DiscoveryError(f"Frequency list {str(path)!r} is not UTF-8 text (line {number}, byte "
                                     f"{exc.start}); save it as UTF-8.") from None
            yield number, line.rstrip("\r\n")


def read_frequency_list(path: str | os.PathLike) -> FrequencyList:
    """Parse a frequency list; bad lines are reported with their number and reason, never dropped.

    Formats: ``word<TAB>count`` (or ``word count``, the count being the last field) per line, or JSONL
    objects ``{"word": ..., "count": ...}`` (a ``.jsonl`` file or a first line starting with '{'). Words may
    be phrases of up to 3 words. A binary file, non-UTF-8 text or a file without one valid line raises
    DiscoveryError.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise DiscoveryError(f"Frequency list {str(path)!r} " + ("is a folder; give a file." if file.is_dir()
                                                                 else "does not exist."))
    entries: list[tuple[int, str, int]] = []
    rejected: list[Rejection] = []
    first_line_of: dict[str, int] = {}
    jsonl: bool | None = True if file.suffix.lower() == ".jsonl" else None
    for number, line in _lines(file):
        if not line.strip():
            continue
        if jsonl is None:
            jsonl = line.lstrip().startswith("{")
        try:
            word, count = _parse_line(line, jsonl)
            token = normalize_word(word)
        except (ValueError, WordError) as exc:
            rejected.append(Rejection(line[:80], str(exc), number))
            continue
        if token in first_line_of:
            rejected.append(Rejection(line[:80], f"duplicate of line {first_line_of[token]}", number))
            continue
        first_line_of[token] = number
        entries.append((number, token, count))
    if not entries:
        why = "; ".join(f"line {r.line}: {r.reason}" for r in rejected[:3]) or "it has no lines"
        raise DiscoveryError(f"Frequency list {str(path)!r} has no valid word<TAB>count or JSONL line ({why}).")
    return FrequencyList(str(path), entries, rejected)


def candidates_from_frequency_list(
    tokenizer: PreTrainedTokenizerBase,
    frequency_list: str | os.PathLike | FrequencyList,
    top: int = 50,
    min_count: int = 2,
    min_chars: int = 3,
    model_name: str = "",
) -> Discovery:
    """The list's words ranked by tokens saved = its count x (pieces - 1); every entry not kept is in
    ``rejected`` with its line and reason."""
    _check_options(top, min_count, min_chars)
    parsed = frequency_list if isinstance(frequency_list, FrequencyList) else read_frequency_list(frequency_list)
    filtered: Counter[str] = Counter({"invalid line or word": len(parsed.rejected)} if parsed.rejected else {})
    refused: list[Rejection] = []
    entries = []
    for number, token, count in parsed.entries:
        reason = _cheap_reason(token, count, min_count, min_chars, frozenset())
        if reason is None:
            entries.append(_Entry(token, count, number))
        else:
            refused.append(Rejection(token, reason, number))
    candidates, unsplit = _select(tokenizer, entries, top, ranked=True, corpus_tokens=None)
    refused += [Rejection(e.token, reason, e.rank) for e, reason in unsplit]
    filtered.update(r.reason for r in refused)
    rejected = sorted([*parsed.rejected, *refused], key=lambda r: r.line or 0)
    return Discovery(model_name, None, f"frequency list:{parsed.path}", None, None, candidates, dict(filtered),
                     rejected)


__all__ = [
    "MAX_TOP", "Candidate", "Discovery", "DiscoveryError", "FrequencyList", "Rejection", "candidates_from_frequency_list",
    "candidates_from_tokenizer", "corpus_sources", "discover_words", "load_tokenizer", "read_frequency_list",
]
