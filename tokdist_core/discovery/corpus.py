"""Candidates counted in a corpus: words and phrases (discover_words), and fixed candidates (count_in_corpus).

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
import os
import threading
from collections import Counter
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import regex

from ..contexts.documents import DocumentSplit, iter_documents, until_cancelled
from ..contexts.mining import count_occurrences
from ..contexts.sources import (
    BundledSource,
    CorpusError,
    DataSpec,
    FileSource,
    GeneratedSource,
    Source,
    parse_sources,
)
from ..foundations.limits import MAX_PHRASE_WORDS
from .candidates import (
    SNIFF_BYTES,
    Discovery,
    PendingCandidate,
    check_int,
    check_options,
    reason_to_skip,
    select_candidates,
)

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

_DOC_BATCH_CHARS = 1 << 20  # documents are counted in batches of about 1 MB of text: bounded memory
# A word: letters/digits, then letters, digits or combining marks (mining's continues_word). A run is a
# maximal sequence of words joined by single spaces whose first word follows a plain space: every n-gram
# inside a run is an occurrence of " w1 w2 ..." with a space before it and a word boundary after it.
_WORD = r"[\p{L}\p{N}][\p{L}\p{N}\p{M}]*"
_RUN = regex.compile(rf"(?<= ){_WORD}(?: {_WORD})*")


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
        head = fh.read(SNIFF_BYTES)
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


def describe_data(data: object) -> Any:
    if isinstance(data, (str, os.PathLike)):
        return str(data)
    if hasattr(data, "spec"):
        return data.spec
    if isinstance(data, Iterable):
        return [describe_data(d) for d in data]
    return repr(data)


# Reading the corpus: counts and base-tokenizer tokens, one batch of documents at a time


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


def read_corpus(data: DataSpec | Iterable[DataSpec], tokenizer: PreTrainedTokenizerBase, text_column: str,
                 max_documents: int | None, cancel: threading.Event | None,
                 count_batch: Callable[[list[str]], None], document_split: DocumentSplit | None = None,
                 ) -> tuple[list[Source], int, int]:
    sources = corpus_sources(data)
    documents = iter_documents(sources, text_column=text_column, max_documents=max_documents)
    if document_split is not None:  # the held-out documents stay unseen for a report
        documents = document_split.select(documents, "train")
    documents = until_cancelled(documents, cancel)
    n_docs, n_tokens = _scan(documents, tokenizer, count_batch)
    if n_docs == 0:
        raise CorpusError(f"The corpus is empty: no text in {', '.join(s.spec for s in sources)}.")
    return sources, n_docs, n_tokens


# ---------------------------------------------------------------------------------------------------------
# Words and phrases counted in a corpus
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
    keep_numbers: bool = False,
) -> Discovery:
    """The `top` words (and, with ``max_words`` 2 or 3, phrases) of a corpus that save the most tokens.

    ``data`` takes what contexts take ("auto"/"bundled", files, folders, "hf:<dataset>", typed sources or
    a list). Counting is case-sensitive and streams the documents in ~1 MB batches; memory holds the
    counts of distinct words/phrases, so ``max_documents`` caps very large corpora. Phrases whose first or last word is a stop word (" of the", " Minister of") are skipped unless
    ``stop_words=None``. Words with digits are left out when the tokenizer reads digits one at a time,
    unless ``keep_numbers``.
    """
    check_options(top, min_count, min_chars, max_documents)
    check_int("max_words", max_words, 1, MAX_PHRASE_WORDS)
    stop = _stop_words(stop_words)
    counts: Counter[str] = Counter()
    _sources, n_docs, n_tokens = read_corpus(data, tokenizer, text_column, max_documents, cancel,
                                              _ngram_counter(max_words, counts), document_split)
    filtered: Counter[str] = Counter()
    entries = []
    for phrase, count in counts.items():
        token = " " + phrase
        reason = reason_to_skip(token, count, min_count, min_chars, stop)
        if reason is None:
            entries.append(PendingCandidate(token, count))
        else:
            filtered[reason] += 1
    candidates, refused = select_candidates(tokenizer, entries, top, ranked=True, corpus_tokens=n_tokens,
                                            keep_numbers=keep_numbers)
    filtered.update(reason for _e, reason in refused)
    return Discovery(model_name, describe_data(data), "corpus", n_tokens, n_docs, candidates, dict(filtered))


def count_in_corpus(entries: list[PendingCandidate], data: DataSpec | Iterable[DataSpec], tokenizer: PreTrainedTokenizerBase,
                   text_column: str, max_documents: int | None, cancel: threading.Event | None, min_count: int,
                   filtered: Counter[str], document_split: DocumentSplit | None = None,
                   ) -> tuple[list[PendingCandidate], int, int]:
    """Count fixed candidates in a corpus with mining's boundary rules; drop those under min_count."""
    totals = [0] * len(entries)
    words = [e.token for e in entries]

    def count_batch(texts: list[str]) -> None:
        for i, n in enumerate(count_occurrences((("", t) for t in texts), words)):
            totals[i] += n

    _sources, n_docs, n_tokens = read_corpus(data, tokenizer, text_column, max_documents, cancel, count_batch,
                                              document_split)
    kept = []
    for entry, count in zip(entries, totals, strict=True):
        entry.count = count
        if count < min_count:
            filtered["fewer than min_count occurrences"] += 1
        else:
            kept.append(entry)
    return kept, n_docs, n_tokens
