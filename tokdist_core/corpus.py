"""Contexts: text sources, Aho-Corasick mining, snippet windows, train/held-out split, generated snippets.

Text sources yield ``(source_label, text)`` documents lazily:

* ``"bundled"``: real English text shipped as test data inside the ``gensim`` wheel (never imported).
* local files / folders: ``.txt`` (paragraphs), ``.jsonl``/``.json``/``.parquet``/``.csv`` through ``datasets``.
* ``"hf:<name>[:config][:split]"``: a Hugging Face dataset, streamed and capped.

Mining matches every requested word's surface text in one Aho-Corasick pass, keeps occurrences with a
word boundary on both sides, and accepts an occurrence only when the tokenizer, reading the context,
produces exactly the word's standalone subword ids (see ``mine_snippets``).
"""

from __future__ import annotations

import bz2
import hashlib
import importlib.metadata
import random
import re
import threading
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ahocorasick

from .cancel import Cancelled, check_cancel
from .snippet import Snippet
from .vocab import WordSplit

if TYPE_CHECKING:  # models imports torch/transformers; only needed for type hints here
    from transformers import PreTrainedTokenizerBase

    from .models import LoadedModel


class CorpusError(ValueError):
    """A text source cannot be read or mined; the message says which one and why."""


# ---------------------------------------------------------------------------------------------------------
# Limits and constants
# ---------------------------------------------------------------------------------------------------------

MAX_SNIPPET_LEN = 1024
MAX_SNIPPETS_PER_TOKEN = 1000
HF_MAX_DOCUMENTS = 20_000
# Occurrences kept per word (reservoir sample) before tokenizing: frequent words never blow up memory/time.
MAX_OCCURRENCES_PER_WORD = 4096
GENERATE_BATCH = 32

GENSIM_VERSION = "4.4.0"
GENSIM_HINT = f"pip install --no-deps gensim=={GENSIM_VERSION}"
_GENSIM_DATA = "gensim/test/test_data/"
_BUNDLED_FILES: dict[str, str] = {
    "lee_background": "lee_background.cor",
    "lee": "lee.cor",
    "enwiki": "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2",
}
BUNDLED_SOURCES: dict[str, str] = {
    "bundled:lee_background": "Lee background corpus: 300 Australian news articles, one document per article.",
    "bundled:lee": "Lee corpus: 50 Australian news articles, one document per article.",
    "bundled:enwiki": "106 English Wikipedia articles (2016 dump excerpt), wikitext stripped, one document per paragraph.",
}
BUNDLED_DESCRIPTION = (
    "Bundled corpus (offline): English news and Wikipedia text shipped as test data in the gensim "
    f"{GENSIM_VERSION} wheel (" + ", ".join(BUNDLED_SOURCES) + ")."
)

# Extension -> `datasets` packaged builder.
FILE_BUILDERS: dict[str, str] = {
    ".txt": "text",
    ".text": "text",
    ".md": "text",
    ".jsonl": "json",
    ".json": "json",
    ".parquet": "parquet",
    ".csv": "csv",
}

SPECIAL_DATA = ("auto", "bundled", "generated")


# ---------------------------------------------------------------------------------------------------------
# Bundled corpus (gensim test data)
# ---------------------------------------------------------------------------------------------------------


def _gensim_file(name: str) -> Path:
    try:
        dist = importlib.metadata.distribution("gensim")
    except importlib.metadata.PackageNotFoundError as exc:
        raise CorpusError(
            f"The bundled corpus is read from the gensim wheel's test data, but gensim is not installed. "
            f"Install it with: {GENSIM_HINT}"
        ) from exc
    path = Path(str(dist.locate_file(_GENSIM_DATA + name)))
    if not path.is_file():
        raise CorpusError(
            f"gensim {dist.version} is installed but lacks its test data file {name!r}; reinstall with: {GENSIM_HINT}"
        )
    return path


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _read_lee(path: Path) -> list[str]:
    with open(path, encoding="utf-8", errors="replace") as fh:
        return [doc for doc in (_collapse(line) for line in fh) if doc]


_WIKI_DROP_TAGS = {
    "ref", "references", "table", "gallery", "math", "timeline", "score", "syntaxhighlight", "source",
    "imagemap", "chem", "hiero", "graph", "noinclude", "includeonly", "nowiki", "pre", "code", "sup", "sub",
}  # fmt: skip
_WIKI_DROP_LINKS = ("file:", "image:", "category:", "media:")
_RE_COMMENT = re.compile(r"<!--.*?-->", re.S)
_RE_REF = re.compile(r"<ref[^>/]*/>|<ref[^>]*>.*?</ref\s*>", re.S | re.I)
_RE_TABLE = re.compile(r"\{\|(?:(?!\{\|).)*?\|\}", re.S)  # innermost table first; looped
_RE_TEMPLATE = re.compile(r"\{\{[^{}]*\}\}")  # innermost template; looped
_RE_BRACKET_LINK = re.compile(r"\[\[(?:[^\[\]]|\[[^\[\]]*\])*\]\]")
_RE_HTML = re.compile(r"</?[a-zA-Z][^<>]*>")
_RE_CAPTION_LINE = re.compile(
    r"^\s*(?:thumb|thumbnail|frame|frameless|left|right|center|upright|\d+px)\b[^\n]*\|", re.M
)
_RE_TABLE_LINE = re.compile(r"^\s*(?:\{\||\|\}|\|-|\||!)[^\n]*$", re.M)
_RE_PARAGRAPHS = re.compile(r"\n\s*\n")
_MIN_PARAGRAPH_CHARS = 80
_WIKI_LEFTOVERS = ("{{", "}}", "[[", "]]", "{|", "|}", "<ref", "</ref", "thumb|")


