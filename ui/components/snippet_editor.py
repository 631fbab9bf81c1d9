"""The Inspect tab's snippet editor (/add_snippet, /retrain_word): add or replace one training snippet of a word
from text, then train that word alone again and merge its new rows into the session."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields

import gradio as gr

from tokdist_core import (
    METHOD_NAMES,
    REGISTRY,
    DistillationConfig,
    TrainOutcome,
    WordContexts,
    WordSplit,
    apply_snippet_edits,
    format_seconds,
)

from ..jobs import Job, answer_when_done
from ..runtime import MAX_APP_SNIPPET_LEN, MAX_APP_SNIPPETS, MAX_INPUT_CHARS, Runtime
from ..state import SessionState
from . import html as H
from .figures import method_label
from .parsing import pick_split
from .snippets import snippet_text

NEW_SNIPPET = "new"  # the 'Save as' value that adds a snippet instead of replacing one


# -- what the session has --------------------------------------------------------------------------------
def trained_methods(state: SessionState, word: str) -> list[str]:
    """The session's methods with a row for `word`, in the registry's order."""
    have = [m for m, rows in state.rows.items() if word in rows.words]
    return [m for m in METHOD_NAMES if m in have] + [m for m in have if m not in METHOD_NAMES]


def run_config(state: SessionState) -> DistillationConfig:
    """The settings of the session's last run (new config fields keep their defaults)."""
    saved = state.train_config
    return DistillationConfig(**{f.name: saved[f.name] for f in fields(DistillationConfig) if f.name in saved})


def word_contexts(state: SessionState, split: WordSplit) -> WordContexts:
    ctx = state.contexts.get(split.word)
    if ctx is None or not (ctx.train or ctx.heldout):
        raise gr.Error(f"No snippets for {split.display!r}; collect contexts first.")
    return ctx


def sentence(message: str) -> str:
    message = message.strip()
    return message[:1].upper() + message[1:] + ("" if message.endswith((".", "!", "?")) else ".")


# -- /add_snippet ------------------------------------------------------------------------------------------
def save_as_choices(state: SessionState, split: WordSplit | None) -> list[tuple[str, str]]:
    ctx = state.contexts.get(split.word) if split else None
    count = len(ctx.train) if ctx else 0
    return [("a new training snippet", NEW_SNIPPET)] + [(f"replace train {i}", f"train {i}")
                                                       for i in range(1, count + 1)]


def replace_index(save_as: object, n_train: int) -> int | None:
    """None to add a snippet, else the index of the training snippet to replace."""
    if save_as in (None, "", NEW_SNIPPET):
        return None
    if not isinstance(save_as, str):
        raise gr.Error(f"'Save as' must be '{NEW_SNIPPET}' or 'train N', got {save_as!r}.")
    part, _, number = save_as.strip().rpartition(" ")
    if part in ("held-out", "heldout"):
        raise gr.Error("Held-out snippets are kept aside to test the new row, so they are not edited; save your "
                       f"text as a new training snippet instead ('Save as': {NEW_SNIPPET}).")
    if part != "train" or not number.isdigit():
        raise gr.Error(f"'Save as' must be '{NEW_SNIPPET}' or 'train N' (e.g. 'train 2'), got {save_as!r}.")
    index = int(number)
    if not 1 <= index <= n_train:
        raise gr.Error(f"There are {n_train} training snippets; pick 'train 1' to 'train {n_train}'.")
    return index - 1


