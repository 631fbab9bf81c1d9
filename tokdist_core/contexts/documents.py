"""Documents: ``(source_label, text)`` pairs read lazily from typed sources, capped and cancellable."""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import TypeVar

from ..foundations.cancel import check_cancel
from .bundled import bundled_corpus, check_bundled
from .sources import (
    HF_MAX_DOCUMENTS,
    BundledSource,
    CorpusError,
    DataSpec,
    FileSource,
    HFDataSource,
    Source,
    first_line,
    iter_local_file,
    parse_sources,
)

_Readable = BundledSource | FileSource | HFDataSource  # a FileSource here names one file
_Doc = TypeVar("_Doc", str, tuple[str, str])
SPLIT_PARTS = ("train", "heldout")


def iter_documents(
    data: DataSpec | Iterable[DataSpec],
    text_column: str = "text",
    max_documents: int | None = None,
) -> Iterator[tuple[str, str]]:
    """Yield ``(source_label, text)`` documents from one or more sources, lazily.

    ``data``: "bundled", a file path, a folder (all supported files inside, sorted), "hf:<name>[:config][:split]",
    a typed source (``BundledSource``, ``FileSource``, ``HFDataSource``) or a list of these. Sources are
    validated now (a missing file raises ``CorpusError`` at the call, not at the first ``next``).
    ``max_documents`` caps the total; an HF dataset is also capped at its own ``max_documents``
    (``HF_MAX_DOCUMENTS`` unless set).
    """
    if max_documents is not None and (
        isinstance(max_documents, bool) or not isinstance(max_documents, int) or max_documents < 1
    ):
        raise CorpusError(f"max_documents must be a positive integer or None, got {max_documents!r}.")
    if not isinstance(text_column, str) or not text_column:
        raise CorpusError("text_column must be a non-empty column name.")
    readable = _readable(parse_sources(data, generation=False))
    return _iter_sources(readable, text_column, max_documents)


def _readable(sources: list[Source]) -> list[_Readable]:
    """Check every source now and expand folders into their files."""
    out: list[_Readable] = []
    for source in sources:
        if isinstance(source, BundledSource):
            check_bundled()  # fail now, with the install hint, not halfway through a generator
            out.append(source)
        elif isinstance(source, FileSource):
            out.extend(FileSource(path, source.text_column) for path in source.files())
        elif isinstance(source, HFDataSource):
            out.append(source)
    return out


def _open(source: _Readable, text_column: str, remaining: int | None) -> Iterator[tuple[str, str]]:
    if isinstance(source, BundledSource):
        return iter(bundled_corpus())
    if isinstance(source, FileSource):
        return iter_local_file(source.path, source.text_column or text_column)
    cap = source.max_documents if remaining is None else min(source.max_documents, remaining)
    return _iter_hf(source, source.text_column or text_column, cap)


def _iter_sources(
    sources: list[_Readable], text_column: str, max_documents: int | None
) -> Iterator[tuple[str, str]]:
    remaining = max_documents
    for source in sources:
        if remaining is not None and remaining <= 0:
            return
        for doc in _open(source, text_column, remaining):
            yield doc
            if remaining is not None:
                remaining -= 1
                if remaining <= 0:
                    return


def until_cancelled(
    documents: Iterator[tuple[str, str]], cancel: threading.Event | None, every: int = 64
) -> Iterator[tuple[str, str]]:
    """Pass documents through, checking the cancel flag every few (a streamed dataset may be slow)."""
    for i, doc in enumerate(documents):
        if i % every == 0:
            check_cancel(cancel, f"stopped while reading documents ({i} read)")
        yield doc


def corpus_stats(
    data: DataSpec | Iterable[DataSpec] = "bundled", text_column: str = "text", max_documents: int | None = None
) -> dict:
    """Documents and characters per source label and in total."""
    by_source: dict[str, dict[str, int]] = {}
    for label, text in iter_documents(data, text_column=text_column, max_documents=max_documents):
        entry = by_source.setdefault(label, {"documents": 0, "chars": 0})
        entry["documents"] += 1
        entry["chars"] += len(text)
    return {
        "documents": sum(e["documents"] for e in by_source.values()),
        "chars": sum(e["chars"] for e in by_source.values()),
        "by_source": by_source,
    }


# ---------------------------------------------------------------------------------------------------------
# Hugging Face datasets
# ---------------------------------------------------------------------------------------------------------


