"""Typed text sources, parsed once from what a user types, and the readers of local files.

``parse_sources`` is the one place that turns a ``data`` argument ("auto", "bundled", "generated", a path,
"hf:<name>[:config][:split]", a typed source or a list of these) into a list of typed sources:

* ``BundledSource``: the English text shipped as test data in the gensim wheel (see ``bundled``);
* ``FileSource``: a local file or a folder of them (``.txt`` paragraphs, ``.jsonl``/``.json``/``.parquet``/
  ``.csv`` through ``datasets``);
* ``HFDataSource``: a Hugging Face dataset, streamed and capped;
* ``GeneratedSource``: top up with text the model writes (see ``generation``).

"auto" is ``BundledSource(optional=True)`` plus ``GeneratedSource()``. Every source has a ``spec``: the
string that names it in messages and that ``parse_sources`` reads back.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path


class CorpusError(ValueError):
    """A text source cannot be read or mined; the message says which one and why."""


HF_MAX_DOCUMENTS = 20_000

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

RE_PARAGRAPHS = re.compile(r"\n\s*\n")
_RE_HUB_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,95}")


# ---------------------------------------------------------------------------------------------------------
# Typed sources
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BundledSource:
    """The bundled corpus. ``optional=True`` ("auto"): skipped with a note when gensim is not installed."""

    optional: bool = False

    @property
    def spec(self) -> str:
        return "bundled"


@dataclass(frozen=True)
class GeneratedSource:
    """Top up every word that the text sources leave short with snippets the model writes."""

    @property
    def spec(self) -> str:
        return "generated"


@dataclass(frozen=True)
class FileSource:
    """One local file or a folder (every supported file inside, sorted, hidden ones skipped).

    ``text_column`` overrides the call's column for ``.jsonl``/``.json``/``.parquet``/``.csv`` files.
    """

    path: Path
    text_column: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))
        _check_column(self.text_column)

    @property
    def spec(self) -> str:
        return str(self.path)

    def files(self) -> list[Path]:
        """The files to read; raises CorpusError now when there is nothing readable."""
        item = str(self.path)
        path = self.path.expanduser()
        if path.is_file():
            if path.suffix.lower() not in FILE_BUILDERS:
                raise CorpusError(
                    f"Unsupported file type {path.suffix or '(none)'!r} for {item!r}; supported: {', '.join(FILE_BUILDERS)}."
                )
            return [path]
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
            return files
        raise CorpusError(
            f"Data source {item!r} is neither 'bundled', an existing file or folder, nor 'hf:<dataset>[:config][:split]'."
        )


@dataclass(frozen=True)
class HFDataSource:
    """A Hugging Face dataset streamed with ``datasets.load_dataset(name, config, split=..., streaming=True)``.

    ``hub_only=True`` is for names typed by a remote user: the name must be a hub dataset id and is
    looked up on the hub only (``hf://datasets/<id>``), never as a folder, a file or one of the packaged
    builders (``text``, ``json``...) that read files from the server's working directory.
    ``max_documents`` caps the documents read from it, ``text_column`` overrides the call's column and
    ``revision`` pins a hub revision (branch, tag or commit).
    """

    name: str
    config: str | None = None
    split: str = "train"
    hub_only: bool = False
    max_documents: int = HF_MAX_DOCUMENTS
    text_column: str | None = None
    revision: str | None = None

    def __post_init__(self) -> None:
        if self.hub_only:
            check_hub_dataset_id(self.name)
            for part, value in (("config", self.config), ("split", self.split)):
                if value is not None and not _RE_HUB_PART.fullmatch(value):
                    raise CorpusError(f"Bad dataset {part} {value!r}: use letters, digits, '_', '-' and '.' only.")
        self._check_options()

    def _check_options(self) -> None:
        cap = self.max_documents
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
            raise CorpusError(f"max_documents must be a positive integer, got {cap!r}.")
        if self.hub_only and cap > HF_MAX_DOCUMENTS:
            raise CorpusError(f"max_documents={cap} is over the limit of {HF_MAX_DOCUMENTS} documents.")
        _check_column(self.text_column)
        rev = self.revision
        if rev is not None and (not isinstance(rev, str) or not rev or any(ch.isspace() for ch in rev)):
            raise CorpusError(f"Bad dataset revision {rev!r}: give a branch, tag or commit id.")

    @property
    def label(self) -> str:
        """The source label of its documents."""
        return f"hf:{self.name}"

    @property
    def spec(self) -> str:
        """'hf:<name>[:config][:split]', the string ``parse_hf_spec`` reads back (options aside)."""
        parts = [self.name]
        if self.config or self.split != "train":
            parts.append(self.config or "")
        if self.split != "train":
            parts.append(self.split)
        return "hf:" + ":".join(parts)

    @property
    def load_path(self) -> str:
        # The hf://datasets/ prefix makes `datasets` skip its local-folder lookup.
        return f"hf://datasets/{self.name}" if self.hub_only else self.name

    def describe(self) -> str:
        return f"{self.name!r} (config {self.config or 'default'}, split {self.split!r})"


Source = BundledSource | FileSource | HFDataSource | GeneratedSource
DataSpec = str | os.PathLike | Source  # one source; `data` arguments take one or a list of them
_SOURCE_TYPES = (BundledSource, FileSource, HFDataSource, GeneratedSource)


def _check_column(column: str | None) -> None:
    if column is not None and (not isinstance(column, str) or not column):
        raise CorpusError("text_column must be a non-empty column name.")


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


# ---------------------------------------------------------------------------------------------------------
# parse_sources: the one parser of `data`
# ---------------------------------------------------------------------------------------------------------

_NAMED: dict[str, tuple[Source, ...]] = {
    "auto": (BundledSource(optional=True), GeneratedSource()),
    "bundled": (BundledSource(),),
    "generated": (GeneratedSource(),),
}


def parse_sources(data: DataSpec | Iterable[DataSpec], *, generation: bool = True) -> list[Source]:
    """Typed sources, in order and deduplicated, from one data spec or a list of them.

    Strings: "auto" (bundled corpus + generated top-up), "bundled", "generated", "hf:<name>[:config][:split]",
    or a file/folder path (checked when read, see ``FileSource.files``); typed sources pass through.
    ``generation=False`` (plain text readers such as ``iter_documents``) refuses "auto" and "generated".
    """
    if isinstance(data, (str, os.PathLike, *_SOURCE_TYPES)):
        items: list = [data]
    elif isinstance(data, Iterable):
        items = list(data)
    else:
        raise CorpusError(_type_message(data))
    if not items:
        what = "'auto', 'bundled', 'generated', file paths" if generation else "'bundled', file paths, folders"
        raise CorpusError(f"No data source given: use {what} or 'hf:<dataset>'.")
    sources: list[Source] = []
    for item in items:
        sources.extend(_parse_one(item, generation))
    optional = any(isinstance(s, BundledSource) and s.optional for s in sources)
    # A list naming the bundled corpus twice reads it once; any "auto" in it lets it be missing.
    unique = (BundledSource(optional) if isinstance(s, BundledSource) else s for s in sources)
    return list(dict.fromkeys(unique))


def _parse_one(item: object, generation: bool) -> tuple[Source, ...]:
    if isinstance(item, _SOURCE_TYPES):
        if isinstance(item, GeneratedSource) and not generation:
            raise CorpusError(f"{item!r} is not a text source; it is handled by collect_contexts().")
        return (item,)
    if isinstance(item, os.PathLike):
        return (FileSource(Path(item)),)
    if not isinstance(item, str):
        raise CorpusError(_type_message(item))
    spec = item.strip()
    if not spec:
        raise CorpusError(f"Empty or non-text data source {item!r}.")
    if spec in ("auto", "generated") and not generation:
        raise CorpusError(f"{spec!r} is not a text source; it is handled by collect_contexts().")
    if spec in _NAMED:
        return _NAMED[spec]
    if spec.startswith("hf:"):
        return (parse_hf_spec(spec),)
    return (FileSource(Path(spec)),)


def _type_message(item: object) -> str:
    return (
        "Data sources are strings, paths or BundledSource / FileSource / HFDataSource / GeneratedSource, "
        f"got {type(item).__name__}."
    )


# ---------------------------------------------------------------------------------------------------------
# Local file readers
# ---------------------------------------------------------------------------------------------------------


def _split_text_block(block: str) -> list[str]:
    """Documents from one blank-line separated block of a .txt file.

    A block of long lines (mean >= 200 chars) is treated as one document per line (corpus files like
    lee.cor); otherwise the lines are hard-wrapped prose and are joined with spaces into one paragraph.
    """
    out: list[str] = []
    for para in RE_PARAGRAPHS.split(block):
        lines = [ln.strip() for ln in para.splitlines() if ln.strip()]
        if not lines:
            continue
        if len(lines) > 1 and sum(map(len, lines)) / len(lines) >= 200:
            out.extend(lines)
        else:
            out.append(" ".join(lines))
    return out


def iter_local_file(path: Path, text_column: str) -> Iterator[tuple[str, str]]:
    from datasets import load_dataset

    label = f"file:{path.name}"
    builder = FILE_BUILDERS[path.suffix.lower()]
    try:
        if builder == "text":
            ds = load_dataset("text", data_files=str(path), split="train", sample_by="paragraph")
        else:
            ds = load_dataset(builder, data_files=str(path), split="train")
    except Exception as exc:  # datasets raises many types (DatasetGenerationError, ArrowInvalid, ...)
        raise CorpusError(f"Could not read {str(path)!r} as {builder}: {first_line(exc)}") from exc
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


def first_line(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    return (msg[0] if msg else type(exc).__name__)[:300]