def _loop_sub(pattern: re.Pattern[str], text: str, repl: str = "") -> str:
    # Nested constructs: remove innermost first until nothing changes.
    while True:
        new = pattern.sub(repl, text)
        if new == text:
            return new
        text = new


def _clean_wikitext(raw: str) -> list[str]:
    """Plain-text paragraphs of one article: markup, references, tables, templates and media removed."""
    import mwparserfromhell
    from mwparserfromhell.nodes import Heading, Tag, Template, Wikilink

    text = _RE_COMMENT.sub("", raw)
    text = _RE_REF.sub("", text)
    text = _loop_sub(_RE_TABLE, text)
    code = mwparserfromhell.parse(text)
    parts: list[str] = []
    for node in code.nodes:
        # Top-level filter; strip_code handles the rest, the regexes below catch what slips through.
        if isinstance(node, (Template, Heading)):
            continue
        if isinstance(node, Tag) and str(node.tag).strip().lower() in _WIKI_DROP_TAGS:
            continue
        if isinstance(node, Wikilink):
            title = str(node.title).strip().lower()
            if title.startswith(_WIKI_DROP_LINKS) or re.match(r"^[a-z]{2,3}(-[a-z]+)?:", title):
                continue  # media, categories and interlanguage links carry no running text
        stripped = node.__strip__(normalize=True, collapse=True, keep_template_params=False)
        if stripped:
            parts.append(str(stripped))
    text = "".join(parts)
    text = _loop_sub(_RE_TEMPLATE, text)
    text = _RE_BRACKET_LINK.sub("", text)  # leftover [[Category:...]] / [[File:...]]
    text = _RE_HTML.sub("", text)
    text = _RE_CAPTION_LINE.sub("", text)
    text = _RE_TABLE_LINE.sub("", text)
    text = text.replace("'''", "").replace("''", "")
    paragraphs = []
    for block in _RE_PARAGRAPHS.split(text):
        para = _collapse(block)
        # Short blocks are headings, list stubs or leftovers; real prose paragraphs are longer.
        if len(para) < _MIN_PARAGRAPH_CHARS or " " not in para or para.startswith(("|", "!", "{")):
            continue
        if any(mark in para for mark in _WIKI_LEFTOVERS):
            continue  # unbalanced markup the parser could not strip: drop the paragraph, not half of it
        paragraphs.append(para)
    return paragraphs


def _read_enwiki(path: Path) -> list[str]:
    docs: list[str] = []
    with bz2.open(path, "rb") as fh:
        for _event, elem in ET.iterparse(fh, events=("end",)):
            if elem.tag.rsplit("}", 1)[-1] != "page":
                continue
            ns = elem.find("{*}ns")
            text = elem.find("{*}revision/{*}text")
            is_article = ns is None or (ns.text or "0").strip() == "0"
            raw = text.text if text is not None and text.text else ""
            is_redirect = elem.find("{*}redirect") is not None or raw.lstrip().lower().startswith("#redirect")
            if is_article and raw and not is_redirect:
                docs.extend(_clean_wikitext(raw))
            elem.clear()  # keep memory flat while streaming the dump
    return docs


@lru_cache(maxsize=1)
def _bundled_corpus() -> tuple[tuple[str, str], ...]:
    """Parsed bundled corpus, cached in memory (wikitext stripping takes a few seconds once)."""
    docs: list[tuple[str, str]] = []
    for key, name in _BUNDLED_FILES.items():
        path = _gensim_file(name)
        texts = _read_enwiki(path) if name.endswith(".bz2") else _read_lee(path)
        docs.extend((f"bundled:{key}", t) for t in texts)
    return tuple(docs)


def bundled_available() -> bool:
    """True when the gensim wheel with its test data is installed."""
    try:
        for name in _BUNDLED_FILES.values():
            _gensim_file(name)
    except CorpusError:
        return False
    return True


# ---------------------------------------------------------------------------------------------------------
# Local files and HF datasets
# ---------------------------------------------------------------------------------------------------------


def _split_text_block(block: str) -> list[str]:
    """Documents from one blank-line separated block of a .txt file.

    A block of long lines (mean >= 200 chars) is treated as one document per line (corpus files like
    lee.cor); otherwise the lines are hard-wrapped prose and are joined with spaces into one paragraph.
    """
    out: list[str] = []
    for para in _RE_PARAGRAPHS.split(block):
        lines = [ln.strip() for ln in para.splitlines() if ln.strip()]
        if not lines:
            continue
        if len(lines) > 1 and sum(map(len, lines)) / len(lines) >= 200:
            out.extend(lines)
        else:
            out.append(" ".join(lines))
    return out


