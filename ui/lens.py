"""Lens tab (/lens): layer by layer, how close the new token's state is to the original pieces'."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import gradio as gr
import plotly.graph_objects as go

from tokdist_core import Snippet, TokenDistillation, WordSplit

from . import html as H
from . import widgets as W
from .compare import pick_split
from .contexts import as_int, snippet_html
from .figures import empty_figure, lens_figure, method_label
from .jobs import HEAVY, Job, answer_when_done
from .runtime import MAX_APP_SNIPPETS, Runtime, gpu, user_errors
from .state import SessionState

INTRO = """
### 7 · Lens
Inside the model, the first layers **glue the pieces of a word together** ("detokenization"). Here we look
at one snippet, layer by layer, at the position right after the word: how similar is the model's state when it
reads the **new token** to its state after the **original pieces**? 1.0 means identical. The table shows what
the model would predict next if we stopped at that layer (the *logit lens*); green cells agree with the original.
"""
TOP_SHOWN = 3


@dataclass
class LensTab:
    word: gr.Dropdown
    snippet: gr.Slider
    button: gr.Button
    snippet_view: gr.HTML
    plot: gr.Plot
    table: gr.HTML
    details: gr.JSON


def run_lens(rt: Runtime, word: str | None, snippet_no: object, state: SessionState,
             progress: gr.Progress | None = None) -> Iterator[tuple]:
    state.require_rows()
    split = pick_split(state, word)
    ctx = state.contexts.get(split.word)
    pool = (ctx.heldout or ctx.train) if ctx else []
    if not pool:
        raise gr.Error(f"No snippets for {split.display!r}; collect contexts first.")
    n = as_int(snippet_no if snippet_no not in (None, "") else 1, "Snippet number", 1, 10_000)
    if n > len(pool):
        raise gr.Error(f"{split.display!r} has {len(pool)} {'held-out' if ctx.heldout else 'training'} "
                       f"snippet(s); pick a number from 1 to {len(pool)}.")
    snip = pool[n - 1]
    td = rt.engine(state.model_name)

    def work(job: Job) -> tuple[str, go.Figure, str, dict]:
        return lens_views(td, split, snip, n, len(pool), "held-out" if ctx.heldout else "training", state)

    yield from answer_when_done(rt.jobs, state, "the lens", work, 4, progress)


def lens_views(td: TokenDistillation, split: WordSplit, snip: Snippet, n: int, pool: int, where: str,
               state: SessionState) -> tuple[str, go.Figure, str, dict]:
    curves = {m: td.lens(rows, snip, top_k=TOP_SHOWN)
              for m, rows in state.rows.items() if split.word in rows.words}

    methods = list(curves)
    table_rows = []
    layers = len(next(iter(curves.values()))) if curves else 0
    for layer in range(layers):
        teacher = curves[methods[0]][layer]["teacher_top"]
        cells = [str(layer), "<code>" + H.esc(" · ".join(H.visible(t) for t in teacher)) + "</code>"]
        for m in methods:
            entry = curves[m][layer]
            student = entry["student_top"]
            cls = ' class="td-match"' if student[:1] == teacher[:1] else ""
            cells.append(f'<span{cls}><code>{H.esc(" · ".join(H.visible(t) for t in student))}</code></span>'
                         f'<br><small>cos {entry["cosine"]:.3f}</small>')
        table_rows.append(cells)
    headers = ["layer", "original pieces (top-3 next)"] + [H.esc(method_label(m)) for m in methods]
    table = H.table(headers, table_rows)
    view = (f"<div><b>{where.capitalize()} snippet {n} of {pool}</b> for {H.esc(split.display)}:"
            f"<div class='td-card' style='margin-top:6px'>{snippet_html(td.lm.tokenizer, snip)}</div></div>")
    details = {"word": split.word, "snippet": n, "set": where, "layers": curves}
    return view, lens_figure(curves, split.word), table, details


def build(rt: Runtime) -> LensTab:  # noqa: ARG001
    gr.Markdown(INTRO, elem_classes="td-help")
    word, snippet, button = W.picker_row("Word", (1, MAX_APP_SNIPPETS, 1, "Snippet number"),
                                         ("Look inside", "lens-btn"))
    snippet_view = gr.HTML()
    plot = gr.Plot(empty_figure("Train first, then press 'Look inside'."), label="Per-layer similarity")
    table = gr.HTML()
    details = W.api_details("lens")
    return LensTab(word, snippet, button, snippet_view, plot, table, details)


def wire(rt: Runtime, tab: LensTab, state: gr.State):
    @gpu(duration=60)
    def handler(word, snippet_no, st: SessionState, progress=gr.Progress()):  # noqa: B008 - gradio injects it
        yield from run_lens(rt, word, snippet_no, st, progress)

    return tab.button.click(user_errors(handler), [tab.word, tab.snippet, state],
                            [tab.snippet_view, tab.plot, tab.table, tab.details], api_name="lens", **HEAVY)
