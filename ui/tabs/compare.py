"""Compare tab (/compare): held-out metrics with the best marked, neighbours, PCA map, all loss curves."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import gradio as gr
import plotly.graph_objects as go

from tokdist_core import LOWER_IS_BETTER, TokenDistillation, WordSplit, snippets_of

from ..components import html as H
from ..components import widgets as W
from ..components.figures import empty_figure, loss_figure, method_label, pca_figure
from ..components.parsing import as_int, pick_split
from ..jobs import HEAVY, Job, answer_when_done
from ..runtime import Runtime, gpu, user_errors
from ..state import SessionState

INTRO = """
### 4 · Compare
How well does each method's new token stand in for the original pieces? We feed the **held-out** snippets
(never used for training) to the model both ways and measure the difference. ★ marks the best method per word.
"""
METRIC_HELP = """
- **Hidden MSE** (lower is better): how far the model's internal state after the new token is from the state
  after the original pieces. **Hidden cosine** (higher is better): the same, as an angle (1 = identical direction).
- **Next-token KL** (lower is better): how different the model's guesses for the following words are.
- **Norm percentile**: how large the new row is compared with existing tokens (very high or very low values are unusual).
- **Time**: seconds the method took, including preparing the teacher.
"""


def _column(key: str, title: str, fmt: str) -> tuple[str, bool | None, str]:
    """(title with its ↓/↑, higher is better?, format); None = no "best" (a norm is not better when larger)."""
    lower = LOWER_IS_BETTER.get(key)
    if lower is None:
        return title, None, fmt
    return f"{title} {'↓' if lower else '↑'}", not lower, fmt


COLUMNS = {key: _column(key, title, fmt) for key, title, fmt in (
    ("hidden_mse", "hidden MSE", "{:.4f}"), ("hidden_cos", "hidden cosine", "{:.4f}"),
    ("next_token_kl", "next-token KL", "{:.4f}"), ("norm_percentile", "norm percentile", "{:.1f}"))}
MAX_NEIGHBOURS = 30
PCA_CAPTION = (
    "**How to read this map.** The model's embedding space has hundreds of directions; this map flattens it to the "
    "two that spread these points most (PC 1 across, PC 2 up; the units mean nothing on their own). ★ stars are the "
    "new rows (one per method), black squares the word's original pieces, grey dots the existing tokens closest to a "
    "new row. Points close together are similar to the model: a good new row sits near tokens of related meaning, not "
    "far away on its own.")
LOSS_CAPTION = (
    "**How to read these curves.** Across is the training step, up the loss on a log scale (each step up the same "
    "factor). One colour per method, one dash style per word. For Token Distillation the loss is how far the new "
    "token's internal states still are from those of the original pieces; for next-token prediction it is how "
    "surprised the model is by the following words, so compare a line with itself, not across methods. A curve that "
    "falls and then flattens has learned what it can. Methods that do not train (random, the means) have no curve.")


@dataclass
class CompareTab:
    word: gr.Dropdown
    neighbours: gr.Slider
    button: gr.Button
    summary: gr.Markdown
    metrics: gr.HTML
    neighbour_view: gr.HTML
    pca: gr.Plot
    losses: gr.Plot
    details: gr.JSON


def best_methods(metrics: dict[str, dict[str, dict]], word: str) -> dict[str, str]:
    best = {}
    for key, (_, higher, _) in COLUMNS.items():
        if higher is None:
            continue
        scored = [(m, per_word[word][key]) for m, per_word in metrics.items() if word in per_word]
        if len(scored) > 1:
            best[key] = (max if higher else min)(scored, key=lambda mv: mv[1])[0]
    return best


def metrics_table(state: SessionState) -> tuple[str, dict]:
    metrics = state.metrics or {}
    rows, best_all = [], {}
    for split in state.splits:
        word = split.word
        if not any(word in per_word for per_word in metrics.values()):
            continue
        best = best_methods(metrics, word)
        best_all[word] = best
        for method, per_word in metrics.items():
            if word not in per_word:
                continue
            cells = [H.esc(split.display), H.esc(method_label(method))]
            for key, (_, _, fmt) in COLUMNS.items():
                text = fmt.format(per_word[word][key])
                if best.get(key) == method:
                    text = f'<span class="td-best">★ {text}</span>'
                cells.append(f'<span class="num">{text}</span>')
            secs = state.seconds.get(method)
            cells.append(f'<span class="num">{secs:.1f}</span>' if secs is not None else "–")
            rows.append(cells)
    if not rows:
        return H.empty("No held-out numbers yet: train with at least one held-out snippet per word."), {}
    headers = ["word", "method"] + [c[0] for c in COLUMNS.values()] + ["time (s)"]
    return H.table(headers, rows), best_all


def neighbour_tables(td: TokenDistillation, state: SessionState, split: WordSplit, k: int) -> tuple[str, dict]:
    blocks, data = [], {}
    for method, rows in state.rows.items():
        if split.word not in rows.words:
            continue
        found = td.neighbours(rows, split.word, k)
        data[method] = found
        table = H.table(["#", "token", "cosine"], [
            [str(n["rank"]), f"<code>{H.esc(H.visible(n['token']))}</code>", f'<span class="num">{n["cosine"]:.3f}</span>']
            for n in found
        ])
        blocks.append(f"<div><h4>{H.esc(method_label(method))}</h4>{table}</div>")
    return f'<div class="td-side">{"".join(blocks)}</div>', data


def compare(rt: Runtime, word: str | None, k: object, state: SessionState, progress: gr.Progress | None = None
            ) -> Iterator[tuple]:
    """Check the request, then evaluate and draw in the server's job line (a generator handler)."""
    state.require_rows()
    k_i = as_int(k if k not in (None, "") else 8, "Neighbours", 1, MAX_NEIGHBOURS)
    split = pick_split(state, word)
    td = rt.engine(state.model_name)

    def work(job: Job) -> tuple[str, str, str, go.Figure, go.Figure, dict]:
        return compare_views(td, split, k_i, state, job)

    yield from answer_when_done(rt.jobs, state, "comparing methods", work, len(OUTPUT_NAMES), progress)


