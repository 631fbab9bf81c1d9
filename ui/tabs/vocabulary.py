"""Find-words tab (/discover, /send_words): which words of a corpus are worth a new token, and how much they save."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from tokdist_core import Cancelled, Discovery, HFDataSource

from ..components import html as H
from ..components import widgets as W
from ..components.figures import empty_figure, savings_figure
from ..components.parsing import as_int, data_spec
from ..jobs import HEAVY, LIGHT, Job, answer_when_done
from ..runtime import (
    MAX_APP_CANDIDATES,
    MAX_APP_WORDS,
    MAX_INPUT_CHARS,
    Runtime,
    user_errors,
)
from ..state import SessionState

INTRO = """
### 0 · Find words (optional)
Which words should the model learn? A good candidate is a word the tokenizer cuts into many pieces
**and** that appears often: each time it appears, one new token replaces all its pieces.
Pick a text collection, press **Find candidates**, then tick the words you want and send them to the
**Words** tab. Already know your words? Go straight to tab 1.
"""

SOURCES = [
    ("Bundled corpus (news + 106 Wikipedia articles)", "bundled"),
    ("My uploaded files (.txt, .jsonl, .json, .parquet, .csv)", "files"),
    ("A Hugging Face dataset (needs internet)", "hf"),
]
PHRASES = [("single words", 1), ("phrases of up to 2 words", 2), ("phrases of up to 3 words", 3)]
MAX_MIN_COUNT = 1000
MIN_CHARS = 3  # the library's default: shorter words are left out
DEFAULT_TICKED = 10  # ticked after a search: a quick demo that trains in about a minute
ADAPT_METHODS = "subword_mean,tokdist"
N_OUTPUTS = 7  # summary, table, figure, caption, ticks, command, details


@dataclass
class VocabularyTab:
    source: gr.Radio
    files: gr.File
    hf_name: gr.Textbox
    top: gr.Slider
    phrases: gr.Radio
    min_count: gr.Slider
    button: gr.Button
    stop: gr.Button
    summary: gr.Markdown
    table: gr.HTML
    plot: gr.Plot
    caption: gr.Markdown
    ticks: gr.CheckboxGroup
    tick_max: gr.Button
    untick: gr.Button
    send: gr.Button
    sent: gr.Markdown
    command: gr.Code
    details: gr.JSON


# -- the command line for the whole list ----------------------------------------------------------------

def adapt_command(source: str, data_names: list[str], top: int, phrases: int, min_count: int) -> str:
    """`tokdist adapt` (and `tokdist discover`) for the list this tab found; files by the user's own names."""
    data = shlex.quote(",".join(data_names))
    phrase_flag = f" --phrases {phrases}" if phrases > 1 else ""
    lines = []
    if source == "files":
        lines.append("# Give --data the path of your own copy of the file(s), comma-separated.")
    lines += [
        "# The whole list (no word cap): learn every word with two methods, save a model per method, report.",
        "# adapt keeps 10 % of the documents aside for its before/after report and counts words in the rest",
        "# (with a minimum count of 2), so its list can differ a little from this table.",
        f"tokdist adapt --data {data} --top {top}{phrase_flag} --methods {ADAPT_METHODS} --out adapted/",
        "",
        "# Only this table (add --words-out words.txt for a words file, one word per line):",
        f"tokdist discover --data {data} --top {top}{phrase_flag} --min-count {min_count}",
    ]
    return "\n".join(lines)


# -- the search ----------------------------------------------------------------------------------------

