"""Contexts tab (/contexts): collect example snippets around each word, split into train and held-out."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from tokdist_core import (
    GENSIM_HINT,
    Cancelled,
    CorpusError,
    HFDataSource,
    Snippet,
    bundled_available,
    parse_hf_spec,
)

from . import html as H
from . import widgets as W
from .jobs import HEAVY, Job, answer_when_done
from .runtime import (
    MAX_APP_HELDOUT,
    MAX_APP_SNIPPET_LEN,
    MAX_APP_SNIPPETS,
    MAX_INPUT_CHARS,
    MAX_UPLOAD_FILES,
    MAX_UPLOAD_MB,
    MIN_APP_SNIPPET_LEN,
    UPLOAD_TYPES,
    Runtime,
    gpu,
    user_errors,
)
from .state import SessionState

INTRO = """
### 2 · Contexts
To learn what a word means, we need **example sentences** that contain it. Each example is a short
*snippet* of text with the word near the middle. Most snippets are used for **training**; a few are kept
aside (**held-out**) to check afterwards whether the learned token really behaves like the original word.
"""

SOURCES = [
    ("Bundled corpus, topped up with text the model writes (auto)", "auto"),
    ("Bundled corpus only (news + 106 Wikipedia articles)", "bundled"),
    ("Text the model writes itself, starting with the word", "generated"),
    ("My uploaded files (.txt, .jsonl, .json, .parquet, .csv)", "files"),
    ("A Hugging Face dataset (needs internet)", "hf"),
]
SHOWN_PER_WORD = 6  # snippets shown in the table per word (all are used)


@dataclass
class ContextsTab:
    source: gr.Radio
    files: gr.File
    hf_name: gr.Textbox
    snippets: gr.Slider
    heldout: gr.Slider
    snippet_len: gr.Slider
    seed: gr.Number
    button: gr.Button
    summary: gr.Markdown
    view: gr.HTML
    details: gr.JSON


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
        raise gr.Error(f"Unknown source {source!r}; choose one of: {', '.join(v for _, v in SOURCES)}.")
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
    raise gr.Error(f"Unknown source {source!r}; choose one of: {', '.join(v for _, v in SOURCES)}.")


def _decode(tokenizer, ids) -> str:
    # Generated snippets start with the BOS token; people should see text, not "<|im_start|>".
    return tokenizer.decode(list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=False)


def snippet_html(tokenizer, snip: Snippet) -> str:
    return H.highlight_snippet(_decode(tokenizer, snip.prefix), _decode(tokenizer, snip.word_ids),
                               _decode(tokenizer, snip.suffix))


def snippet_text(tokenizer, snip: Snippet) -> str:
    return _decode(tokenizer, snip.token_ids)


def find_contexts(rt: Runtime, source: str | None, files: list | None, hf_name: str | None,
                  snippets: object, heldout: object, snippet_len: object, seed: object,
                  state: SessionState, progress: gr.Progress | None = None) -> Iterator[tuple]:
    """Check the request, then collect the snippets in the server's job line (a generator handler)."""
    state.require_splits()
    state.require_idle("collect new contexts")
    n_train = as_int(snippets, "Snippets per word", 1, MAX_APP_SNIPPETS)
    n_held = as_int(heldout, "Held-out snippets per word", 0, MAX_APP_HELDOUT)
    length = as_int(snippet_len, "Snippet length", MIN_APP_SNIPPET_LEN, MAX_APP_SNIPPET_LEN)
    seed_i = as_int(seed if seed not in (None, "") else 0, "Seed", 0, 2**31 - 1)
    if hf_name is not None and not isinstance(hf_name, str):
        raise gr.Error("The dataset name must be text.")
    if hf_name and len(hf_name) > MAX_INPUT_CHARS:
        raise gr.Error("The dataset name is far too long.")
    data, label = data_spec(source, files, hf_name)
    td = rt.engine(state.model_name)
    splits = list(state.splits)
    if data == "generated":  # "auto" generates only what the corpus lacks: its time limit says when to stop
        rt.check_estimate(td.estimate_generation(len(splits) * (n_train + n_held), length), "Generating these snippets")
    settings = {"data": "files" if isinstance(data, list) else label, "label": label, "snippets_per_token": n_train,
                "heldout_per_token": n_held, "snippet_len": length, "seed": seed_i}

    def work(job: Job) -> tuple[str, str, dict, SessionState]:
        try:
            found = td.contexts(splits, [data] if isinstance(data, HFDataSource) else data, n_train, n_held, length,
                                seed_i, progress=job.report, cancel=job.cancel)
        except Cancelled as exc:
            raise gr.Error(f"Stopped ({job.stop_reason}, {exc}); the session's snippets are unchanged.") from None
        state.reset_from_contexts()
        state.contexts, state.context_settings = found, settings
        view, summary, details = render_contexts(td, state, label)
        if job.stop_reason:
            summary = f"**Stopped** ({H.esc(job.stop_reason)}): the words marked 'not collected' have no snippets.\n\n" + summary
        if not state.usable_splits():
            job.warn("No snippets were found for any word; see the Contexts tab for details.")
        return view, summary, details, state

    yield from answer_when_done(rt.jobs, state, "collecting contexts", work, 4, progress)