OUTPUT_NAMES = ("summary", "metrics", "neighbours", "pca", "losses", "details")


def compare_views(td: TokenDistillation, split: WordSplit, k: int, state: SessionState, job: Job
                  ) -> tuple[str, str, str, go.Figure, go.Figure, dict]:
    if state.metrics is None:  # e.g. a run stopped before evaluation: evaluate what finished
        heldout = snippets_of(state.contexts, state.splits, "heldout")
        if heldout:
            layer = state.train_config.get("target_layer", -1)
            state.metrics = td.evaluate(list(state.rows.values()), heldout, layer, cancel=job.cancel)
    metrics_html, best = metrics_table(state)
    neighbours_html, neighbours = neighbour_tables(td, state, split, k)
    points = td.embedding_map(list(state.rows.values()), split.word)
    words = [s.word for s in state.splits]
    losses = loss_figure(state.histories, words, "All loss curves") if any(state.histories.values()) else \
        empty_figure("None of the chosen methods trains, so there are no loss curves.")

    lines = []
    for w, per_metric in best.items():
        if "hidden_mse" in per_metric:
            lines.append(f"For **{w.strip()}**, the closest match to the original is **{method_label(per_metric['hidden_mse'])}**.")
    if state.cancelled:
        lines.append(f"*The last run was stopped ({H.esc(state.cancelled)}); only finished methods are shown.*")
    summary = "\n\n".join(lines) or "Trained rows are shown below; there are no held-out numbers."
    details = {
        "word": split.word,
        "metrics": state.metrics or {},
        "seconds": state.seconds,
        "best": best,
        "neighbours": neighbours,
        "pca": points,
        "cancelled": state.cancelled,
    }
    return summary, metrics_html, neighbours_html, pca_figure(points, split.word), losses, details


def build(rt: Runtime) -> CompareTab:  # noqa: ARG001
    gr.Markdown(INTRO, elem_classes="td-help")
    word, neighbours, button = W.picker_row("Word for neighbours and the map",
                                            (3, MAX_NEIGHBOURS, 8, "Neighbours per method"),
                                            ("Compare methods", "compare-btn"))
    summary = gr.Markdown()
    metrics = gr.HTML(H.empty("Train in the Distill tab, then press 'Compare methods'."), elem_id="metrics-table")
    with gr.Accordion("What do these numbers mean?", open=False):
        gr.Markdown(METRIC_HELP)
    gr.Markdown("#### Nearest existing tokens to each new row\nWhich tokens the model already knows "
                "are most similar to the new token? A good new row sits near related words.")
    neighbour_view = gr.HTML()
    pca = gr.Plot(empty_figure("The embedding map appears here."), label="Embedding map (PCA)")
    gr.Markdown(PCA_CAPTION, elem_classes="td-caption")
    losses = gr.Plot(empty_figure("All loss curves appear here."), label="Loss curves")
    gr.Markdown(LOSS_CAPTION, elem_classes="td-caption")
    details = W.api_details("compare")
    return CompareTab(word, neighbours, button, summary, metrics, neighbour_view, pca, losses, details)


def handler_for(rt: Runtime):
    @gpu(duration=120)
    def handler(word, k, st: SessionState, progress=gr.Progress()):  # noqa: B008 - gradio injects the tracker
        yield from compare(rt, word, k, st, progress)

    return user_errors(handler)


def outputs(tab: CompareTab) -> list:
    return [tab.summary, tab.metrics, tab.neighbour_view, tab.pca, tab.losses, tab.details]


def wire(rt: Runtime, tab: CompareTab, state: gr.State):
    return tab.button.click(handler_for(rt), [tab.word, tab.neighbours, state], outputs(tab), api_name="compare",
                            **HEAVY)
