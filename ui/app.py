"""build_app(...) -> gr.Blocks: the tabs in the order a user thinks, wired to per-session state."""

from __future__ import annotations

from typing import Any

import gradio as gr

from tokdist_core import DEFAULT_MODEL

from .components import html as H
from .components.figures import method_label
from .jobs import HEAVY
from .runtime import MAX_UPLOAD_MB, Runtime, device_label
from .state import SessionState
from .tabs import compare, contexts, distill, export, generate, lens, replay, vocabulary, words
from .tabs import inspect as inspector

HEADER = """
# tokdist-studio · teach a language model new words
Type a word the model splits into pieces, collect example sentences, and learn **one new token** for it with
**Token Distillation**. Then compare it with simpler methods, replay how it trained, generate text, look inside the
layers and export.
Work through the tabs from left to right: tab 0 finds the words of a corpus worth adding (optional), and the quick
demos in tab 1 fill in settings that finish in under a minute on a laptop.
"""

# Quick demos that run offline on the bundled model and corpus (words that occur in it), < 1 min on 2 CPU cores.
EXAMPLES = [
    ["Schopenhauer, Andorra", True, "auto", 8, 4, 32, ["random", "subword_mean", "tokdist"], 6, 8, 0.01],
    ["Tarkovsky", True, "bundled", 8, 4, 32, ["subword_mean", "ntp", "tokdist", "tokdist_antp"], 4, 8, 0.01],
    ["aardvark, Kandahar, Wimbledon", True, "bundled", 6, 2, 32, ["random", "vocab_mean", "subword_mean", "tokdist"],
     4, 6, 0.01],
    ["Krankenwagen, Zeitgeist", True, "generated", 8, 4, 32, ["subword_mean", "tokdist"], 6, 8, 0.01],
]

# The tabs in the order a user thinks: (id, title, module with build/wire), numbered from 0 (the optional
# vocabulary search comes before the five steps of the method).
TABS = (("vocabulary", "Find words", vocabulary), ("words", "Words", words), ("contexts", "Contexts", contexts), ("distill", "Distill", distill),
        ("compare", "Compare", compare), ("replay", "Replay", replay), ("generate", "Generate", generate),
        ("lens", "Lens", lens), ("inspect", "Inspect", inspector), ("export", "Export", export))

EXAMPLE_LABELS = [
    "Schopenhauer, Andorra · quick demo",
    "Tarkovsky · every trained method",
    "aardvark, Kandahar, Wimbledon · baselines",
    "Krankenwagen, Zeitgeist · snippets written by the model",
]


def launch_kwargs() -> dict[str, Any]:
    """Options for demo.launch() shared by app.py and the tests (theme and CSS live there in Gradio 6)."""
    return {"css": H.CSS, "theme": gr.themes.Soft(primary_hue="orange"), "max_file_size": f"{MAX_UPLOAD_MB}mb"}