def check_request(rt: Runtime, source: object, files: list | None, hf_name: object, top: object, phrases: object,
                  min_count: object, model_name: object) -> dict:
    """Every check that needs no corpus reading; -> what the job needs. Raises gr.Error naming the field."""
    if source not in [value for _, value in SOURCES]:
        raise gr.Error(f"Unknown source {source!r}; choose one of: {', '.join(v for _, v in SOURCES)} "
                       "('generated' text holds no words to count).")
    if hf_name is not None and not isinstance(hf_name, str):
        raise gr.Error("The dataset name must be text.")
    if hf_name and len(hf_name) > MAX_INPUT_CHARS:
        raise gr.Error("The dataset name is far too long.")
    if model_name is not None and not isinstance(model_name, str):
        raise gr.Error("The model name must be text.")
    request = {
        "top": as_int(top, "Candidates to list", 1, MAX_APP_CANDIDATES),
        "phrases": as_int(phrases, "Phrases", 1, 3),
        "min_count": as_int(min_count, "Minimum count", 1, MAX_MIN_COUNT),
        "model": rt.check_model_name(model_name),
        "source": source,
    }
    data, label = data_spec(source, files, hf_name)  # the Contexts tab's checks: uploads, hub-only ids
    if isinstance(data, list):
        names = [Path(p).name for p in data]
    elif isinstance(data, HFDataSource):
        names = [label]
    else:
        names = [data]
    request.update(data=data, label=label, data_names=names)
    return request


def find_candidates(rt: Runtime, source: object, files: list | None, hf_name: object, top: object, phrases: object,
                    min_count: object, model_name: object, state: SessionState,
                    progress: gr.Progress | None = None) -> Iterator[tuple]:
    """Check the request, then count the corpus in the server's job line (a generator handler)."""
    request = check_request(rt, source, files, hf_name, top, phrases, min_count, model_name)
    td = rt.engine(request["model"])

    def work(job: Job) -> tuple:
        job.report(0.05, f"Counting words in {request['label']}…")
        try:
            found = td.discover(request["data"], top=request["top"], min_count=request["min_count"],
                                min_chars=MIN_CHARS, max_words=request["phrases"], cancel=job.cancel)
        except Cancelled:
            raise gr.Error(f"Stopped ({job.stop_reason}) before the count finished; no candidates were "
                           "listed.") from None
        if not found.candidates:
            raise gr.Error(no_candidates_message(found, request))
        return render(found, request, td.lm.name)

    yield from answer_when_done(rt.jobs, state, "finding candidates", work, N_OUTPUTS, progress)


def no_candidates_message(found: Discovery, request: dict) -> str:
    reasons = left_out(found.filtered, request["min_count"]) or "no words at all"
    return (f"No candidates in {request['label']}: no word there is counted at least {request['min_count']} "
            f"time(s) and split into 2+ pieces by the model's tokenizer (left out: {reasons}). "
            "Lower the minimum count, allow phrases, or use more text.")


def left_out(filtered: dict[str, int], min_count: int) -> str:
    """The library's reasons, most common first, in plainer words where it has a fixed phrase."""
    plain = {"fewer than min_count occurrences": f"seen fewer than {min_count} times",
             "shorter than min_chars characters": f"shorter than {MIN_CHARS} characters"}
    # The app has no command-line flags: drop the library's "(--flag ...)" hints.
    if any(why.startswith("has digits") for why in filtered):  # the library's DIGITS_REASON, in plainer words
        filtered = {("with digits (this tokenizer reads numbers digit by digit)" if why.startswith("has digits")
                     else why): n for why, n in filtered.items()}
    return "; ".join(f"{n:,} {plain.get(why, why.split(' (--')[0])}"
                     for why, n in sorted(filtered.items(), key=lambda kv: -kv[1]))


def candidate_rows(found: Discovery) -> list[dict]:
    """The table as JSON-able rows (what /discover returns in its details)."""
    return [{"rank": rank, "token": c.token, "display": H.visible(c.token), "count": c.count,
             "pieces": len(c.subwords), "subwords": list(c.subwords), "subword_ids": list(c.ids),
             "tokens_saved": c.tokens_saved, "cumulative_saved_pct": c.cumulative_saved_pct}
            for rank, c in enumerate(found.candidates, start=1)]


