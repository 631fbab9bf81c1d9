"""Words tab (/split): type words, see how the model's tokenizer cuts them into subwords."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from tokdist_core import TokenDistillation, WordError

from ..components import html as H
from ..components import widgets as W
from ..components.parsing import split_described_lines
from ..jobs import LIGHT
from ..runtime import MAX_APP_WORDS, MAX_INPUT_CHARS, Runtime, device_label, user_errors
from ..state import SessionState

INTRO = """
### 1 · Words
A language model reads text as **tokens**. Words it rarely saw are cut into several small pieces
(*subwords*), and the model has to glue the meaning back together in its first layers.
Type one or more words (separated by commas or new lines). We will add each one as a **single new token**
and learn an embedding for it. A line `TOKEN=TEXT` (e.g. `<|capital|>=the capital city of France`) adds a
**special token** that stands for a description: the model learns to read the token as it reads the text.
"""


@dataclass
class WordsTab:
    words: gr.Textbox
    model: gr.Dropdown
    mid_sentence: gr.Checkbox
    button: gr.Button
    run_all: gr.Button
    examples_slot: gr.Column  # filled by ui.app with gr.Examples that span every tab
    view: gr.HTML
    summary: gr.Markdown
    details: gr.JSON


def split_words(rt: Runtime, text: str | None, model_name: str | None, mid_sentence: bool | None,
                state: SessionState) -> tuple[str, str, dict, SessionState]:
    """Parse and split the words; keep those that can become new tokens in the session."""
    state.require_idle("change the words")
    if text is not None and not isinstance(text, str):
        raise gr.Error("The words must be text.")
    text = text or ""
    if len(text) > MAX_INPUT_CHARS:
        raise gr.Error(f"That is {len(text):,} characters; the word box takes at most {MAX_INPUT_CHARS:,}. "
                       f"Paste up to {MAX_APP_WORDS} words.")
    if not text.strip():
        raise gr.Error("Type at least one word, e.g. 'Schopenhauer, Andorra'.")
    name = rt.check_model_name(model_name)
    mid = True if mid_sentence is None else bool(mid_sentence)
    td = rt.engine(name)
    words, described = split_described_lines(text)
    splits, skipped = td.prepare_words(words, mid_sentence=mid, describe=described)
    if not splits and not skipped:  # only separators, e.g. " , ,"
        raise gr.Error("Type at least one word, e.g. 'Schopenhauer, Andorra'.")
    if len(splits) > MAX_APP_WORDS:
        raise gr.Error(f"You gave {len(splits)} words; this app learns up to {MAX_APP_WORDS} at a time. "
                       "For more, use the command line (`tokdist adapt --words-file words.txt --out adapted/` takes thousands) "
                       "or the Python library, which have no such limit.")

    rows_html, skipped_json = _word_rows(td, splits, skipped)

    def apply() -> None:
        if list(splits) != state.splits or name != state.model_name or mid != state.mid_sentence:
            state.reset_from_words()  # new words (or descriptions): old snippets and rows no longer apply
        state.model_name, state.mid_sentence, state.splits = name, mid, list(splits)

    rt.jobs.change_session(state, "change the words", apply)

    lm = td.lm
    if splits:
        listing = ", ".join(f"`{s.display}`" for s in splits)
        summary = (f"**{len(splits)} word{'s' if len(splits) != 1 else ''} can become new tokens:** {listing}. "
                   "Next: open the **Contexts** tab to collect example sentences.")
    else:
        summary = "**No usable words.** Each word must currently take two or more subwords; see the reasons above."
        gr.Warning("None of the entries can become a new token; the reasons are listed in the Words tab.")
    if skipped:
        summary += f"\n\n{len(skipped)} entr{'ies were' if len(skipped) != 1 else 'y was'} skipped (see the red/green labels)."
    summary += f"\n\n<small>Model: {H.esc(lm.name)} · {lm.num_layers} layers · {H.esc(device_label(lm))}</small>"
    details = {
        "model": lm.describe(),
        "mid_sentence": mid,
        "words": [
            {"word": s.word, "display": s.display, "pieces": list(s.pieces), "ids": list(s.ids),
             "n_subwords": s.n_subwords, **({"description": s.description} if s.description else {})}
            for s in splits
        ],
        "skipped": skipped_json,
    }
    view = "".join(rows_html) or H.empty("No words.")
    return view, summary, details, state


def _word_rows(td: TokenDistillation, splits: list, skipped: list) -> tuple[list[str], list[dict]]:
    """One HTML row per entry (pieces as chips, a badge saying what happens), and the skipped ones as data."""
    rows_html = []
    for split in splits:
        reads = f"read as “{split.description.strip()}”: " if split.description else ""
        rows_html.append(
            f'<div class="td-word-row"><span class="td-word-name">{H.esc(split.display)}</span>'
            f"{H.piece_chips(split.pieces, split.ids)}"
            f"{H.badge(f'{reads}{split.n_subwords} subwords → will become 1 new token', 'info')}</div>"
        )
    skipped_json = []
    for s in skipped:
        chips = ""
        try:  # show the pieces of words that are already one token, so the reason is visible
            if isinstance(s.word, str) and s.word.strip():
                ws = td.split(s.word)
                chips = H.piece_chips(ws.pieces, ws.ids)
        except WordError:
            pass
        kind = "ok" if "already a single token" in s.reason else "bad"
        label = "already one token: nothing to learn" if kind == "ok" else s.reason
        rows_html.append(
            f'<div class="td-word-row"><span class="td-word-name">{H.esc(H.visible(str(s.word))[:80])}</span>'
            f"{chips}{H.badge(label, kind)}</div>"
        )
        skipped_json.append({"word": s.word, "reason": s.reason})
    return rows_html, skipped_json


def build(rt: Runtime) -> WordsTab:
    gr.Markdown(INTRO, elem_classes="td-help")
    with gr.Row():
        with gr.Column(scale=3):
            words = gr.Textbox(label="Words (comma or new line separated)", lines=3, max_lines=8,
                               placeholder="Schopenhauer, Andorra", value="Schopenhauer, Andorra",
                               elem_id="words-input")
        with gr.Column(scale=2):
            model = gr.Dropdown(
                choices=rt.model_choices(), value=rt.default_model, label="Model",
                allow_custom_value=rt.allow_any_model, elem_id="model-picker",
                info=("Bundled models, or any Hugging Face id / local folder." if rt.allow_any_model
                      else "Bundled models (start with --allow-any-model for any id)."),
            )
            mid_sentence = W.Checkbox(
                value=True, label="Word appears mid-sentence (with a leading space)",
                info="Untick for the word-initial form, e.g. at the very start of a text.",
            )
    examples_slot = gr.Column()
    with gr.Row():
        button = gr.Button("Split into subwords", variant="primary", elem_id="split-btn", scale=3)
        run_all = gr.Button("▶ Run steps 1–4 in one go", elem_id="run-all-btn", scale=2)
    summary = gr.Markdown()
    view = gr.HTML(H.empty("Press 'Split into subwords' to see how the model cuts your words."))
    details = W.api_details("split")
    return WordsTab(words, model, mid_sentence, button, run_all, examples_slot, view, summary, details)


def wire(rt: Runtime, tab: WordsTab, state: gr.State):
    def handler(text: str, model_name: str, mid: bool, st: SessionState):
        return split_words(rt, text, model_name, mid, st)

    return tab.button.click(
        user_errors(handler), [tab.words, tab.model, tab.mid_sentence, state],
        [tab.view, tab.summary, tab.details, state], api_name="split",
        **LIGHT,  # tokenizer only: never waits behind a training run
    )
