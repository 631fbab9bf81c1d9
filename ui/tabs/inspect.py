"""Inspect tab (/inspect, /add_snippet, /retrain_word): every snippet's loss, worst first; edit, add, re-train one word."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import gradio as gr
import pandas as pd
import plotly.graph_objects as go

from tokdist_core import TokenDistillation, WordInspection, WordSplit

from ..components import html as H
from ..components import widgets as W
from ..components.figures import SET_COLOURS, empty_figure, method_label, snippet_loss_figure
from ..components.parsing import pick_split
from ..components.snippet_editor import (
    NEW_SNIPPET,
    add_snippet,
    replace_index,
    retrain_word,
    run_config,
    save_as_choices,
    trained_methods,
    word_contexts,
)
from ..components.snippets import snippet_html, snippet_preview, snippet_text
from ..jobs import HEAVY, LIGHT, Job, answer_when_done, check_view_now
from ..runtime import Runtime, gpu, user_errors
from ..state import SessionState

INTRO = """
### 8 · Inspect
Which example sentences does the new token handle well, and which badly? For one word, every snippet gets its
own **loss**: how far the model's internal states with the new token are from its states with the original
pieces (lower is better). **Training** snippets are the ones the new row learned from; **held-out** snippets
were kept aside to test it. The worst come first. You can also **write your own snippet**, add it to the
training snippets and **re-train just this word**.
"""
FIGURE_CAPTION = f"""
<small>**How to read this chart.** One bar per snippet of the word, the worst on the left. A bar's height is
that snippet's loss: how far the model's internal states after the new token are from its states after the
original pieces (the mean squared difference at the layer training matches, averaged over the word's position
and the tokens after it: for a training snippet the few tokens training reads, for a held-out one all of
them). <span style="color:{SET_COLOURS['train']}">**Teal**</span> bars are training snippets,
the ones the new row learned from; <span style="color:{SET_COLOURS['heldout']}">**amber**</span> bars are held-out
snippets it never saw. The dashed lines are the two averages, each snippet counted by its number of positions:
the teal one is the training loss, the amber one is the hidden MSE the Compare tab reports. **Good:** low bars.
The two lines cover different positions (a training snippet only the few training reads, where the error is
largest), so they need not meet. A tall bar is a snippet where the new token does not yet stand in for the
pieces: find it in the table below, where the word is highlighted.</small>
"""
TABLE_CAPTION = ("<small>Click a column header to sort by it; click a row to copy that snippet into the editor "
                 "below. *Positions* is how many tokens the loss averages over: the word and the tokens after "
                 "it that count (a training snippet: those training reads; a held-out snippet: all "
                 "of them; the tokens before the word are the same either way).</small>")
EDIT_HELP = """
#### Write or edit a snippet
Write a sentence or two that uses the word as running text (mid-sentence, after a space), or click a row above
to start from one. **Add to training snippets** adds it as a new training snippet, or replaces the training
snippet chosen under *Save as*; nothing is trained yet, and its loss in the table is still the one under the old
row. **Re-train this word** then trains this one word again with the settings of your last run, for every trained
method, and replaces only its rows and numbers: the other words keep theirs, since a word's row never depends on
the other words trained beside it. Held-out snippets stay as they are, so the held-out loss stays a fair test.
"""
TABLE_HEADERS = ["snippet", "set", "loss", "positions", "text (the word is highlighted)"]


@dataclass
class InspectTab:
    word: gr.Dropdown
    method: gr.Dropdown
    button: gr.Button
    summary: gr.Markdown
    plot: gr.Plot
    table: gr.Dataframe
    details: gr.JSON
    save_as: gr.Dropdown
    text: gr.Textbox
    add: gr.Button
    retrain: gr.Button
    edit_status: gr.Markdown
    edit_details: gr.JSON


def pick_method(state: SessionState, split: WordSplit, method: object) -> str:
    methods = trained_methods(state, split.word)
    if not methods:
        raise gr.Error(f"No trained rows for {split.display!r}: train it in the Distill tab first.")
    if method in (None, ""):
        return "tokdist" if "tokdist" in methods else methods[-1]
    if not isinstance(method, str) or method not in methods:
        raise gr.Error(f"{method!r} was not trained for {split.display!r} in this session; "
                       f"choose one of {', '.join(methods)}.")
    return method


# -- /inspect ----------------------------------------------------------------------------------------------
def run_inspect(rt: Runtime, word: str | None, method: object, state: SessionState,
                progress: gr.Progress | None = None) -> Iterator[tuple]:
    def checked() -> tuple[WordSplit, str]:  # again when its turn comes: a view may wait behind a run
        state.require_rows()
        split = pick_split(state, word)
        chosen = pick_method(state, split, method)
        word_contexts(state, split)
        return split, chosen

    check_view_now(state, checked)
    td = rt.engine(state.model_name)

    def work(job: Job) -> tuple[str, go.Figure, pd.DataFrame, dict]:  # noqa: ARG001 - a few forward passes
        return inspect_views(td, *checked(), state)

    yield from answer_when_done(rt.jobs, state, "inspecting snippets", work, 4, progress, view=True)


def inspect_views(td: TokenDistillation, split: WordSplit, method: str, state: SessionState
                  ) -> tuple[str, go.Figure, pd.DataFrame, dict]:
    ctx = state.contexts[split.word]
    rows = [state.rows[m] for m in trained_methods(state, split.word)]
    report = td.snippet_losses(rows, split.word, ctx.train, ctx.heldout, run_config(state))
    tok = td.lm.tokenizer
    worst = report.worst_first(method)
    table = pd.DataFrame(
        [[s.label, "train" if s.part == "train" else "held-out", round(s.losses[method], 5), s.positions,
          snippet_html(tok, s.snippet)] for s in worst],
        columns=TABLE_HEADERS,
    )
    entries = [{"id": s.label, "set": s.part, "loss": s.losses[method], "positions": s.positions,
                "preview": H.esc(snippet_preview(tok, s.snippet))} for s in worst]
    means = {part: report.mean(method, part) for part in ("train", "heldout")}
    figure = snippet_loss_figure(entries, means, split.word, method)
    compare_mse = ((state.metrics or {}).get(method) or {}).get(split.word, {}).get("hidden_mse")
    details = {
        **report.to_json(),
        "method": method,
        "shown": [{"id": s.label, "set": s.part, "loss": s.losses[method], "positions": s.positions,
                   "text": snippet_text(tok, s.snippet), "source": s.snippet.source} for s in worst],
        "compare_hidden_mse": compare_mse,
        "stale": state.stale_words.get(split.word),
        "retrained": state.retrained.get(split.word),
    }
    return _inspect_summary(split, method, report, worst, compare_mse, state), figure, table, details


def _inspect_summary(split: WordSplit, method: str, report: WordInspection, worst: list, compare_mse: float | None,
                     state: SessionState) -> str:
    train, held = report.mean(method, "train"), report.mean(method, "heldout")
    n_train, n_held = len(report.part("train")), len(report.part("heldout"))
    lines = [f"**{H.esc(split.display)}** with **{H.esc(method_label(method))}**: {n_train} training and "
             f"{n_held} held-out snippet(s)."]
    if train is not None:
        lines.append(f"Average training loss **{train:.4f}**: the trainer's loss over all {n_train} training "
                     "snippets (each counted by its positions).")
    if held is not None:
        same = f", the hidden MSE the Compare tab shows ({compare_mse:.4f})" if compare_mse is not None else ""
        lines.append(f"Average held-out loss **{held:.4f}**{same}.")
    if worst:
        top = worst[0]
        lines.append(f"The worst snippet is **{top.label}** (loss {top.losses[method]:.4f}).")
    if "subword_mean" in report.methods and method != "subword_mean" and train is not None:
        start = report.mean("subword_mean", "train")
        lines.append(f"Before training (the subword mean) the training loss was {start:.4f}.")
    stale = state.stale_words.get(split.word)
    if stale:
        lines.append(f"⚠ {H.esc(stale)} since this word was trained: these losses are under its old row. "
                     "Press **Re-train this word** to learn from the current snippets.")
    return lines[0] + "\n\n" + "\n".join(f"- {line}" for line in lines[1:])


# -- the page ----------------------------------------------------------------------------------------------
def build(rt: Runtime) -> InspectTab:  # noqa: ARG001
    gr.Markdown(INTRO, elem_classes="td-help")
    with gr.Row():
        word = gr.Dropdown(choices=[], label="Word", allow_custom_value=True, scale=2, elem_id="inspect-word")
        method = gr.Dropdown(choices=[], label="Method (whose loss is sorted)", allow_custom_value=True, scale=2,
                             elem_id="inspect-method")
        button = gr.Button("Inspect snippets", variant="primary", elem_id="inspect-btn", scale=1)
    summary = gr.Markdown(elem_id="inspect-summary")
    plot = gr.Plot(empty_figure("Train first, then press 'Inspect snippets'."), label="Loss per snippet",
                   elem_id="inspect-plot")
    gr.Markdown(FIGURE_CAPTION)
    table = gr.Dataframe(headers=TABLE_HEADERS, datatype=["str", "str", "number", "number", "html"],
                         interactive=False, wrap=True, max_height=520, elem_id="inspect-table",
                         column_widths=["9%", "8%", "8%", "8%", "67%"], label="Snippets, worst first")
    gr.Markdown(TABLE_CAPTION)
    details = W.api_details("inspect")
    gr.Markdown(EDIT_HELP, elem_classes="td-help")
    with gr.Row():
        text = gr.Textbox(label="Snippet text (must contain the word)", lines=4, max_lines=10, scale=4,
                          elem_id="snippet-text", placeholder="Write a sentence or two that uses the word.")
        with gr.Column(scale=1, min_width=220):
            save_as = gr.Dropdown(choices=[("a new training snippet", NEW_SNIPPET)], value=NEW_SNIPPET,
                                  label="Save as", allow_custom_value=True, elem_id="save-as")
            add = gr.Button("Add to training snippets", elem_id="add-snippet-btn")
            retrain = gr.Button("Re-train this word", variant="primary", elem_id="retrain-btn")
    edit_status = gr.Markdown(elem_id="edit-status")
    edit_details = W.api_details("add_snippet and /retrain_word")
    return InspectTab(word, method, button, summary, plot, table, details, save_as, text, add, retrain,
                      edit_status, edit_details)


def handler_for(rt: Runtime):
    @gpu(duration=60)
    def handler(word, method, st: SessionState, progress=gr.Progress()):  # noqa: B008 - gradio injects it
        yield from run_inspect(rt, word, method, st, progress)

    return user_errors(handler)


PRIVATE = {"api_visibility": "private", "show_progress": "hidden"}  # page-only events (not in the API)


def pickers(st: SessionState, word, method):
    """Words and methods this session trained; keeps the current picks while they stay valid."""
    splits = [s for s in st.splits if trained_methods(st, s.word)]
    words = [(s.display, s.word) for s in splits]
    chosen = next((s for s in splits if s.word == word), splits[0] if splits else None)
    methods = [(method_label(m), m) for m in trained_methods(st, chosen.word)] if chosen else []
    names = [m for _, m in methods]
    keep = method if method in names else ("tokdist" if "tokdist" in names else (names[-1] if names else None))
    return (gr.update(choices=words, value=chosen.word if chosen else None),
            gr.update(choices=methods, value=keep),
            gr.update(choices=save_as_choices(st, chosen), value=NEW_SNIPPET))


def edit_choices(st: SessionState, word):
    try:
        split = pick_split(st, word) if st.splits else None
    except gr.Error:
        split = None
    return gr.update(choices=save_as_choices(st, split), value=NEW_SNIPPET)


def _wire_editor(rt: Runtime, tab: InspectTab, state: gr.State) -> None:
    """Page-only helpers of the editor: a chosen or clicked snippet goes into the text box."""

    def load_saved(st: SessionState, word, save_as):
        """Choosing 'replace train N' puts that snippet's text into the editor."""
        if not st.rows:
            return gr.skip()
        split = pick_split(st, word)
        index = replace_index(save_as, len(st.contexts[split.word].train)) if split.word in st.contexts else None
        if index is None:
            return gr.skip()
        return snippet_text(rt.model(st.model_name).tokenizer, st.contexts[split.word].train[index])

    def pick_row(st: SessionState, word, evt: gr.SelectData):
        """A clicked table row goes into the editor: a training snippet to replace, a held-out one to copy."""
        label = str((evt.row_value or [""])[0])
        part, _, number = label.rpartition(" ")
        if not st.rows:
            return gr.skip(), gr.skip(), gr.skip()
        split = pick_split(st, word)
        ctx = st.contexts.get(split.word)
        pool = (ctx.train if part == "train" else ctx.heldout) if ctx else []
        if not number.isdigit() or not 1 <= int(number) <= len(pool):
            return gr.skip(), gr.skip(), gr.skip()
        text = snippet_text(rt.model(st.model_name).tokenizer, pool[int(number) - 1])
        if part == "train":
            return (gr.update(choices=save_as_choices(st, split), value=label), text,
                    f"Editing **{label}**: change the text and press **Add to training snippets** to replace it.")
        return gr.update(choices=save_as_choices(st, split), value=NEW_SNIPPET), text, (
            f"Copied **{label}**. Held-out snippets stay as they are; your edit becomes a new training snippet.")

    # These two raise only gr.Error, and Gradio finds the SelectData argument by pick_row's own signature.
    tab.save_as.input(load_saved, [state, tab.word, tab.save_as], [tab.text], **PRIVATE, **LIGHT)
    tab.table.select(pick_row, [state, tab.word], [tab.save_as, tab.text, tab.edit_status], **PRIVATE, **LIGHT)


