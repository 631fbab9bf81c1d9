"""Generate tab (/generate): continue a prompt with the original split and with each method's new token."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import gradio as gr

from tokdist_core import METHOD_NAMES, TokenDistillation

from ..components import html as H
from ..components import widgets as W
from ..components.figures import colour, method_label
from ..components.parsing import as_int
from ..jobs import HEAVY, Job, answer_when_done, check_view_now
from ..runtime import MAX_INPUT_CHARS, MAX_NEW_TOKENS, Runtime, gpu, user_errors
from ..state import SessionState

INTRO = """
### 6 · Generate
Let the model **continue a text** that contains your word. The first box reads the word as its original
pieces; every other box reads it as **one new token** learned by that method. Same seed, same settings: only
the word's embedding differs. With a good new row, the continuation should stay on topic.
"""
MAX_PROMPT_CHARS = 2_000


@dataclass
class GenerateTab:
    prompt: gr.Textbox
    methods: gr.CheckboxGroup
    max_new_tokens: gr.Slider
    temperature: gr.Slider
    seed: gr.Number
    button: gr.Button
    view: gr.HTML
    details: gr.JSON


def suggest_prompt(rt: Runtime, state: SessionState) -> str:
    """A held-out snippet's beginning up to and including the word: a natural prompt containing it."""
    for split in state.usable_splits():
        ctx = state.contexts[split.word]
        snip = (ctx.heldout or ctx.train)[0]
        tok = rt.model(state.model_name).tokenizer
        before = tok.decode(list(snip.prefix)[-24:], clean_up_tokenization_spaces=False)
        # Start at the last sentence boundary so the prompt reads naturally (snippets start mid-sentence).
        cut = max(before.rfind(". "), before.rfind("! "), before.rfind("? "))
        if cut >= 0:
            before = before[cut + 2 :]
        return (before + split.word).strip()
    if state.splits:
        return f"A short explanation of{state.splits[0].word}:"
    return ""


def run_generate(rt: Runtime, prompt: str | None, methods: list[str] | None, max_new_tokens: object,
                 temperature: object, seed: object, state: SessionState, progress: gr.Progress | None = None,
                 ) -> Iterator[tuple]:
    if prompt is not None and not isinstance(prompt, str):
        raise gr.Error("The prompt must be text.")
    if methods is not None and (not isinstance(methods, list) or not all(isinstance(m, str) for m in methods)):
        raise gr.Error("Methods must be a list of method names.")
    prompt = prompt or ""
    if len(prompt) > MAX_PROMPT_CHARS:
        raise gr.Error(f"The prompt is {len(prompt):,} characters; the limit is {MAX_PROMPT_CHARS:,}.")
    if len(prompt) > MAX_INPUT_CHARS or not prompt.strip():
        raise gr.Error("Type a prompt that contains one of your words.")
    n_new = as_int(max_new_tokens, "New tokens", 1, MAX_NEW_TOKENS)
    seed_i = as_int(seed if seed not in (None, "") else 0, "Seed", 0, 2**31 - 1)
    try:
        temp = float(temperature if temperature not in (None, "") else 0.0)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise gr.Error(f"Temperature must be a number, got {temperature!r}.") from None
    if not math.isfinite(temp) or not 0 <= temp <= 2:
        raise gr.Error("Temperature must be between 0 (always the most likely word) and 2.")

    def checked() -> list[str]:  # again when its turn comes: a view may wait behind a run
        state.require_rows()
        unknown = [m for m in (methods or []) if m not in state.rows]
        if unknown:
            raise gr.Error(f"Not trained in this session: {', '.join(unknown)}. Trained: {', '.join(state.rows)}.")
        return [m for m in (methods or list(state.rows)) if m in state.rows]

    check_view_now(state, checked)
    td = rt.engine(state.model_name)

    def work(job: Job) -> tuple[str, dict]:
        return generation_cards(td, prompt, checked(), n_new, seed_i, temp, state, job)

    yield from answer_when_done(rt.jobs, state, "generating text", work, 2, progress, view=True)


