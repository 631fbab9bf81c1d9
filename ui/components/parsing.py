"""Input parsing shared by the tabs: numbers, uploads, the data source and the chosen word, each checked with a
message that names the field (a gr.Error the page shows)."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from tokdist_core import GENSIM_HINT, CorpusError, HFDataSource, WordSplit, bundled_available, parse_hf_spec

from ..runtime import MAX_UPLOAD_FILES, MAX_UPLOAD_MB, UPLOAD_TYPES
from ..state import SessionState

# Where the Contexts tab's snippets come from (label, value); data_spec takes the values.
CONTEXT_SOURCES = [
    ("Bundled corpus, topped up with text the model writes (auto)", "auto"),
    ("Bundled corpus only (news + 106 Wikipedia articles)", "bundled"),
    ("Text the model writes itself, starting with the word", "generated"),
    ("My uploaded files (.txt, .jsonl, .json, .parquet, .csv)", "files"),
    ("A Hugging Face dataset (needs internet)", "hf"),
]


def as_int(value: object, name: str, low: int, high: int) -> int:
    """Numbers from sliders and API clients may arrive as floats or strings; reject anything odd."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise gr.Error(f"{name} must be a whole number, got {value!r}.") from None
    if number != number or not number.is_integer():
        raise gr.Error(f"{name} must be a whole number, got {value!r}.")
    if not low <= number <= high:
        raise gr.Error(f"{name} must be between {low} and {high}, got {int(number)}.")
    return int(number)


def check_uploads(files: list | None) -> list[str]:
    """Paths of the uploaded files after checking count, type, size and that text files are text."""
    paths = [str(f) for f in (files or []) if f]
    if not paths:
        raise gr.Error("Source 'My uploaded files' is selected but no file was uploaded.")
    if len(paths) > MAX_UPLOAD_FILES:
        raise gr.Error(f"{len(paths)} files uploaded; the limit is {MAX_UPLOAD_FILES}.")
    for p in paths:
        path = Path(p)
        name = path.name
        if path.suffix.lower() not in UPLOAD_TYPES:
            raise gr.Error(f"{name!r}: unsupported file type; use one of {', '.join(UPLOAD_TYPES)}.")
        size = path.stat().st_size
        if size > MAX_UPLOAD_MB * 1024 * 1024:
            raise gr.Error(f"{name!r} is {size / 2**20:.1f} MB; the limit is {MAX_UPLOAD_MB} MB per file.")
        if size == 0:
            raise gr.Error(f"{name!r} is empty.")
        head = path.read_bytes()[:8192]
        if path.suffix.lower() == ".parquet":
            if not head.startswith(b"PAR1"):
                raise gr.Error(f"{name!r} is not a Parquet file (it lacks the PAR1 header).")
            continue
        if b"\x00" in head:
            raise gr.Error(f"{name!r} looks like a binary file, not text. Upload plain UTF-8 text.")
        try:
            head.decode("utf-8")
        except UnicodeDecodeError as exc:
            if exc.start < len(head) - 4:  # a multi-byte character cut at the 8 KB boundary is fine
                raise gr.Error(f"{name!r} is not UTF-8 text (byte {exc.start}); save it as UTF-8.") from None
    return paths


def data_spec(source: object, files: list | None, hf_name: str | None) -> tuple[str | list[str] | HFDataSource, str]:
    """-> (the `data` argument for the library, a label for the page and the export snippet).

    A remote user reaches the server's disk only through uploads: a dataset name must be a hub id.
    """
    if source is not None and not isinstance(source, str):
        raise gr.Error(f"Unknown source {source!r}; choose one of: {', '.join(v for _, v in CONTEXT_SOURCES)}.")
    source = (source or "auto").strip()
    if source in ("auto", "bundled", "generated"):
        if source == "bundled" and not bundled_available():
            raise gr.Error(f"The bundled corpus is not installed ({GENSIM_HINT}). "
                           "Choose 'auto', 'generated' or upload files.")
        return source, source
    if source == "files":
        paths = check_uploads(files)
        return paths, ", ".join(Path(p).name for p in paths)
    if source == "hf":
        name = (hf_name or "").strip()
        if not name:
            raise gr.Error("Type a Hugging Face dataset name, e.g. 'wikitext:wikitext-2-raw-v1:train'.")
        if len(name) > 200 or any(ch.isspace() for ch in name):
            raise gr.Error("A dataset name is one short id without spaces, e.g. 'wikitext:wikitext-2-raw-v1'.")
        spec = name if name.startswith("hf:") else f"hf:{name}"
        try:
            dataset = parse_hf_spec(spec, hub_only=True)
        except CorpusError as exc:
            raise gr.Error(str(exc)) from None
        return dataset, spec
    raise gr.Error(f"Unknown source {source!r}; choose one of: {', '.join(v for _, v in CONTEXT_SOURCES)}.")


def pick_split(state: SessionState, word: str | None) -> WordSplit:
    """The chosen word's split; accepts ' word', 'word' or the ␣-display form. Defaults to the first."""
    trained = [s for s in state.splits if any(s.word in r.words for r in state.rows.values())] or state.splits
    if not word:
        return trained[0]
    wanted = str(word).replace("␣", " ").strip()
    for s in trained:
        if s.word.strip() == wanted:
            return s
    raise gr.Error(f"{word!r} is not one of this session's trained words: "
                   f"{', '.join(s.display for s in trained)}.")


def split_described_lines(text: str) -> tuple[str, list[str]]:
    """The word box's text -> (the words' text, its TOKEN=TEXT lines): a line with '=' is one special token and
    its description, commas and all; every other line holds words as before."""
    words: list[str] = []
    described: list[str] = []
    for line in text.splitlines():
        (described if "=" in line else words).append(line.strip())
    return "\n".join(words), described
