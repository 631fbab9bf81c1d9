"""Lens tab (/lens): layer by layer, how close the new token's state is to the original pieces', and how much
the later words attend to it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import gradio as gr
import plotly.graph_objects as go

from tokdist_core import Snippet, TokenDistillation, WordSplit

from ..components import html as H
from ..components import widgets as W
from ..components.figures import attention_figure, empty_figure, lens_figure, method_label
from ..components.parsing import as_int, pick_split
from ..components.snippets import snippet_html
from ..jobs import HEAVY, Job, answer_when_done, check_view_now
from ..runtime import MAX_APP_SNIPPETS, Runtime, gpu, user_errors
from ..state import SessionState

INTRO = """
### 7 · Lens
Inside the model, the first layers **glue the pieces of a word together** ("detokenization"). Here we look
at one snippet, layer by layer, at the position right after the word: how similar is the model's state when it
reads the **new token** to its state after the **original pieces**? 1.0 means identical. The table shows what
the model would predict next if we stopped at that layer (the *logit lens*); green cells agree with the original.
The second plot asks the opposite question: how much do the **words after** the word look at it, new token versus
original pieces?
"""
TOP_SHOWN = 3
AVERAGE_OVER = 50  # at most this many of the word's snippets enter the attention average (time stays bounded)
SIMILARITY_CAPTION = """
**How to read this plot.** Left to right are the model's layers (0 is the embedding the model reads, then one point
per block). Up is the cosine similarity between the model's state at the **new token** and its state at the last of
the **original pieces**, in this snippet: 1.0 means the same direction. Each method is one line. Token Distillation
trains exactly this, so a good new token climbs towards 1 in the later layers; the subword mean and a random row
usually stay well below it.
"""
ATTENTION_CAPTION = """
**How to read this plot.** Left to right are the model's layers. Up is how much of their attention the words
*after* the word pay to it: for each later word and each of the model's attention heads we take the share that
lands on the word, then average over heads and words. The dashed black line is the original pieces, all pieces
added together; each coloured line is a method's single new token. The left panel is the snippet above, the right
one the average over the word's snippets. A good new token draws about as much attention as the pieces did (its
line lies on the black one), so the rest of the model finds the word where it expects it. Most attention goes
elsewhere: to the words before the word (in most layers the larger part) and to the later words themselves; hover
a point to see all three shares.
"""


@dataclass
class LensTab:
    word: gr.Dropdown
    snippet: gr.Slider
    button: gr.Button
    snippet_view: gr.HTML
    plot: gr.Plot
    attention: gr.Plot
    table: gr.HTML
    details: gr.JSON


def run_lens(rt: Runtime, word: str | None, snippet_no: object, state: SessionState,
             progress: gr.Progress | None = None) -> Iterator[tuple]:
    n = as_int(snippet_no if snippet_no not in (None, "") else 1, "Snippet number", 1, 10_000)

    def checked() -> tuple[WordSplit, list, str]:  # again when its turn comes: a view may wait behind a run
        state.require_rows()
        split = pick_split(state, word)
        ctx = state.contexts.get(split.word)
        pool = (ctx.heldout or ctx.train) if ctx else []
        if not pool:
            raise gr.Error(f"No snippets for {split.display!r}; collect contexts first.")
        part = "held-out" if ctx.heldout else "training"
        if n > len(pool):
            raise gr.Error(f"{split.display!r} has {len(pool)} {part} snippet(s); pick a number from 1 to "
                           f"{len(pool)}.")
        return split, pool, part

    check_view_now(state, checked)
    td = rt.engine(state.model_name)

    def work(job: Job) -> tuple[str, go.Figure, str, go.Figure, dict]:
        split, pool, part = checked()
        return lens_views(td, split, pool[n - 1], n, pool, part, state, job)

    yield from answer_when_done(rt.jobs, state, "the lens", work, 5, progress, view=True)


def attention_views(td: TokenDistillation, split: WordSplit, snip: Snippet, n: int, pool: list[Snippet], where: str,
                    state: SessionState, job: Job | None) -> tuple[go.Figure, dict]:
    """The attention figure and its numbers: the chosen snippet, and the average over the word's snippets."""
    rows = [r for r in state.rows.values() if split.word in r.words]
    cancel = job.cancel if job is not None else None
    averaged = [s for s in pool[:AVERAGE_OVER] if s.suffix]
    one = td.attention(rows, snip, cancel=cancel) if snip.suffix else None
    average = td.attention(rows, averaged, cancel=cancel) if averaged else None
    panels = [(f"this snippet ({where} no. {n})", one), (f"average over {len(averaged)} {where} snippets", average)]
    return attention_figure(panels, split.word), {"snippet": one, "average": average}


def lens_views(td: TokenDistillation, split: WordSplit, snip: Snippet, n: int, pool: list[Snippet], where: str,
               state: SessionState, job: Job | None = None) -> tuple[str, go.Figure, str, go.Figure, dict]:
    curves = {m: td.lens(rows, snip, top_k=TOP_SHOWN)
              for m, rows in state.rows.items() if split.word in rows.words}
    attention_plot, attention = attention_views(td, split, snip, n, pool, where, state, job)

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
    view = (f"<div><b>{where.capitalize()} snippet {n} of {len(pool)}</b> for {H.esc(split.display)}:"
            f"<div class='td-card' style='margin-top:6px'>{snippet_html(td.lm.tokenizer, snip)}</div></div>")
    details = {"word": split.word, "snippet": n, "set": where, "layers": curves, "attention": attention}
    return view, lens_figure(curves, split.word), table, attention_plot, details


def build(rt: Runtime) -> LensTab:  # noqa: ARG001
    gr.Markdown(INTRO, elem_classes="td-help")
    word, snippet, button = W.picker_row("Word", (1, MAX_APP_SNIPPETS, 1, "Snippet number"),
                                         ("Look inside", "lens-btn"))
    snippet_view = gr.HTML()
    plot = gr.Plot(empty_figure("Train first, then press 'Look inside'."), label="Per-layer similarity")
    gr.Markdown(SIMILARITY_CAPTION, elem_classes="td-caption")
    attention = gr.Plot(empty_figure("Where the later words look appears here."), label="Attention to the word",
                        elem_id="attention-plot")
    gr.Markdown(ATTENTION_CAPTION, elem_classes="td-caption")
    table = gr.HTML()
    details = W.api_details("lens")
    return LensTab(word, snippet, button, snippet_view, plot, attention, table, details)


def wire(rt: Runtime, tab: LensTab, state: gr.State):
    @gpu(duration=60)
    def handler(word, snippet_no, st: SessionState, progress=gr.Progress()):  # noqa: B008 - gradio injects it
        yield from run_lens(rt, word, snippet_no, st, progress)

    return tab.button.click(user_errors(handler), [tab.word, tab.snippet, state],
                            [tab.snippet_view, tab.plot, tab.table, tab.attention, tab.details], api_name="lens",
                            **HEAVY)
