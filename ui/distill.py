"""Distill tab (/distill, /stop): train the new rows with every chosen method, live loss curves, Stop."""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import gradio as gr
import plotly.graph_objects as go

from tokdist_core.api import OUTPUT_POLICIES
from tokdist_core.distill import DistillationConfig, StepRecord
from tokdist_core.evaluate import heldout_metrics
from tokdist_core.methods import METHOD_NAMES, REGISTRY
from tokdist_core.rows import NewTokenRows

from . import html as H
from .contexts import as_int
from .figures import empty_figure, loss_figure, method_label
from .runtime import MAX_APP_BATCH, MAX_APP_EPOCHS, Runtime, device_label, gpu, user_errors
from .state import SessionState

INTRO = """
### 3 · Distill
Now we **learn one new embedding row** for each word. *Token Distillation* shows the model each snippet
twice: once with the original pieces (the **teacher**) and once with the single new token (the **student**).
It nudges the new row until the student's internal states match the teacher's. Only the new rows change;
the model itself stays frozen. The other methods are simpler starting points to compare against.
"""
DEFAULT_METHODS = ["random", "subword_mean", "tokdist"]
PRECISION_CHOICES = [("Automatic: bf16 on a GPU, fp32 on a CPU", "auto"),
                     ("bf16: about 1.3x faster on CPUs with AVX-512 BF16 or AMX", "bf16"),
                     ("fp32 everywhere", "no")]
UPDATE_EVERY_S = 0.5  # how often the page is refreshed while training


@dataclass
class DistillTab:
    methods: gr.CheckboxGroup
    epochs: gr.Slider
    learning_rate: gr.Number
    batch_size: gr.Slider
    target_layer: gr.Slider
    output_policy: gr.Radio
    seed: gr.Number
    precision: gr.Radio
    run: gr.Button
    stop: gr.Button
    device: gr.Markdown
    status: gr.Markdown
    progress: gr.HTML
    plot: gr.Plot
    details: gr.JSON


@dataclass
class _MethodDone:
    rows: NewTokenRows
    seconds: float


@dataclass
class _Finished:
    result: tuple | None = None
    error: BaseException | None = None


def check_methods(methods: list[str] | str | None) -> list[str]:
    chosen = [methods] if isinstance(methods, str) else list(methods or [])
    if not chosen:
        raise gr.Error("Tick at least one method to train.")
    unknown = [m for m in chosen if m not in REGISTRY]
    if unknown:
        raise gr.Error(f"Unknown method(s) {', '.join(map(repr, unknown))}; choose from {', '.join(METHOD_NAMES)}.")
    return [m for m in METHOD_NAMES if m in chosen] + [m for m in dict.fromkeys(chosen) if m not in METHOD_NAMES]


def make_config(epochs: object, learning_rate: object, batch_size: object, target_layer: object,
                seed: object, num_layers: int, precision: object = "auto") -> DistillationConfig:
    try:
        lr = float(learning_rate)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise gr.Error(f"Learning rate must be a number, got {learning_rate!r}.") from None
    if not math.isfinite(lr) or not 0 < lr <= 1:
        raise gr.Error(f"Learning rate must be between 0 and 1 (try 0.01), got {learning_rate!r}.")
    return DistillationConfig(
        epochs=as_int(epochs, "Epochs", 1, MAX_APP_EPOCHS),
        batch_size=as_int(batch_size, "Batch size", 1, MAX_APP_BATCH),
        learning_rate=lr,
        target_layer=as_int(target_layer, "Target layer", -1, num_layers),
        seed=as_int(seed if seed not in (None, "") else 0, "Seed", 0, 2**31 - 1),
        mixed_precision=_precision(precision),
    )


def _precision(value: object) -> str:
    allowed = [v for _, v in PRECISION_CHOICES]
    value = value or "auto"
    if value not in allowed:
        raise gr.Error(f"Precision must be one of {', '.join(allowed)}, got {value!r}.")
    return str(value)


def _status(lines: list[str]) -> str:
    return "\n\n".join(lines)