def wire(rt: Runtime, tab: InspectTab, state: gr.State, tabs: gr.Tabs):
    private = PRIVATE
    view = [tab.summary, tab.plot, tab.table, tab.details]
    tabs.select(pickers, [state, tab.word, tab.method], [tab.word, tab.method, tab.save_as], **private, **LIGHT)
    tab.word.input(edit_choices, [state, tab.word], [tab.save_as], **private, **LIGHT)
    _wire_editor(rt, tab, state)

    inspect_event = tab.button.click(handler_for(rt), [tab.word, tab.method, state], view, api_name="inspect",
                                     **HEAVY)
    inspect_event.success(edit_choices, [state, tab.word], [tab.save_as], **private, **LIGHT)

    def add_handler(word, text, save_as, st: SessionState):
        return add_snippet(rt, word, text, save_as, st)

    # After a change the table is drawn again, so the new snippet shows its loss (under the old row).
    (tab.add.click(user_errors(add_handler), [tab.word, tab.text, tab.save_as, state],
                   [tab.edit_status, tab.edit_details], api_name="add_snippet", **LIGHT)
     .success(edit_choices, [state, tab.word], [tab.save_as], **private, **LIGHT)
     .success(handler_for(rt), [tab.word, tab.method, state], view, api_visibility="private", **HEAVY))

    @gpu(duration=300)
    def retrain_handler(word, st: SessionState, progress=gr.Progress()):  # noqa: B008 - gradio injects it
        yield from retrain_word(rt, word, st, progress)

    (tab.retrain.click(user_errors(retrain_handler), [tab.word, state], [tab.edit_status, tab.edit_details],
                       api_name="retrain_word", show_progress_on=[tab.edit_status], **HEAVY)
     .success(handler_for(rt), [tab.word, tab.method, state], view, api_visibility="private", **HEAVY))
    return inspect_event