def _iter_local_file(path: Path, text_column: str) -> Iterator[tuple[str, str]]:
    from datasets import load_dataset

    label = f"file:{path.name}"
    builder = FILE_BUILDERS[path.suffix.lower()]
    try:
        if builder == "text":
            ds = load_dataset("text", data_files=str(path), split="train", sample_by="paragraph")
        else:
            ds = load_dataset(builder, data_files=str(path), split="train")
    except Exception as exc:  # datasets raises many types (DatasetGenerationError, ArrowInvalid, ...)
        raise CorpusError(f"Could not read {str(path)!r} as {builder}: {_first_line(exc)}") from exc
    column = "text" if builder == "text" else text_column
    if column not in ds.column_names:
        raise CorpusError(
            f"{path.name!r} has no column {column!r}; available columns: {', '.join(ds.column_names) or '(none)'}. "
            "Pick one with text_column=..."
        )
    for batch in ds.select_columns([column]).iter(batch_size=1000):
        for value in batch[column]:
            if not isinstance(value, str) or not value.strip():
                continue
            if builder == "text":
                for doc in _split_text_block(value):
                    yield label, doc
            else:
                yield label, value


def _first_line(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    return (msg[0] if msg else type(exc).__name__)[:300]


@dataclass(frozen=True)
class HFDataSource:
    """A Hugging Face dataset streamed with ``datasets.load_dataset(name, config, split=..., streaming=True)``.

    ``hub_only=True`` is for names typed by a remote user: the name must be a hub dataset id and is
    looked up on the hub only (``hf://datasets/<id>``), never as a folder, a file or one of the packaged
    builders (``text``, ``json``...) that read files from the server's working directory.
    """

    name: str
    config: str | None = None
    split: str = "train"
    hub_only: bool = False

    def __post_init__(self) -> None:
        if self.hub_only:
            check_hub_dataset_id(self.name)
            for part, value in (("config", self.config), ("split", self.split)):
                if value is not None and not _RE_HUB_PART.fullmatch(value):
                    raise CorpusError(f"Bad dataset {part} {value!r}: use letters, digits, '_', '-' and '.' only.")

    @property
    def label(self) -> str:
        return f"hf:{self.name}"

    @property
    def load_path(self) -> str:
        # The hf://datasets/ prefix makes `datasets` skip its local-folder lookup.
        return f"hf://datasets/{self.name}" if self.hub_only else self.name

    def describe(self) -> str:
        return f"{self.name!r} (config {self.config or 'default'}, split {self.split!r})"


DataSpec = str | HFDataSource  # one source; `data` arguments take one or a list of them


_RE_HUB_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,95}")


def check_hub_dataset_id(name: str) -> str:
    """Raise CorpusError unless ``name`` is a hub dataset id ('owner/name' or 'name'), never a path."""
    from datasets.packaged_modules import _PACKAGED_DATASETS_MODULES
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    hint = "Give a Hugging Face dataset id such as 'wikitext' or 'owner/name' (upload local files instead)."
    if not isinstance(name, str) or not name.strip():
        raise CorpusError(f"No dataset name given. {hint}")
    name = name.strip()
    shown = name if len(name) <= 60 else name[:57] + "..."
    try:
        validate_repo_id(name)
    except HFValidationError:
        raise CorpusError(f"{shown!r} is not a Hugging Face dataset id. {hint}") from None
    if name.count("/") > 1 or name.startswith(".") or "/." in name:
        raise CorpusError(f"{shown!r} is not a Hugging Face dataset id. {hint}")
    if name.lower() in _PACKAGED_DATASETS_MODULES:
        raise CorpusError(f"{shown!r} is a file-format builder of the datasets library, not a dataset id. {hint}")
    return name


def parse_hf_spec(spec: str, hub_only: bool = False) -> HFDataSource:
    """'hf:<name>[:config][:split]' -> name, config, split (split defaults to 'train')."""
    body = spec[3:] if spec.startswith("hf:") else spec
    parts = [p.strip() for p in body.split(":")]
    if not parts or not parts[0] or len(parts) > 3:
        raise CorpusError(
            f"Bad dataset spec {spec!r}: use 'hf:<name>', 'hf:<name>:<config>' or 'hf:<name>:<config>:<split>'."
        )
    config = parts[1] if len(parts) > 1 and parts[1] else None
    split = parts[2] if len(parts) > 2 and parts[2] else "train"
    return HFDataSource(parts[0], config, split, hub_only=hub_only)