def build_app(model: str = DEFAULT_MODEL, allow_any_model: bool = False, device: str = "auto",
              runtime: Runtime | None = None) -> gr.Blocks:
    rt = runtime or Runtime(default_model=model, allow_any_model=allow_any_model, device=device)
    rt.preload()
    export.clean_stale_exports()  # leftovers of earlier (killed) processes

    with gr.Blocks(title="tokdist-studio", delete_cache=(3600, 3600)) as demo:
        state = gr.State(SessionState())  # deep-copied per session (a fresh stop flag each)
        gr.Markdown(HEADER)
        if rt.startup_error:
            gr.HTML(f'<div class="td-banner">The model {H.esc(rt.default_model)} could not be loaded: '
                    f"{H.esc(rt.startup_error)}<br>Where the Hugging Face Hub is reachable, start with "
                    "<code>--model HuggingFaceTB/SmolLM2-135M-Instruct</code> (or set TOKDIST_MODEL) instead."
                    "</div>")
        else:
            lm = rt.model()
            gr.Markdown(f"<small>Model **{H.esc(lm.name)}** ({lm.num_layers} layers, hidden size {lm.hidden_size}, "
                        f"{'tied' if lm.tied else 'untied'} embeddings) on **{H.esc(device_label(lm))}**. "
                        "Each browser tab keeps its own words and results; the shared model is never changed.</small>")
        built = {}
        with gr.Tabs(elem_id="tabs") as tabs:
            for number, (key, title, module) in enumerate(TABS, start=0):
                with gr.Tab(f"{number} · {title}", id=key, elem_id=f"tab-{key}"):
                    built[key] = module.build(rt)
        v, w, c, d, cmp, rp, g, lz, ins, ex = (built[key] for key, _, _ in TABS)
        with w.examples_slot:
            gr.Examples(
                EXAMPLES,
                inputs=[w.words, w.mid_sentence, c.source, c.snippets, c.heldout, c.snippet_len, d.methods,
                        d.epochs, d.batch_size, d.learning_rate],
                label="Quick demos (each under a minute on a laptop CPU): click one to fill every tab's settings, "
                      "then press the buttons tab by tab, or ▶ for steps 1–4 in one go",
                example_labels=EXAMPLE_LABELS,
                examples_per_page=5,
            )

        # -- UI-only refreshes after each step (private: not part of the API) --------------------------
        def after_split(st: SessionState):
            choices = [(s.display, s.word) for s in st.splits]
            value = choices[0][1] if choices else None
            return tuple(gr.update(choices=choices, value=value) for _ in range(3))

        def after_contexts(st: SessionState, methods, epochs, batch_size):
            pool = max((len(ctx.heldout or ctx.train) for ctx in st.contexts.values()), default=1)
            return (gr.update(value=generate.suggest_prompt(rt, st)), gr.update(maximum=max(pool, 1), value=1),
                    distill.estimate_note(rt, methods, epochs, batch_size, st))

        def after_distill(st: SessionState):
            trained = [(method_label(m), m) for m in st.rows]
            return (gr.update(choices=trained, value=[]),
                    gr.update(choices=trained, value=export.default_method(st)))

        private: dict[str, Any] = {"api_visibility": "private", "show_progress": "hidden"}
        vocabulary.wire(rt, v, state, w.model, w.words, w.mid_sentence, tabs)
        split_ev = words.wire(rt, w, state)
        split_ev.success(after_split, [state], [cmp.word, rp.word, lz.word], **private)
        ctx_ev = contexts.wire(rt, c, state)
        ctx_ev.success(after_contexts, [state, d.methods, d.epochs, d.batch_size], [g.prompt, lz.snippet, d.device],
                       **private)
        dist_ev = distill.wire(rt, d, state)
        # Fill the Compare tab as soon as training ends, so switching tabs shows results at once.
        dist_ev.success(after_distill, [state], [g.methods, ex.method], **private).success(
            compare.handler_for(rt), [cmp.word, cmp.neighbours, state], compare.outputs(cmp),
            api_visibility="private", **HEAVY)
        compare.wire(rt, cmp, state)
        replay.wire(rt, rp, state)
        generate.wire(rt, g, state)
        lens.wire(rt, lz, state)
        inspector.wire(rt, ins, state, tabs)
        export.wire(rt, ex, state)

        # ▶ the whole flow in one click (the same handlers, chained; each stops the chain on an error).
        def split_private(text, model_name, mid, st):
            return words.split_words(rt, text, model_name, mid, st)

        (w.run_all.click(split_private, [w.words, w.model, w.mid_sentence, state], [w.view, w.summary, w.details, state],
                       **private)
         .success(after_split, [state], [cmp.word, rp.word, lz.word], **private)
         .success(contexts.wire_handler(rt), [c.source, c.files, c.hf_name, c.snippets, c.heldout, c.snippet_len,
                                             c.seed, state], [c.view, c.summary, c.details, state],
                  api_visibility="private", **HEAVY)
         .success(after_contexts, [state, d.methods, d.epochs, d.batch_size], [g.prompt, lz.snippet, d.device],
                  **private)
         .success(lambda: gr.Tabs(selected="distill"), None, [tabs], **private)  # watch the live curve
         .success(distill.handler_for(rt), [*distill.inputs(d), state], [*distill.outputs(d), state],
                  api_visibility="private", show_progress_on=[d.progress], **HEAVY)
         .success(after_distill, [state], [g.methods, ex.method], **private)
         .success(compare.handler_for(rt), [cmp.word, cmp.neighbours, state], compare.outputs(cmp),
                  api_visibility="private", **HEAVY)
         .success(lambda: gr.Tabs(selected="compare"), None, [tabs], **private))

    # No Gradio bound: heavy steps wait in rt.jobs (one worker, a bounded line, a time limit per job),
    # so Stop and the tokenizer never wait or get refused because of them.
    demo.queue(default_concurrency_limit=None, max_size=None)
    return demo