def render(found: Discovery, request: dict, model: str) -> tuple:
    rows = candidate_rows(found)
    html_rows = [[str(r["rank"]), f"<b>{H.esc(r['display'])}</b>", f"{r['count']:,}",
                  f'<span class="td-nowrap">{H.piece_chips(r["subwords"], r["subword_ids"])}</span>',
                  f"{r['tokens_saved']:,}",
                  f"{r['cumulative_saved_pct']:.2f} %"] for r in rows]
    table = H.table(["#", "new token (␣ = space)", "count", "pieces today", "tokens saved", "cumulative % saved"],
                    html_rows)
    total = rows[-1]["cumulative_saved_pct"]
    what = "words" if request["phrases"] == 1 else f"words and phrases of up to {request['phrases']} words"
    summary = (f"**{len(rows)} candidate {what}** from *{H.esc(request['label'])}* ({found.documents:,} documents, "
               f"{found.corpus_tokens:,} tokens under the {H.esc(model)} tokenizer). Together they would save "
               f"**{total:.2f} %** of the corpus's tokens.")
    if len(rows) < request["top"]:
        summary += f" Only {len(rows)} of the {request['top']} asked for pass the filters."
    if found.filtered:
        summary += f"\n\n<small>Left out: {H.esc(left_out(found.filtered, request['min_count']))}.</small>"
    summary += "\n\nNext: tick the words to learn below the table and send them to the **Words** tab."
    choices = [(f"{r['display']} · saves {r['tokens_saved']:,}", r["token"]) for r in rows]
    ticks = gr.update(choices=choices, value=[r["token"] for r in rows[:DEFAULT_TICKED]])
    command = adapt_command(request["source"], request["data_names"], request["top"], request["phrases"],
                            request["min_count"])
    details = {"model": model, "source": request["label"], "corpus_tokens": found.corpus_tokens,
               "documents": found.documents,
               "settings": {"top": request["top"], "phrases": request["phrases"], "min_count": request["min_count"]},
               "candidates": rows, "filtered": dict(found.filtered), "command": command}
    return (summary, table, savings_figure(rows, found.corpus_tokens), savings_caption(rows, found.corpus_tokens,
            request["phrases"]), ticks, command, details)


def savings_caption(rows: list[dict], corpus_tokens: int, phrases: int) -> str:
    """Words a teacher can read aloud under the curve."""
    first, last = rows[0], rows[-1]
    saved = sum(r["tokens_saved"] for r in rows)
    text = ("**How to read this curve.** Across: the top N candidates, added in the table's order; up: the % of "
            "the corpus's tokens those N new tokens save together. "
            f"A new token replaces a word's pieces by one token wherever the word "
            f"appears, saving (pieces − 1) tokens each time. The most useful word, “{H.esc(first['token'].strip())}”, "
            f"alone saves {first['cumulative_saved_pct']:.2f} % of the corpus's {corpus_tokens:,} tokens")
    if len(rows) >= 20:
        tenth = rows[9]
        text += f"; the top 10 save {tenth['cumulative_saved_pct']:.2f} %"
    text += (f"; all {len(rows)} save {last['cumulative_saved_pct']:.2f} % ({saved:,} tokens). Words are "
             "ranked by tokens saved, so the curve can only bend downwards: the steeper its start, the more a few "
             "words do the work; a nearly straight line means the savings are spread over many words.")
    if phrases > 1:
        text += (" With phrases, a phrase and its own words (“New York” and “York”) can save on the same text, "
                 "so the curve is an upper bound.")
    return text


# -- sending words to the Words tab ----------------------------------------------------------------------

def send_words(ticked: list[str] | None) -> tuple[str, bool, str]:
    """-> (the Words box text, the mid-sentence tick, a note). Candidates are counted mid-sentence."""
    ticked = list(ticked or [])
    if not ticked:
        raise gr.Error("Tick at least one candidate first (press 'Find candidates' to get a list).")
    if len(ticked) > MAX_APP_WORDS:
        raise gr.Error(f"You ticked {len(ticked)} words; this app learns up to {MAX_APP_WORDS} at a time. Untick "
                       f"some, or learn the whole list on the command line with the `tokdist adapt` command shown "
                       "in the Find words tab (it has no word cap).")
    text = ", ".join(token.strip() for token in ticked)
    note = (f"Sent {len(ticked)} word{'s' if len(ticked) != 1 else ''} to the **Words** tab: {H.esc(text)}. "
            "There, press 'Split into subwords'.")
    return text, True, note


def stop_search(state: SessionState) -> str:
    job = state.job
    if job is None:
        return "Nothing is running for this session right now."
    job.stop("stopped by you")
    return f"**Stopping** {job.label}…"


# -- the page --------------------------------------------------------------------------------------------