def _iter_hf(spec: HFDataSource, text_column: str, limit: int) -> Iterator[tuple[str, str]]:
    from datasets import load_dataset

    hint = "The Hugging Face Hub may be unreachable from here; use " + (
        "the bundled corpus or uploaded files." if spec.hub_only else "'bundled', a local file or a local folder."
    )
    try:
        ds = load_dataset(spec.load_path, spec.config, split=spec.split, streaming=True)
    except Exception as exc:
        raise CorpusError(
            f"Could not load Hugging Face dataset {spec.describe()}: {_first_line(exc)}. {hint}"
        ) from exc
    count = 0
    checked = False
    try:
        for row in ds:
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
    except CorpusError:
        raise
    except Exception as exc:  # network errors surface while streaming, not at load time
        raise CorpusError(
            f"Reading Hugging Face dataset {spec.describe()} failed: {_first_line(exc)}. {hint}"
        ) from exc


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
    if isinstance(max_documents, bool) or not isinstance(max_documents, int) or max_documents < 1:
        raise CorpusError(f"max_documents must be a positive integer, got {max_documents!r}.")
    return _iter_hf(HFDataSource(name.strip(), config or None, split or "train"), text_column, max_documents)


# ---------------------------------------------------------------------------------------------------------
# iter_documents
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Source:
    kind: str  # "bundled" | "file" | "hf"
    path: Path | None = None
    hf: HFDataSource | None = None


def _resolve_one(item: str | HFDataSource) -> list[_Source]:
    if isinstance(item, HFDataSource):
        return [_Source("hf", hf=item)]
    if not isinstance(item, str) or not item.strip():
        raise CorpusError(f"Empty or non-text data source {item!r}.")
    item = item.strip()
    if item == "bundled":
        for name in _BUNDLED_FILES.values():
            _gensim_file(name)  # fail now, with the install hint, not halfway through a generator
        return [_Source("bundled")]
    if item in ("auto", "generated"):
        raise CorpusError(f"{item!r} is not a text source; it is handled by collect_contexts().")
    if item.startswith("hf:"):
        return [_Source("hf", hf=parse_hf_spec(item))]
    path = Path(item).expanduser()
    if path.is_file():
        if path.suffix.lower() not in FILE_BUILDERS:
            raise CorpusError(
                f"Unsupported file type {path.suffix or '(none)'!r} for {item!r}; supported: {', '.join(FILE_BUILDERS)}."
            )
        return [_Source("file", path=path)]
    if path.is_dir():
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file()
            and p.suffix.lower() in FILE_BUILDERS
            and not any(s.startswith(".") for s in p.relative_to(path).parts)
        )
        if not files:
            raise CorpusError(f"Folder {item!r} holds no readable text files ({', '.join(FILE_BUILDERS)}).")
        return [_Source("file", path=p) for p in files]
    raise CorpusError(
        f"Data source {item!r} is neither 'bundled', an existing file or folder, nor 'hf:<dataset>[:config][:split]'."
    )


def _resolve(data: str | HFDataSource | Iterable[str | HFDataSource]) -> list[_Source]:
    items = [data] if isinstance(data, (str, HFDataSource)) else list(data)
    if not items:
        raise CorpusError("No data source given: use 'bundled', file paths, folders or 'hf:<dataset>'.")
    sources: list[_Source] = []
    for item in items:
        sources.extend(_resolve_one(item))
    return sources


def iter_documents(
    data: DataSpec | list[DataSpec],
    text_column: str = "text",
    max_documents: int | None = None,
) -> Iterator[tuple[str, str]]:
    """Yield ``(source_label, text)`` documents from one or more sources, lazily.

    ``data``: "bundled", a file path, a folder (all supported files inside, sorted), "hf:<name>[:config][:split]"
    or a list of these. Sources are validated now (a missing file raises ``CorpusError`` at the call, not at
    the first ``next``). ``max_documents`` caps the total; HF datasets are capped at ``HF_MAX_DOCUMENTS`` each.
    """
    if max_documents is not None and (
        isinstance(max_documents, bool) or not isinstance(max_documents, int) or max_documents < 1
    ):
        raise CorpusError(f"max_documents must be a positive integer or None, got {max_documents!r}.")
    if not isinstance(text_column, str) or not text_column:
        raise CorpusError("text_column must be a non-empty column name.")
    sources = _resolve(data)
    return _iter_sources(sources, text_column, max_documents)


def _iter_sources(
    sources: list[_Source], text_column: str, max_documents: int | None
) -> Iterator[tuple[str, str]]:
    remaining = max_documents
    for source in sources:
        if remaining is not None and remaining <= 0:
            return
        if source.kind == "bundled":
            it: Iterator[tuple[str, str]] = iter(_bundled_corpus())
        elif source.kind == "file":
            assert source.path is not None
            it = _iter_local_file(source.path, text_column)
        else:
            assert source.hf is not None
            cap = HF_MAX_DOCUMENTS if remaining is None else min(HF_MAX_DOCUMENTS, remaining)
            it = _iter_hf(source.hf, text_column, cap)
        for doc in it:
            yield doc
            if remaining is not None:
                remaining -= 1
                if remaining <= 0:
                    return


def _until_cancelled(
    documents: Iterator[tuple[str, str]], cancel: threading.Event | None, every: int = 64
) -> Iterator[tuple[str, str]]:
    """Pass documents through, checking the cancel flag every few (a streamed dataset may be slow)."""
    for i, doc in enumerate(documents):
        if i % every == 0:
            check_cancel(cancel, f"stopped while reading documents ({i} read)")
        yield doc