def run_distill(rt: Runtime, methods: list[str] | None, epochs: object, learning_rate: object, batch_size: object,
                target_layer: object, output_policy: str | None, seed: object, precision: object,
                state: SessionState) -> Iterator[tuple[str, str, go.Figure, dict, SessionState]]:
    """Train in a worker thread and stream progress; a Stop keeps the methods that finished."""
    state.require_contexts()
    chosen = check_methods(methods)
    td = rt.engine(state.model_name)
    lm = td.lm
    config = make_config(epochs, learning_rate, batch_size, target_layer, seed, lm.num_layers, precision)
    config.validate(lm)
    policy = (output_policy or "ntp").strip()
    if policy not in OUTPUT_POLICIES:
        raise gr.Error(f"Output policy must be one of {', '.join(OUTPUT_POLICIES)}.")
    splits = state.usable_splits()
    words = [s.word for s in splits]
    train = [sn for s in splits for sn in state.contexts[s.word].train]
    heldout = [sn for s in splits for sn in state.contexts[s.word].heldout]
    steps_per_method = config.epochs * math.ceil(len(train) / config.batch_size)
    total_steps = max(1, sum(steps_per_method for m in chosen if REGISTRY[m].trains))

    state.reset_from_contexts()
    state.train_config = {**config.to_dict(), "methods": chosen, "output_policy": policy}
    state.cancel.clear()
    state.running = True
    device = device_label(lm)
    events: queue.Queue[Any] = queue.Queue()

    def worker() -> None:
        try:
            result = td.train(splits, train, chosen, config, policy, callback=events.put, cancel=state.cancel,
                              on_method_done=lambda rows, secs: events.put(_MethodDone(rows, secs)))
            events.put(_Finished(result=result))
        except BaseException as exc:  # handed to the page; the generator re-raises it there
            events.put(_Finished(error=exc))

    histories: dict[str, list[StepRecord]] = {}
    done_steps = 0
    current = "starting"
    finished: _Finished | None = None
    header = (f"**Training {len(words)} word(s)** on {len(train)} snippets with "
              f"{', '.join(method_label(m) for m in chosen)} · running on **{device}**")

    def frame(extra: str = "") -> tuple[str, str, go.Figure, dict, SessionState]:
        fraction = done_steps / total_steps
        label = f"{current} · step {done_steps}/{total_steps}"
        if state.cancel.is_set() and finished is None:
            label += " · stopping after this step…"
        fig = loss_figure(histories, words) if histories else empty_figure(
            "The loss curves appear here after the first training step." if any(REGISTRY[m].trains for m in chosen)
            else "These methods do not train, so there is no loss curve.")
        return (_status([header, extra] if extra else [header]), H.progress_bar(fraction, label), fig,
                _details(state, chosen, device, histories), state)

    thread = threading.Thread(target=worker, name="tokdist-train", daemon=True)
    thread.start()
    try:
        yield frame("Preparing the teacher (the model reading the original pieces)…")
        last = time.monotonic()
        while finished is None:
            try:
                item = events.get(timeout=0.2)
            except queue.Empty:
                item = None
            if isinstance(item, StepRecord):
                histories.setdefault(item.method, []).append(item)
                done_steps += 1
                current = f"{method_label(item.method)} · epoch {item.epoch + 1}/{config.epochs}"
            elif isinstance(item, _MethodDone):
                state.rows[item.rows.method] = item.rows  # kept even if a later method is stopped
                state.seconds[item.rows.method] = item.seconds
                current = f"{method_label(item.rows.method)} done"
            elif isinstance(item, _Finished):
                finished = item
            if finished is not None or time.monotonic() - last >= UPDATE_EVERY_S:
                last = time.monotonic()
                if finished is None:
                    yield frame()
        thread.join()
    finally:
        # Page closed or generator cancelled: stop the worker at its next step.
        if thread.is_alive():
            state.cancel.set()
            thread.join(timeout=30)
        state.running = False

    if finished.error is not None:
        exc = finished.error
        if isinstance(exc, FloatingPointError):
            raise gr.Error(f"{exc}. Finished methods are kept.")
        if isinstance(exc, ValueError):
            raise gr.Error(str(exc))
        raise exc
    rows, hist, seconds, cancelled = finished.result  # type: ignore[misc]
    # The session keeps finished methods only; the page keeps showing the partial curve of a stopped one.
    state.rows, state.histories, state.seconds, state.cancelled = dict(rows), dict(hist), dict(seconds), cancelled
    done_steps = total_steps if not cancelled else done_steps

    lines = []
    if cancelled:
        kept = ", ".join(method_label(m) for m in state.rows) or "nothing"
        lines.append(f"**Stopped** ({cancelled}). Kept the methods that finished: {kept}.")
        gr.Info("Training stopped; finished methods are kept.")
    if state.rows and heldout:
        current = "evaluating on held-out snippets"
        yield frame("Checking the new tokens on the held-out snippets…")
        state.metrics = heldout_metrics(lm, list(state.rows.values()), heldout, config.target_layer)
        lines.append(("The finished methods were checked on the held-out snippets." if cancelled else "**Done.**")
                     + " Open the **Compare** tab to see which method matches the original best.")
    elif state.rows:
        lines.append("**Done**, but there are no held-out snippets, so the Compare tab shows no quality numbers.")
    current = "stopped" if cancelled else "finished"
    timing = ", ".join(f"{method_label(m)} {s:.1f} s" for m, s in state.seconds.items())
    if timing:
        lines.append(f"Time per method: {timing}.")
    yield frame("\n\n".join(lines))