def _iter_hf(spec: HFDataSource, text_column: str, limit: int) -> Iterator[tuple[str, str]]:
    from datasets import load_dataset

    hint = "The Hugging Face Hub may be unreachable from here; use " + (
        "the bundled corpus or uploaded files." if spec.hub_only else "'bundled', a local file or a local folder."
    )
    pinned = {"revision": spec.revision} if spec.revision is not None else {}
    try:
        ds = load_dataset(spec.load_path, spec.config, split=spec.split, streaming=True, **pinned)
    except Exception as exc:
        raise CorpusError(
            f"Could not load Hugging Face dataset {spec.describe()}: {first_line(exc)}. {hint}"
        ) from exc
    try:
        yield from _hf_texts(ds, spec, text_column, limit)
    except CorpusError:
        raise
    except Exception as exc:  # network errors surface while streaming, not at load time
        raise CorpusError(
            f"Reading Hugging Face dataset {spec.describe()} failed: {first_line(exc)}. {hint}"
        ) from exc


def _hf_texts(rows: Iterable[dict], spec: HFDataSource, text_column: str, limit: int) -> Iterator[tuple[str, str]]:
    count = 0
    checked = False
    for row in rows:
        if not checked:
            if text_column not in row:
                raise CorpusError(
                    f"Dataset {spec.name!r} has no column {text_column!r}; available columns: "
                    f"{', '.join(map(str, row)) or '(none)'}. Pick one with text_column=..."
                )
            checked = True
        value = row[text_column]
        if isinstance(value, str) and value.strip():
            yield spec.label, value
            count += 1
            if count >= limit:
                return


def iter_hf_dataset(
    name: str,
    config: str | None = None,
    split: str = "train",
    text_column: str = "text",
    max_documents: int = HF_MAX_DOCUMENTS,
) -> Iterator[tuple[str, str]]:
    """Stream ``(hf:<name>, text)`` documents from ``datasets.load_dataset(name, config, split=split, streaming=True)``.

    ``name`` may also be a local folder of parquet/jsonl files (the offline stand-in used in tests).
    Errors (unknown dataset, unreachable Hub, missing column) raise ``CorpusError`` naming the dataset.
    """
    if not isinstance(name, str) or not name.strip():
        raise CorpusError("No dataset name given.")
    source = HFDataSource(name.strip(), config or None, split or "train", max_documents=max_documents)
    return _iter_hf(source, text_column, source.max_documents)


# ---------------------------------------------------------------------------------------------------------
# Held-out documents
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DocumentSplit:
    """A document-level train / held-out split decided by each document's text alone.

    A document is held out when sha256(seed, text) read as a number in [0, 1) is below ``fraction``. The
    answer depends on nothing else (not the order, the other documents, the source or the process), so
    every rank of a distributed run and every later report agree, and duplicate texts land on the same side.
    Training (word discovery, mining) reads ``part="train"``; the domain report reads ``part="heldout"``.
    """

    fraction: float
    seed: int = 0

    def __post_init__(self) -> None:
        f = self.fraction
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not math.isfinite(f) or not 0 < f < 1:
            raise ValueError(f"heldout fraction must be a number strictly between 0 and 1 (e.g. 0.05), got {f!r}.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"split seed must be an integer, got {self.seed!r}.")

    def is_heldout(self, text: str) -> bool:
        if not isinstance(text, str):
            raise TypeError(f"a document is text, got {type(text).__name__}")
        digest = hashlib.sha256(f"{self.seed}\0".encode() + text.encode("utf-8")).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < self.fraction

    def select(self, documents: Iterable[_Doc], part: str) -> Iterator[_Doc]:
        """The documents of one part, lazily; items are texts or ``(source_label, text)`` pairs."""
        want = _check_part(part) == "heldout"
        return (doc for doc in documents if self.is_heldout(doc if isinstance(doc, str) else doc[1]) == want)


def _check_part(part: str) -> str:
    if part not in SPLIT_PARTS:
        raise ValueError(f"part must be one of {SPLIT_PARTS}, got {part!r}")
    return part


def iter_split_documents(
    data: DataSpec | Iterable[DataSpec],
    split: DocumentSplit,
    part: str,
    text_column: str = "text",
    max_documents: int | None = None,
) -> Iterator[tuple[str, str]]:
    """``iter_documents`` restricted to one part of ``split``; ``max_documents`` caps the documents of that
    part (the sources are read until enough are found or they end)."""
    if not isinstance(split, DocumentSplit):
        raise TypeError(f"split must be a DocumentSplit, got {type(split).__name__}")
    _check_part(part)
    if max_documents is not None and (
        isinstance(max_documents, bool) or not isinstance(max_documents, int) or max_documents < 1
    ):
        raise CorpusError(f"max_documents must be a positive integer or None, got {max_documents!r}.")
    selected = split.select(iter_documents(data, text_column=text_column), part)
    return selected if max_documents is None else islice(selected, max_documents)