def generation_cards(td: TokenDistillation, prompt: str, chosen: list[str], n_new: int, seed: int, temp: float,
                     state: SessionState, job: Job) -> tuple[str, dict]:
    described = {s.word: s.description for s in state.splits if s.description}
    results = [td.generate(prompt, None, n_new, seed, temp, descriptions=described)]
    for method in chosen:
        results.append(td.generate(prompt, state.rows[method], n_new, seed, temp))

    cards, data = [], []
    for gen in results:
        label = "Original pieces" if gen.label == "original split" else method_label(gen.label)
        continuation = gen.text[len(prompt):] if gen.text.startswith(prompt) else gen.text
        shown_prompt = prompt if gen.text.startswith(prompt) else ""
        cards.append(
            f'<div class="td-card" style="border-top:4px solid {colour(gen.label)}"><h4>{H.esc(label)}</h4>'
            f'<div class="td-gen"><span style="opacity:.6">{H.esc(shown_prompt)}</span><b>{H.esc(continuation)}</b></div>'
            f'<div class="td-meta">prompt: {gen.prompt_tokens} tokens · generated: {gen.new_tokens} tokens</div></div>'
        )
        data.append({"method": gen.label, "text": gen.text, "continuation": continuation,
                     "prompt_tokens": gen.prompt_tokens, "new_tokens": gen.new_tokens})
    note = ""
    words = list(next(iter(state.rows.values())).words)
    if not any(w.strip() in prompt for w in words):
        note = H.badge("The prompt contains none of your words, so every box reads the same tokens.", "warn")
        job.warn("The prompt does not contain any of your words.")
    elif all(gen.prompt_tokens == results[0].prompt_tokens for gen in results[1:]):
        note = H.badge("Your word is not used as a new token here (e.g. part of a longer word); "
                       "all boxes read the same tokens.", "warn")
    view = note + f'<div class="td-cards">{"".join(cards)}</div>'
    return view, {"prompt": prompt, "seed": seed, "temperature": temp, "generations": data}


def build(rt: Runtime) -> GenerateTab:  # noqa: ARG001
    gr.Markdown(INTRO, elem_classes="td-help")
    prompt = gr.Textbox(label="Prompt (include your word)", lines=3, max_lines=8, elem_id="prompt",
                        placeholder="The philosopher Schopenhauer")
    with gr.Row():
        # All registry methods up front so API clients can name any; the page narrows it to trained ones.
        methods = W.CheckboxGroup(choices=[(method_label(m), m) for m in METHOD_NAMES],
                                   label="Methods (empty = all trained)", scale=3)
        max_new_tokens = W.Slider(1, MAX_NEW_TOKENS, value=30, step=1, label="New tokens", scale=2)
        temperature = W.Slider(0, 2, value=0, step=0.05, label="Temperature (0 = greedy)", scale=2)
        seed = W.Number(value=0, precision=0, label="Seed", minimum=0, scale=1)
    button = gr.Button("Generate", variant="primary", elem_id="generate-btn")
    view = gr.HTML(H.empty("Train first, then generate."))
    details = W.api_details("generate")
    return GenerateTab(prompt, methods, max_new_tokens, temperature, seed, button, view, details)


def wire(rt: Runtime, tab: GenerateTab, state: gr.State):
    @gpu(duration=120)
    def handler(prompt, methods, max_new_tokens, temperature, seed, st: SessionState,
                progress=gr.Progress()):  # noqa: B008 - gradio injects the tracker
        yield from run_generate(rt, prompt, methods, max_new_tokens, temperature, seed, st, progress)

    return tab.button.click(
        user_errors(handler), [tab.prompt, tab.methods, tab.max_new_tokens, tab.temperature, tab.seed, state],
        [tab.view, tab.details], api_name="generate", **HEAVY,
    )