def corpus_stats(
    data: str | list[str] = "bundled", text_column: str = "text", max_documents: int | None = None
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
# Mining
# ---------------------------------------------------------------------------------------------------------


def _continues_word(ch: str) -> bool:
    # Letters, digits and combining marks would make the match part of a longer word.
    return ch.isalnum() or unicodedata.category(ch).startswith("M")


def _word_rng(seed: int, word: str, purpose: str) -> random.Random:
    # String seeds hash with SHA-512 inside random: stable across runs and independent of PYTHONHASHSEED,
    # and each word's selection does not depend on which other words were requested.
    return random.Random(f"{seed}:{purpose}:{word}")


def _validate_snippet_len(snippet_len: int, splits: list[WordSplit]) -> None:
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


def _validate_splits(splits: list[WordSplit]) -> list[WordSplit]:
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


def _cut_window(
    ids: list[int], offsets: list[tuple[int, int]], a_rel: int, b_rel: int, split: WordSplit,
    cut_left: bool, cut_right: bool, snippet_len: int, allow_retry: bool = True,
) -> tuple[str, tuple[tuple[int, ...], int] | None]:  # fmt: skip
    """('ok', (window, start)) | ('reject', None) | ('retry', None) for one tokenized character window."""
    n = split.n_subwords
    j = next((k for k, (_s, e) in enumerate(offsets) if e > a_rel), None)
    if j is None or j + n > len(ids):
        return ("retry" if allow_retry else "reject"), None
    if tuple(ids[j : j + n]) != split.ids or offsets[j + n - 1][1] != b_rel:
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
    splits = _validate_splits(splits)
    _validate_snippet_len(snippet_len, splits)
    if max_per_word is not None and (
        isinstance(max_per_word, bool) or not isinstance(max_per_word, int) or max_per_word < 1
    ):
        raise ValueError(f"max_per_word must be a positive integer or None, got {max_per_word!r}.")
    if not getattr(tokenizer, "is_fast", False):
        raise CorpusError(
            "Mining needs a fast (Rust) tokenizer with offset mapping; this tokenizer is a slow one."
        )
    result: dict[str, list[Snippet]] = {s.word: [] for s in splits}
    if not splits:
        return result

    # --- one pass: Aho-Corasick over surfaces, boundary filter, per-word reservoir of occurrences ---
    mid = [s.word.startswith(" ") for s in splits]
    by_surface: dict[str, list[int]] = {}
    for i, s in enumerate(splits):
        by_surface.setdefault(s.word[1:] if mid[i] else s.word, []).append(i)
    automaton = ahocorasick.Automaton()
    for surface, idxs in by_surface.items():
        automaton.add_word(surface, (len(surface), tuple(idxs)))
    automaton.make_automaton()

    cap = (
        MAX_OCCURRENCES_PER_WORD
        if max_per_word is None
        else min(MAX_OCCURRENCES_PER_WORD, max(8 * max_per_word, 256))
    )
    rngs = [_word_rng(seed, s.word, "mine") for s in splits]
    reservoirs: list[list[_Occurrence]] = [[] for _ in splits]
    seen_counts = [0] * len(splits)
    docs: dict[int, tuple[str, str]] = {}
    for doc_index, (label, text) in enumerate(documents):
        if not text:
            continue
        length = len(text)
        for end, (size, idxs) in automaton.iter(text):
            b = end + 1
            if b < length and _continues_word(text[b]):
                continue
            a = b - size
            prev = text[a - 1] if a > 0 else ""
            for wi in idxs:
                if mid[wi]:
                    if prev != " ":
                        continue
                elif prev and (prev == " " or prev == "_" or prev.isalnum()):
                    continue
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

    for wi, res in enumerate(reservoirs):
        res.sort(key=lambda o: (o.doc, o.start))  # reservoir order depends on arrival; normalize first
        rngs[wi].shuffle(res)

    # --- tokenize windows in rounds, only as many as still needed ---
    need = [len(r) if max_per_word is None else min(max_per_word, len(r)) for r in reservoirs]
    cursor = [0] * len(splits)
    seen_windows: list[set[tuple[int, ...]]] = [set() for _ in splits]
    while True:
        jobs: list[_Job] = []
        for wi in range(len(splits)):
            missing = need[wi] - len(result[splits[wi].word])
            if missing <= 0 or cursor[wi] >= len(reservoirs[wi]):
                continue
            take = missing + missing // 5 + 2  # small slack for rejected/duplicate windows
            for occ in reservoirs[wi][cursor[wi] : cursor[wi] + take]:
                jobs.append(_Job(wi, occ))
            cursor[wi] += take
        if not jobs:
            break
        _run_jobs(jobs, docs, tokenizer, splits, snippet_len)
        # Commit in each word's shuffled order so the outcome does not depend on batching.
        for job in jobs:
            split = splits[job.word_index]
            bucket = result[split.word]
            if job.result is None or len(bucket) >= need[job.word_index]:
                continue
            window, start = job.result
            if window in seen_windows[job.word_index]:
                continue
            seen_windows[job.word_index].add(window)
            label = docs[job.occ.doc][0]
            bucket.append(Snippet(split.word, window, start, split.n_subwords, label))
    return result


def _run_jobs(
    jobs: list[_Job], docs: dict[int, tuple[str, str]], tokenizer: PreTrainedTokenizerBase,
    splits: list[WordSplit], snippet_len: int,
) -> None:  # fmt: skip
    """Tokenize character windows around occurrences; widen and retry the ones that were too narrow."""
    pending = jobs
    for attempt in range(4):
        texts: list[str] = []
        meta: list[tuple[int, int, int, bool, bool]] = []
        for job in pending:
            text = docs[job.occ.doc][1]
            split = splits[job.word_index]
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
            texts.append(text[lo:hi])
            meta.append((lo, job.occ.start - lo, job.occ.end - lo, lo > 0, hi < len(text)))
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
                _lo, a_rel, b_rel, cut_left, cut_right = meta[start + k]
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


# ---------------------------------------------------------------------------------------------------------
# Generated snippets
# ---------------------------------------------------------------------------------------------------------


def _int_seed(seed: int, word: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:generate:{word}".encode()).digest()[:4], "little")


# tokenizer id -> (tokenizer, vocabulary size, banned-first-token ids); identity-checked to survive id reuse.
_FIRST_TOKEN_BANS: dict[int, tuple[Any, int, list[int]]] = {}


def _first_token_bans(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Ids that must not directly follow the word: they would glue onto it or end the text.

    Banned: tokens whose text starts with a letter/digit/combining mark ("Krankenwagen" + "s"), partial
    UTF-8 byte tokens (decode to U+FFFD), empty tokens and special tokens (eos, bos...).
    """
    cached = _FIRST_TOKEN_BANS.get(id(tokenizer))
    if cached is not None and cached[0] is tokenizer and cached[1] == len(tokenizer):
        return cached[2]
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))], clean_up_tokenization_spaces=False)
    special = set(tokenizer.all_special_ids)
    banned = [
        i for i, t in enumerate(texts) if i in special or not t or t[0] == "\ufffd" or _continues_word(t[0])
    ]
    _FIRST_TOKEN_BANS[id(tokenizer)] = (tokenizer, len(tokenizer), banned)
    return banned


class _BanAtPosition:
    """Logits processor: at one sequence position, give the banned ids probability zero."""

    def __init__(self, position: int, banned: list[int], vocab_size: int) -> None:
        self.position = position
        self.banned = banned
        self.vocab_size = vocab_size  # ids at or above it are padding rows of a padded embedding matrix
        self._index: Any = None

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        if input_ids.shape[1] != self.position:
            return scores
        if self._index is None or self._index.device != scores.device:
            self._index = torch.tensor(self.banned, dtype=torch.long, device=scores.device)
        scores = scores.clone()
        scores[:, self._index] = -float("inf")
        if scores.shape[-1] > self.vocab_size:
            scores[:, self.vocab_size :] = -float("inf")
        return scores


class _StopWhenCancelled:
    """Stopping criterion: every sequence is done once the cancel flag is set (checked each new token)."""

    def __init__(self, cancel: threading.Event) -> None:
        self.cancel = cancel

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        return torch.full((input_ids.shape[0],), self.cancel.is_set(), dtype=torch.bool, device=input_ids.device)


def generate_snippets(
    lm: LoadedModel, split: WordSplit, n: int, snippet_len: int, seed: int = 0,
    cancel: threading.Event | None = None,
) -> list[Snippet]:
    """Let the model write ``n`` texts that start with the word; the sampled ids are the teacher tokenization.

    Prompt = [bos] (when the tokenizer has one) + split.ids; nucleus sampling (top_p 0.95, temperature 1,
    no top-k), deterministic for (seed, word). At the first generated position, tokens that would glue onto
    the word (letters/digits: "Krankenwagen" + "reference"), partial bytes and special tokens are masked, so
    the word stays a whole word (the same right-boundary rule as mining) and every text continues. Sequences
    are cut at the first eos; exact duplicates are dropped and up to two more rounds top up, so in rare cases
    fewer than ``n`` come back. A set ``cancel`` flag ends generation at the next token and raises Cancelled.
    """
    import torch
    from transformers import LogitsProcessorList, StoppingCriteriaList

    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_SNIPPETS_PER_TOKEN:
        raise ValueError(f"n must be an integer between 1 and {MAX_SNIPPETS_PER_TOKEN}, got {n!r}.")
    _validate_snippet_len(snippet_len, [split])
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}.")
    tok = lm.tokenizer
    bos = tok.bos_token_id
    prompt = ([bos] if bos is not None else []) + list(split.ids)
    start = len(prompt) - split.n_subwords
    max_new = snippet_len - len(prompt)
    if max_new < 1:
        raise ValueError(f"snippet_len={snippet_len} leaves no room to generate after {split.word!r}.")
    eos_ids: set[int] = set()
    for value in (tok.eos_token_id, getattr(lm.model.generation_config, "eos_token_id", None)):
        if isinstance(value, int):
            eos_ids.add(value)
        elif isinstance(value, (list, tuple)):
            eos_ids.update(int(v) for v in value)
    pad = tok.pad_token_id if tok.pad_token_id is not None else (min(eos_ids) if eos_ids else 0)
    ban = _BanAtPosition(len(prompt), _first_token_bans(tok), len(tok))
    stopping = StoppingCriteriaList([_StopWhenCancelled(cancel)] if cancel is not None else [])

    device = lm.device
    input_ids = torch.tensor([prompt], dtype=torch.long, device=device)
    attention_mask = torch.ones_like(input_ids)
    fork_devices = [device.index or 0] if device.type == "cuda" else []
    snippets: list[Snippet] = []
    seen: set[tuple[int, ...]] = set()
    # fork_rng: seeding must not disturb the caller's global RNG state.
    with torch.random.fork_rng(devices=fork_devices), torch.no_grad():
        torch.manual_seed(_int_seed(seed, split.word))
        for _round in range(3):
            missing = n - len(snippets)
            if missing <= 0:
                break
            rows: list[list[int]] = []
            while len(rows) < missing:
                check_cancel(cancel, f"stopped while generating snippets for {split.word!r}")
                batch = min(GENERATE_BATCH, missing - len(rows))
                with torch.autocast(
                    device_type=device.type,
                    dtype=lm.autocast_dtype or torch.float32,
                    enabled=lm.autocast_dtype is not None,
                ):
                    out = lm.model.generate(
                        input_ids=input_ids, attention_mask=attention_mask, do_sample=True, top_p=0.95, top_k=0,
                        temperature=1.0, max_new_tokens=max_new, num_return_sequences=batch, pad_token_id=pad,
                        logits_processor=LogitsProcessorList([ban]), stopping_criteria=stopping,
                    )  # fmt: skip
                check_cancel(cancel, f"stopped while generating snippets for {split.word!r}")
                rows.extend(out.tolist())
            for row in rows:
                cut = len(row)
                for pos in range(len(prompt), len(row)):
                    if row[pos] in eos_ids:
                        cut = pos
                        break
                ids = tuple(row[:cut])
                if len(ids) <= len(prompt) or ids in seen:
                    continue  # nothing after the word, or a duplicate
                seen.add(ids)
                snippets.append(Snippet(split.word, ids, start, split.n_subwords, "generated"))
    return snippets[:n]


# ---------------------------------------------------------------------------------------------------------
# collect_contexts
# ---------------------------------------------------------------------------------------------------------


@dataclass
class WordContexts:
    """Train and held-out snippets of one word; ``problem`` is set when the word cannot be evaluated/trained."""

    word: str
    train: list[Snippet]
    heldout: list[Snippet]
    sources: dict[str, int]  # snippets per source label over train + heldout
    problem: str | None = None  # e.g. "no occurrences in the corpus": never silently dropped
    note: str | None = None  # e.g. "only 7 of 35 snippets found": usable but fewer than asked

    @property
    def n_snippets(self) -> int:
        return len(self.train) + len(self.heldout)

    @property
    def ok(self) -> bool:
        return self.problem is None


def _check_count(name: str, value: int, minimum: int) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not minimum <= value <= MAX_SNIPPETS_PER_TOKEN
    ):
        raise ValueError(
            f"{name} must be an integer between {minimum} and {MAX_SNIPPETS_PER_TOKEN}, got {value!r}."
        )


def split_train_heldout(
    snippets: list[Snippet], snippets_per_token: int, heldout_per_token: int
) -> tuple[list[Snippet], list[Snippet]]:
    """Held-out first, train next, from an already shuffled list.

    With fewer snippets than asked, split proportionally, keeping at least one held-out snippet when there
    are two or more (and at least one for training).
    """
    k = len(snippets)
    if k >= snippets_per_token + heldout_per_token:
        n_held = heldout_per_token
    elif heldout_per_token == 0 or k == 0:
        n_held = 0
    else:
        n_held = round(k * heldout_per_token / (snippets_per_token + heldout_per_token))
        n_held = min(max(n_held, 1 if k >= 2 else 0), k - 1)
    heldout = snippets[:n_held]
    train = snippets[n_held : n_held + snippets_per_token]
    return train, heldout


def _source_label(item: DataSpec) -> str:
    return item.label if isinstance(item, HFDataSource) else item


def _parse_data(data: DataSpec | list[DataSpec]) -> tuple[list[DataSpec], bool, bool]:
    """-> (corpus sources, use_generation, auto)."""
    items = [data] if isinstance(data, (str, HFDataSource)) else list(data)
    if not items:
        raise CorpusError(
            "No data source given: use 'auto', 'bundled', 'generated', file paths or 'hf:<dataset>'."
        )
    corpus: list[DataSpec] = []
    generate = auto = False
    for item in items:
        if isinstance(item, HFDataSource):
            corpus.append(item)
            continue
        if not isinstance(item, str):
            raise CorpusError(f"Data sources are strings or HFDataSource, got {type(item).__name__}.")
        item = item.strip()
        if item == "auto":
            auto = generate = True
            corpus.append("bundled")
        elif item == "generated":
            generate = True
        else:
            corpus.append(item)
    return list(dict.fromkeys(corpus)), generate, auto


def _word_contexts(word: str, snippets: list[Snippet], snippets_per_token: int, heldout_per_token: int,
                   corpus: str, generated: bool, notes: list[str]) -> WordContexts:
    """Split one word's shuffled snippets and say what is missing (`corpus`: the sources mined, or '')."""
    train, heldout = split_train_heldout(snippets, snippets_per_token, heldout_per_token)
    sources: dict[str, int] = {}
    for snip in train + heldout:
        sources[snip.source] = sources.get(snip.source, 0) + 1
    wanted = snippets_per_token + heldout_per_token
    problem = None
    if not snippets:
        problem = f"no occurrences in the corpus ({corpus})" if corpus else "generation produced no usable snippets"
        if corpus and not generated:
            problem += "; try data='auto' to top up with generated text"
    elif len(snippets) == 1 and heldout_per_token > 0:
        problem = "only 1 snippet found: used for training, none held out for evaluation"
    elif len(snippets) < wanted:
        notes = [*notes, f"only {len(snippets)} of {wanted} snippets: {len(train)} train / {len(heldout)} held-out"]
    return WordContexts(word=word, train=train, heldout=heldout, sources=sources, problem=problem,
                        note="; ".join(notes) or None)


def collect_contexts(
    lm: LoadedModel,
    splits: list[WordSplit],
    data: DataSpec | list[DataSpec] = "auto",
    snippets_per_token: int = 25,
    heldout_per_token: int = 10,
    snippet_len: int = 50,
    seed: int = 0,
    text_column: str = "text",
    progress: Callable[[float, str], None] | None = None,
    max_documents: int | None = None,
    cancel: threading.Event | None = None,
) -> dict[str, WordContexts]:
    """Mine (and/or generate) snippets for each word and split them into disjoint train / held-out sets.

    ``data``: "auto" (bundled corpus, topped up with generated snippets), "bundled", "generated", file
    path(s), folder(s), "hf:<name>[:config][:split]", or a list mixing these ("generated" in a list means
    top up with generation). Deterministic for a seed.

    A set ``cancel`` flag stops the work at the next document batch or generated token: stopped while
    mining, it raises Cancelled; stopped while generating, the words finished so far keep their
    snippets and the others get a ``problem`` saying they were not collected.
    """
    splits = _validate_splits(splits)
    if not splits:
        raise ValueError("No words given.")
    _check_count("snippets_per_token", snippets_per_token, 1)
    _check_count("heldout_per_token", heldout_per_token, 0)
    _validate_snippet_len(snippet_len, splits)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}.")
    corpus, generate, auto = _parse_data(data)
    report = progress or (lambda _f, _m: None)
    wanted = snippets_per_token + heldout_per_token

    notes: list[str] = []
    if auto and not bundled_available():
        corpus = [c for c in corpus if c != "bundled"]
        notes.append(f"bundled corpus unavailable ({GENSIM_HINT}); generated snippets only")

    mined: dict[str, list[Snippet]] = {s.word: [] for s in splits}
    if corpus:
        label = ", ".join(map(_source_label, corpus))
        report(0.0, f"Reading and mining {label}")
        documents = _until_cancelled(iter_documents(corpus, text_column=text_column, max_documents=max_documents),
                                     cancel)
        mined = mine_snippets(documents, lm.tokenizer, splits, snippet_len, max_per_word=wanted, seed=seed)
        report(0.3 if generate else 0.9, f"Mined {sum(map(len, mined.values()))} snippets from {label}")

    result: dict[str, WordContexts] = {}
    to_generate = [s for s in splits if generate and len(mined[s.word]) < wanted]
    stopped: str | None = None
    mined_from = ", ".join(map(_source_label, corpus))
    for i, split in enumerate(splits):
        snippets = list(mined[split.word])
        if split in to_generate and stopped is None:
            report(
                0.3 + 0.65 * to_generate.index(split) / len(to_generate),
                f"Generating snippets for {split.display!r}",
            )
            try:
                snippets.extend(generate_snippets(lm, split, wanted - len(snippets), snippet_len, seed, cancel))
            except Cancelled as exc:
                stopped = str(exc)
        if stopped is not None and split in to_generate:
            result[split.word] = WordContexts(split.word, [], [], {}, problem=f"not collected: {stopped}")
            continue
        if split in to_generate:
            # Mix sources so that held-out and train both see corpus and generated text.
            _word_rng(seed, split.word, "split").shuffle(snippets)
        result[split.word] = _word_contexts(split.word, snippets, snippets_per_token, heldout_per_token, mined_from,
                                            generate, notes)
        if not generate:
            report(0.9 + 0.1 * (i + 1) / len(splits), f"Split {split.display!r}")
    report(1.0, "Contexts ready")
    return result


__all__ = [
    "BUNDLED_DESCRIPTION",
    "BUNDLED_SOURCES",
    "CorpusError",
    "DataSpec",
    "HFDataSource",
    "HF_MAX_DOCUMENTS",
    "MAX_SNIPPET_LEN",
    "MAX_SNIPPETS_PER_TOKEN",
    "WordContexts",
    "bundled_available",
    "check_hub_dataset_id",
    "collect_contexts",
    "corpus_stats",
    "generate_snippets",
    "iter_documents",
    "iter_hf_dataset",
    "mine_snippets",
    "parse_hf_spec",
    "split_train_heldout",
]