def build(rt: Runtime) -> VocabularyTab:  # noqa: ARG001 - same signature as the other tabs
    gr.Markdown(INTRO, elem_classes="td-help")
    with gr.Row():
        with gr.Column(scale=3):
            source = gr.Radio(SOURCES, value="bundled", label="Which text should we count words in?",
                              elem_id="vocab-source")
            files, hf_name = W.upload_inputs()
        with gr.Column(scale=2):
            top = W.Slider(1, MAX_APP_CANDIDATES, value=50, step=1, label="Candidates to list",
                           info=f"Up to {MAX_APP_CANDIDATES} here; the command line lists as many as you like.")
            phrases = gr.Radio(PHRASES, value=1, label="Phrases",
                               info="Phrases such as 'United States' can become one token too.")
            min_count = W.Slider(1, MAX_MIN_COUNT, value=2, step=1, label="Minimum count",
                                 info="Skip words seen fewer times than this.")
    with gr.Row():
        button = gr.Button("Find candidates", variant="primary", elem_id="discover-btn", scale=4)
        stop_btn = gr.Button("Stop", variant="stop", elem_id="discover-stop-btn", scale=1)
    summary = gr.Markdown(elem_id="discover-summary")
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            table = gr.HTML(H.empty("Press 'Find candidates' to rank the corpus's words by tokens saved."),
                            elem_id="discover-table")
        with gr.Column(scale=2):
            plot = gr.Plot(empty_figure("The savings curve appears here."), label="Tokens saved", elem_id="savings-plot")
            caption = gr.Markdown(elem_classes="td-help")
    ticks = W.CheckboxGroup(choices=[], value=[], label=f"Words to learn in this app (up to {MAX_APP_WORDS})",
                            elem_id="discover-ticks", elem_classes="td-ticks")
    with gr.Row():
        tick_max = gr.Button(f"Tick the top {MAX_APP_WORDS}", size="sm", scale=1)
        untick = gr.Button("Untick all", size="sm", scale=1)
        send = gr.Button("Send the ticked words to the Words tab →", variant="primary", elem_id="send-words-btn",
                         scale=3)
    sent = gr.Markdown(elem_id="send-note")
    gr.Markdown("#### The whole list on the command line")
    command = gr.Code(value="# Press 'Find candidates' first.", language="shell", interactive=False,
                      label="tokdist adapt", elem_id="adapt-command")
    details = W.api_details("discover")
    return VocabularyTab(source, files, hf_name, top, phrases, min_count, button, stop_btn, summary, table, plot,
                         caption, ticks, tick_max, untick, send, sent, command, details)


def wire(rt: Runtime, tab: VocabularyTab, state: gr.State, model: gr.Dropdown, words: gr.Textbox,
         mid_sentence: gr.Checkbox, tabs: gr.Tabs):
    """The search runs in the job line; the ticks, Stop and sending are instant. Sending opens the Words tab."""
    private = {"api_visibility": "private", "show_progress": "hidden", **LIGHT}

    def handler(source, files, hf_name, top, phrases, min_count, model_name, st: SessionState,
                progress=gr.Progress()):  # noqa: B008 - gradio injects the tracker through the default
        yield from find_candidates(rt, source, files, hf_name, top, phrases, min_count, model_name, st, progress)

    tab.button.click(user_errors(handler),
                     [tab.source, tab.files, tab.hf_name, tab.top, tab.phrases, tab.min_count, model, state],
                     [tab.summary, tab.table, tab.plot, tab.caption, tab.ticks, tab.command, tab.details],
                     api_name="discover", show_progress_on=[tab.table], **HEAVY)
    # Named so that the Distill tab's Stop keeps its own API name, /stop.
    tab.stop.click(stop_search, [state], [tab.summary], api_name="stop_search", **private)

    def tick_top(details: dict | None) -> list[str]:
        return [row["token"] for row in (details or {}).get("candidates", [])[:MAX_APP_WORDS]]

    tab.tick_max.click(tick_top, [tab.details], [tab.ticks], **private)
    tab.untick.click(lambda: [], None, [tab.ticks], **private)
    (tab.send.click(user_errors(send_words), [tab.ticks], [words, mid_sentence, tab.sent], api_name="send_words",
                    **LIGHT)
     .success(lambda: gr.Tabs(selected="words"), None, [tabs], **private))