def render_contexts(td, state: SessionState, label: str) -> tuple[str, str, dict]:
    found, tok = state.contexts, td.lm.tokenizer
    overview, detail_rows, words_json = [], [], {}
    for split in state.splits:
        ctx = found.get(split.word)
        if ctx is None:
            continue
        if ctx.problem:
            status = H.badge(ctx.problem, "bad" if not ctx.train else "warn")
        elif ctx.note:
            status = H.badge(ctx.note, "warn")
        else:
            status = H.badge("ready", "ok")
        sources = ", ".join(f"{H.esc(k)}: {v}" for k, v in ctx.sources.items()) or "–"
        overview.append([H.esc(split.display), f'<span class="num">{len(ctx.train)}</span>',
                         f'<span class="num">{len(ctx.heldout)}</span>', sources, status])
        shown = [("held-out", s) for s in ctx.heldout[: SHOWN_PER_WORD // 3]]
        shown += [("train", s) for s in ctx.train[: SHOWN_PER_WORD - len(shown)]]
        for part, snip in shown:
            detail_rows.append([H.esc(split.display), H.badge(part, "info" if part == "train" else "warn"),
                                H.esc(snip.source), snippet_html(tok, snip)])
        words_json[split.word] = {
            "train": len(ctx.train), "heldout": len(ctx.heldout), "sources": dict(ctx.sources),
            "problem": ctx.problem, "note": ctx.note,
            "examples": [snippet_text(tok, s) for s in (ctx.train + ctx.heldout)[:3]],
        }

    ready = state.usable_splits()
    view = H.table(["word", "train", "held-out", "where they came from", "status"], overview)
    view += "<h4 style='margin-top:14px'>Some snippets (the word is highlighted)</h4>"
    view += H.table(["word", "set", "source", "snippet"], detail_rows) if detail_rows else H.empty("No snippets found.")
    if ready:
        summary = (f"**Snippets ready for {len(ready)} of {len(state.splits)} word(s)** from *{H.esc(label)}*. "
                   "Next: the **Distill** tab trains the new tokens.")
        no_heldout = [s.display for s in ready if not found[s.word].heldout]
        if no_heldout:
            summary += f"\n\nNo held-out snippets for {', '.join(no_heldout)}: they train but are not evaluated."
    else:
        summary = ("**No snippets for any word.** Try the 'auto' or 'generated' source, upload your own text, "
                   "or pick words that appear in the corpus (e.g. Schopenhauer, Andorra, Tarkovsky).")
    details = {"source": label, "settings": state.context_settings, "words": words_json}
    return view, summary, details


def build(rt: Runtime) -> ContextsTab:  # noqa: ARG001 - same signature as the other tabs
    gr.Markdown(INTRO, elem_classes="td-help")
    if not bundled_available():
        gr.HTML(f'<div class="td-banner">The bundled corpus is not installed ({H.esc(GENSIM_HINT)}). '
                "Use generated text, uploaded files or a Hugging Face dataset.</div>")
    with gr.Row():
        with gr.Column(scale=3):
            source = gr.Radio(SOURCES, value="auto", label="Where should the snippets come from?", elem_id="source")
            files, hf_name = W.upload_inputs()
        with gr.Column(scale=2):
            snippets = W.Slider(1, MAX_APP_SNIPPETS, value=8, step=1, label="Training snippets per word",
                                 info="The paper uses 25–100; 8 is enough for a quick demo.")
            heldout = W.Slider(0, MAX_APP_HELDOUT, value=4, step=1, label="Held-out snippets per word",
                                info="Kept aside to measure quality afterwards.")
            snippet_len = W.Slider(MIN_APP_SNIPPET_LEN, MAX_APP_SNIPPET_LEN, value=32, step=1,
                                    label="Snippet length (tokens)", info="About 50 in the paper.")
            seed = W.Number(value=0, precision=0, label="Random seed", minimum=0)
    button = gr.Button("Find contexts", variant="primary", elem_id="contexts-btn")
    summary = gr.Markdown()
    view = gr.HTML(H.empty("Press 'Find contexts' after splitting your words."))
    details = W.api_details("contexts")
    return ContextsTab(source, files, hf_name, snippets, heldout, snippet_len, seed, button, summary, view, details)


def wire_handler(rt: Runtime):
    @gpu(duration=120)
    def handler(source, files, hf_name, snippets, heldout, snippet_len, seed, st: SessionState,
                progress=gr.Progress()):  # noqa: B008 - gradio injects the tracker through the default
        yield from find_contexts(rt, source, files, hf_name, snippets, heldout, snippet_len, seed, st, progress)

    return user_errors(handler)


def wire(rt: Runtime, tab: ContextsTab, state: gr.State):
    return tab.button.click(
        wire_handler(rt),
        [tab.source, tab.files, tab.hf_name, tab.snippets, tab.heldout, tab.snippet_len, tab.seed, state],
        [tab.view, tab.summary, tab.details, state], api_name="contexts", **HEAVY,
    )