def _details(state: SessionState, chosen: list[str], device: str, histories: dict[str, list[StepRecord]]) -> dict:
    return {
        "device": device,
        "methods": chosen,
        "finished": list(state.rows),
        "cancelled": state.cancelled,
        "seconds": {m: round(s, 3) for m, s in state.seconds.items()},
        "steps": {m: len(h) for m, h in histories.items()},
        "final_loss": {m: h[-1].word_losses for m, h in histories.items() if h},
        "evaluated": state.metrics is not None,
        "config": state.train_config,
    }


def stop(state: SessionState) -> str:
    if not state.running:
        return "Nothing is training right now."
    state.cancel.set()
    return "**Stopping** after the current step… finished methods are kept."


def build(rt: Runtime) -> DistillTab:
    gr.Markdown(INTRO, elem_classes="td-help")
    lm = rt.model() if rt.startup_error is None else None
    layers = lm.num_layers if lm is not None else 32
    with gr.Row():
        with gr.Column(scale=3):
            methods = gr.CheckboxGroup(
                [(REGISTRY[m].label, m) for m in METHOD_NAMES], value=DEFAULT_METHODS,
                label="Methods to compare", elem_id="methods",
            )
            gr.Markdown("\n".join(f"- **{REGISTRY[m].label}**: {REGISTRY[m].description}" for m in METHOD_NAMES),
                        elem_classes="td-help")
        with gr.Column(scale=2):
            epochs = gr.Slider(1, MAX_APP_EPOCHS, value=8, step=1, label="Epochs (passes over the snippets)",
                               elem_id="epochs")
            learning_rate = gr.Number(value=0.01, label="Learning rate", info="0.01 works well for a few words.")
            batch_size = gr.Slider(1, MAX_APP_BATCH, value=16, step=1, label="Batch size (snippets per step)",
                                   elem_id="batch-size")
            target_layer = gr.Slider(-1, layers, value=-1, step=1, label="Target layer",
                                     info="Which internal layer must match; -1 = the last one (after the final norm).")
            output_policy = gr.Radio(list(OUTPUT_POLICIES), value="ntp", label="Output rows (untied models only)",
                                     info="SmolLM2 shares input and output rows, so this does not matter there.")
            seed = gr.Number(value=0, precision=0, label="Training seed", minimum=0)
            precision = gr.Radio(PRECISION_CHOICES, value="auto", label="Number precision",
                                 info="bf16 halves the bits per number: faster, with results within noise.")
    device = gr.Markdown(f"Runs on **{device_label(lm)}**." if lm is not None else "")
    with gr.Row():
        run = gr.Button("Train", variant="primary", elem_id="train-btn", scale=3)
        stop_btn = gr.Button("Stop", variant="stop", elem_id="stop-btn", scale=1)
    progress = gr.HTML(H.progress_bar(0.0, "not started"), elem_id="train-progress")
    status = gr.Markdown()
    plot = gr.Plot(empty_figure("The loss curves appear here while training runs."), label="Loss curves",
                   elem_id="loss-plot")
    gr.Markdown("<small>Lower is better: the loss measures how far the student's internal states still are from "
                "the teacher's. It jumps around because every step sees different snippets; the trend matters.</small>")
    with gr.Accordion("Details (JSON, as returned by the /distill API)", open=False):
        details = gr.JSON()
    return DistillTab(methods, epochs, learning_rate, batch_size, target_layer, output_policy, seed, precision,
                      run, stop_btn,
                      device, status, progress, plot, details)


def inputs(tab: DistillTab) -> list[gr.components.Component]:
    return [tab.methods, tab.epochs, tab.learning_rate, tab.batch_size, tab.target_layer, tab.output_policy, tab.seed,
            tab.precision]


def outputs(tab: DistillTab) -> list[gr.components.Component]:
    return [tab.status, tab.progress, tab.plot, tab.details]


def handler_for(rt: Runtime):
    @gpu(duration=300)
    def handler(methods, epochs, learning_rate, batch_size, target_layer, output_policy, seed, precision,
                st: SessionState):
        yield from run_distill(rt, methods, epochs, learning_rate, batch_size, target_layer, output_policy, seed,
                               precision, st)

    return user_errors(handler)


def wire(rt: Runtime, tab: DistillTab, state: gr.State):
    event = tab.run.click(handler_for(rt), [*inputs(tab), state], [*outputs(tab), state], api_name="distill",
                          concurrency_id="gpu", show_progress_on=[tab.progress])
    # Stop must not wait behind the run it stops: its own unlimited queue, no progress overlay.
    tab.stop.click(stop, [state], [tab.status], api_name="stop", concurrency_id="stop", concurrency_limit=None,
                   show_progress="hidden")
    return event
