"""Contexts tab (/contexts): collect example snippets around each word, split into train and held-out."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import gradio as gr

from tokdist_core import GENSIM_HINT, Cancelled, HFDataSource, bundled_available

from ..components import html as H
from ..components import widgets as W
from ..components.parsing import CONTEXT_SOURCES, as_int, data_spec
from ..components.snippets import snippet_html, snippet_text
from ..jobs import HEAVY, Job, answer_when_done
from ..runtime import (
    MAX_APP_HELDOUT,
    MAX_APP_SNIPPET_LEN,
    MAX_APP_SNIPPETS,
    MAX_INPUT_CHARS,
    MIN_APP_SNIPPET_LEN,
    Runtime,
    gpu,
    user_errors,
)
from ..state import SessionState

INTRO = """
### 2 · Contexts
To learn what a word means, we need **example sentences** that contain it. Each example is a short
*snippet* of text with the word near the middle. Most snippets are used for **training**; a few are kept
aside (**held-out**) to check afterwards whether the learned token really behaves like the original word.
"""

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
            source = gr.Radio(CONTEXT_SOURCES, value="auto", label="Where should the snippets come from?", elem_id="source")
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