def add_snippet(rt: Runtime, word: str | None, text: object, save_as: object, state: SessionState
                ) -> tuple[str, dict]:
    """Add (or replace) one training snippet of the word from text; nothing is trained."""
    state.require_idle("change this word's snippets")
    state.require_rows()
    split = pick_split(state, word)
    ctx = word_contexts(state, split)
    if text is not None and not isinstance(text, str):
        raise gr.Error("The snippet must be text.")
    if text and len(text) > MAX_INPUT_CHARS:
        raise gr.Error(f"The snippet is {len(text):,} characters long; the limit is {MAX_INPUT_CHARS:,}.")
    index = replace_index(save_as, len(ctx.train))
    if index is None and len(ctx.train) >= MAX_APP_SNIPPETS:
        raise gr.Error(f"{split.display!r} already has {MAX_APP_SNIPPETS} training snippets, the most this app "
                       "keeps; replace one instead.")
    td = rt.engine(state.model_name)
    try:
        snip = td.snippet_from_text(split, text or "", max_tokens=MAX_APP_SNIPPET_LEN)
    except ValueError as exc:
        raise gr.Error(sentence(str(exc))) from None
    for part, pool in (("training", ctx.train), ("held-out", ctx.heldout)):
        replaced = index if part == "training" else None  # saving a snippet over itself is fine
        same = [i for i, s in enumerate(pool) if s.token_ids == snip.token_ids and i != replaced]
        if same:
            raise gr.Error(f"That text is already {part} snippet {same[0] + 1} of {split.display!r}; "
                           "write something different.")
    edit = (split.word, index, text or "")

    def change() -> None:
        state.contexts[split.word] = apply_snippet_edits(td.lm.tokenizer, state.contexts, [split], [edit],
                                                         MAX_APP_SNIPPET_LEN)[split.word]
        # Kept with the context settings, so the exported reproduce script writes the same snippets again.
        state.context_settings["snippet_edits"] = [*state.context_settings.get("snippet_edits", []), edit]
        what = "a training snippet was added" if index is None else f"training snippet {index + 1} was replaced"
        earlier = state.stale_words.get(split.word)
        state.stale_words[split.word] = "Its snippets changed" if earlier else sentence(what)[:-1]

    rt.jobs.change_session(state, "change this word's snippets", change)
    n = len(state.contexts[split.word].train)
    label = f"train {n}" if index is None else f"train {index + 1}"
    done = "Added" if index is None else "Replaced"
    status = (f"**{done} {label}** for {H.esc(split.display)} ({len(snip.token_ids)} tokens, the word at token "
              f"{snip.start + 1}); the word now has {n} training snippets. Press **Re-train this word** to learn "
              "from them.")
    return status, {"word": split.word, "action": done.lower(), "snippet": label, "train_snippets": n,
                    "tokens": len(snip.token_ids), "start": snip.start, "text": snippet_text(td.lm.tokenizer, snip),
                    "stale": True}


# -- /retrain_word -----------------------------------------------------------------------------------------
def retrain_word(rt: Runtime, word: str | None, state: SessionState, progress: gr.Progress | None = None
                 ) -> Iterator[tuple]:
    """Train this one word again (every trained method, the last run's settings); replace only its rows."""
    state.require_idle("re-train a word")
    state.require_rows()
    split = pick_split(state, word)
    ctx = word_contexts(state, split)
    if not ctx.train:
        raise gr.Error(f"{split.display!r} has no training snippets; add one first.")
    methods = trained_methods(state, split.word)
    config = run_config(state)
    policy = state.train_config.get("output_policy", "ntp")
    td = rt.engine(state.model_name)
    rt.check_estimate(td.estimate_training(ctx.train, ctx.heldout, methods, config), "Re-training this word")

    def work(job: Job) -> tuple[str, dict]:
        current = state.contexts[split.word]  # the session is ours now: nothing changes it under us
        trained = [m for m in methods if REGISTRY[m].trains] or methods
        steps = max(1, td.training_steps(current.train, config))

        def report(record) -> None:
            done = trained.index(record.method) + record.step / steps if record.method in trained else 0.0
            job.report(min(1.0, done / len(trained)), f"{method_label(record.method)} · step {record.step}/{steps}")

        outcome = td.retrain_word(split, current.train, methods, config, policy, heldout=current.heldout or None,
                                  callback=report, cancel=job.cancel, record_trajectory=bool(state.trajectories))
        if outcome.cancelled:
            raise gr.Error(f"Stopped ({job.stop_reason or outcome.cancelled}); {split.display!r} keeps its rows.")
        return _retrain_report(split, outcome, methods, len(current.train), state)

    yield from answer_when_done(rt.jobs, state, "re-training one word", work, 2, progress)


def _retrain_report(split: WordSplit, outcome: TrainOutcome, methods: list[str], n_train: int,
                    state: SessionState) -> tuple[str, dict]:
    """Merge the re-trained word into the session; -> the status line and its details."""
    done = state.merge_retrained(split.word, outcome, methods, n_train)
    lines = [f"**Re-trained {H.esc(split.display)}** alone on its {n_train} training snippets with "
             f"{', '.join(method_label(m) for m in methods)} in {format_seconds(sum(outcome.seconds.values()))}. "
             "Only this word's rows changed; the other words keep theirs."]
    for m in methods:
        b, a = done["hidden_mse_before"][m], done["hidden_mse_after"][m]
        if b is not None and a is not None:
            same = " (reads no snippets)" if not REGISTRY[m].trains else ""
            lines.append(f"- {H.esc(method_label(m))}: held-out hidden MSE {b:.4f} → **{a:.4f}**{same}")
    return "\n".join(lines), {"word": split.word, **done}
