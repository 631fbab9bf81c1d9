"""Distill tab (/distill, /stop): train the new rows with every chosen method, live loss curves, Stop."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

import gradio as gr
import plotly.graph_objects as go

from tokdist_core import (
    METHOD_NAMES,
    OUTPUT_POLICIES,
    REGISTRY,
    DistillationConfig,
    TokenDistillation,
    config_fields,
    format_seconds,
    snippets_of,
)

from ..components import html as H
from ..components import widgets as W
from ..components.figures import empty_figure
from ..components.parsing import as_int
from ..components.training_run import RunPlan, RunView, closing_lines, train_job
from ..jobs import HEAVY, LIGHT
from ..runtime import MAX_APP_BATCH, MAX_APP_EPOCHS, Runtime, device_label, gpu, user_errors
from ..state import SessionState

INTRO = """
### 3 · Distill
Now we **learn one new embedding row** for each word. *Token Distillation* shows the model each snippet
twice: once with the original pieces (the **teacher**) and once with the single new token (the **student**).
It nudges the new row until the student's internal states match the teacher's. Only the new rows change;
the model itself stays frozen. The other methods are simpler starting points to compare against.
"""
DEFAULT_METHODS = ["random", "subword_mean", "tokdist"]
PRECISION_LABELS = {"auto": "Automatic: bf16 on a GPU, fp32 on a CPU",
                    "native": "bf16 where native (GPU, AVX-512 BF16 or AMX), else fp32",
                    "bf16": "bf16: about 1.7x faster on CPUs with AVX-512 BF16 or AMX", "no": "fp32 everywhere"}
# The values are the config field's choices; the app only words them for people.
PRECISION_CHOICES = [(PRECISION_LABELS[value], value)
                     for value in next(s.choices for s in config_fields() if s.name == "mixed_precision")]
LIVE_LOSS_CAPTION = (
    "**How to read this plot.** Across is the training step, up the loss on a log scale; one colour per method, one "
    "dash style per word. Lower is better: for Token Distillation the loss measures how far the new token's internal "
    "states still are from those of the original pieces. With L-BFGS each step sees all of a word's snippets and "
    "the curve shows the best loss reached so far, so it only falls; with Adam every step sees different snippets, "
    "so it jumps around and the trend matters. A good run falls quickly at first and then levels off.")

# The variants of the reference (config fields losses, init, schedule), worded for people.
LOSS_LABELS = {"hidden_mse": "Hidden states (MSE): the method's own loss",
               "logit_mse": "Next-token scores (MSE of the logits)",
               "logit_kl": "Next-token probabilities (KL divergence)",
               "ntp": "Predict the next words (fixed weight)",
               "ntp_auto": "Predict the next words, auto-weighted (αNTP)"}
INIT_LABELS = {"subword_mean": "Mean of the word's pieces", "subword_weighted": "Pieces, later ones weigh more",
               "random": "Random (a typical embedding)", "vocab_mean": "Mean of the whole vocabulary"}
SCHEDULE_LABELS = {"constant": "Constant", "linear": "Warm up, then decay (the paper's)"}
OPTIMIZER_LABELS = {"lbfgs": "L-BFGS: one step a pass over all of a word's snippets",
                    "adam": "Adam: many small steps of a batch each"}
_FIELDS = {spec.name: spec for spec in config_fields()}
LOSS_CHOICES = [(LOSS_LABELS[v], v) for v in _FIELDS["losses"].choices]
INIT_CHOICES = [(INIT_LABELS[v], v) for v in _FIELDS["init"].choices]
SCHEDULE_CHOICES = [(SCHEDULE_LABELS[v], v) for v in _FIELDS["schedule"].choices]
OPTIMIZER_CHOICES = [(OPTIMIZER_LABELS[v], v) for v in _FIELDS["optimizer"].choices]
# The methods whose training losses come from the losses boxes (ntp always trains with next-token prediction).
USES_LOSSES = ("tokdist", "tokdist_antp")
VARIANTS_HELP = """
The paper's method matches the **hidden states**. Its code can also match the model's **next-token
predictions** (the scores or the probabilities over the original vocabulary), add **next-word prediction**,
start the rows elsewhere, or **warm up** the learning rate. Leave these alone for the method as published.
"""
UPDATE_EVERY_S = 0.5  # how often the page is refreshed while training


@dataclass
class DistillTab:
    methods: gr.CheckboxGroup
    epochs: gr.Slider
    learning_rate: gr.Number
    batch_size: gr.Slider
    target_layer: gr.Dropdown
    output_policy: gr.Radio
    seed: gr.Number
    precision: gr.Radio
    losses: gr.CheckboxGroup
    ntp_weight: gr.Number
    init: gr.Radio
    schedule: gr.Radio
    warmup: gr.Slider
    optimizer: gr.Radio
    run: gr.Button
    stop: gr.Button
    device: gr.Markdown
    status: gr.Markdown
    progress: gr.HTML
    plot: gr.Plot
    details: gr.JSON


def check_methods(methods: list[str] | str | None) -> list[str]:
    chosen = [methods] if isinstance(methods, str) else list(methods or [])
    if not chosen:
        raise gr.Error("Tick at least one method to train.")
    unknown = [m for m in chosen if m not in REGISTRY]
    if unknown:
        raise gr.Error(f"Unknown method(s) {', '.join(map(repr, unknown))}; choose from {', '.join(METHOD_NAMES)}.")
    return [m for m in METHOD_NAMES if m in chosen] + [m for m in dict.fromkeys(chosen) if m not in METHOD_NAMES]


def make_config(epochs: object, learning_rate: object, batch_size: object, target_layer: object,
                seed: object, num_layers: int, precision: object = "auto", variant: dict | None = None,
                ) -> DistillationConfig:
    """The run's config from the form; `variant` holds the checked losses, ntp_weight, init, schedule, warmup
    and optimizer."""
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
        **(variant or {}),
    )


def check_variant(chosen: list[str], losses: object, ntp_weight: object, init: object, schedule: object,
                  warmup: object, optimizer: object = None) -> dict:
    """The losses, start and schedule fields from the form, each checked against its config field."""
    picked = [losses] if isinstance(losses, str) else list(losses or [])
    if not picked:
        if any(m in USES_LOSSES for m in chosen):
            raise gr.Error("Tick at least one loss for Token Distillation (the hidden states are its own loss).")
        picked = list(_FIELDS["losses"].default)
    variant = {"losses": tuple(picked),
               "ntp_weight": _FIELDS["ntp_weight"].default if ntp_weight in (None, "") else ntp_weight,
               "init": init or _FIELDS["init"].default, "schedule": schedule or _FIELDS["schedule"].default,
               "warmup": _FIELDS["warmup"].default if warmup in (None, "") else warmup,
               "optimizer": optimizer or _FIELDS["optimizer"].default}
    for name, value in variant.items():
        try:
            _FIELDS[name].check(value)
        except ValueError as exc:
            raise gr.Error(f"{exc}.") from None
    return variant


def _precision(value: object) -> str:
    allowed = [v for _, v in PRECISION_CHOICES]
    value = value or "auto"
    if value not in allowed:
        raise gr.Error(f"Precision must be one of {', '.join(allowed)}, got {value!r}.")
    return str(value)


def plan_run(rt: Runtime, td: TokenDistillation, methods: object, epochs: object, learning_rate: object,
             batch_size: object, target_layer: object, output_policy: object, seed: object, precision: object,
             state: SessionState, variant: tuple = ()) -> RunPlan:
    """`variant`: the form's (losses, ntp_weight, init, schedule, warmup, optimizer); empty for the defaults."""
    state.require_contexts()
    chosen = check_methods(methods)
    checked = check_variant(chosen, *variant) if variant else None
    config = make_config(epochs, learning_rate, batch_size, target_layer, seed, td.lm.num_layers, precision,
                         checked)
    config.validate(td.lm)
    policy = (output_policy or "ntp").strip() if isinstance(output_policy, str) or output_policy is None else None
    if policy not in OUTPUT_POLICIES:
        raise gr.Error(f"Output policy must be one of {', '.join(OUTPUT_POLICIES)}, got {output_policy!r}.")
    splits = state.usable_splits()
    train = snippets_of(state.contexts, splits)
    heldout = snippets_of(state.contexts, splits, "heldout")
    estimate = td.estimate_training(train, heldout, chosen, config)
    rt.check_estimate(estimate, "This run")
    steps_per_method = td.training_steps(train, config)
    total_steps = max(1, sum(steps_per_method for m in chosen if REGISTRY[m].trains))
    return RunPlan(chosen, config, policy, splits, train, heldout, estimate, total_steps)


def run_distill(rt: Runtime, methods: list[str] | None, epochs: object, learning_rate: object, batch_size: object,
                target_layer: object, output_policy: str | None, seed: object, precision: object,
                state: SessionState, variant: tuple = ()) -> Iterator[tuple[str, str, go.Figure, dict, SessionState]]:
    """Train in the server's job line and stream progress; a Stop or the time limit keeps finished methods.

    `variant`: (losses, ntp_weight, init, schedule, warmup, optimizer) from the form; empty for the defaults."""
    state.require_idle("start another training run")
    td = rt.engine(state.model_name)
    plan = plan_run(rt, td, methods, epochs, learning_rate, batch_size, target_layer, output_policy, seed,
                    precision, state, variant)
    view = RunView(rt, td, plan, state)
    yield view.frame("Waiting for the server…")
    updates = rt.jobs.run(state, "a training run", train_job(td, plan, state))
    last = 0.0
    try:
        while True:
            try:
                update = next(updates)
            except StopIteration as done:
                cancelled = done.value
                break
            extra = view.track(update)
            if extra or time.monotonic() - last >= UPDATE_EVERY_S:
                last = time.monotonic()
                yield view.frame(extra)
    except FloatingPointError as exc:  # a diverged method; the ones before it are kept
        raise gr.Error(f"{exc}. Finished methods are kept.") from exc
    finally:
        updates.close()  # a closed page stops the run now, not when the garbage collector gets to it
    view.finish(cancelled)
    yield view.frame("\n\n".join(closing_lines(state, cancelled, bool(plan.heldout))))


def _runs_on(rt: Runtime, lm) -> str:
    return f"Runs on **{device_label(lm)}**; the server stops a job after {format_seconds(rt.max_job_seconds)}."


def estimate_note(rt: Runtime, methods: object, epochs: object, batch_size: object, state: SessionState,
                  losses: object = None, optimizer: object = None) -> str:
    """The line under the settings: where it runs and, once there are snippets, how long it would take."""
    lm = rt.model(state.model_name)
    note = _runs_on(rt, lm)
    try:
        chosen = check_methods(methods)
        picked = tuple(losses) if isinstance(losses, list) and losses else _FIELDS["losses"].default
        config = DistillationConfig(epochs=as_int(epochs, "Epochs", 1, MAX_APP_EPOCHS),
                                    batch_size=as_int(batch_size, "Batch size", 1, MAX_APP_BATCH), losses=picked,
                                    optimizer=optimizer or _FIELDS["optimizer"].default)
        config.validate()
    except (gr.Error, ValueError):
        return note
    splits = state.usable_splits()
    if not splits:
        return note + " Collect contexts to see how long training would take."
    train = snippets_of(state.contexts, splits)
    heldout = snippets_of(state.contexts, splits, "heldout")
    estimate = TokenDistillation(lm).estimate_training(train, heldout, chosen, config)
    verdict = "" if estimate.seconds <= rt.max_job_seconds else " **That is over the limit**: lower the epochs or methods."
    return note + f" These settings: {estimate.describe()} (estimate).{verdict}"


def stop(state: SessionState) -> str:
    """Stop this session's job, whatever it is; answers at once (it never waits in any line)."""
    job = state.job
    if job is None:
        return "Nothing is running for this session right now."
    job.stop("stopped by you")
    if job.started is None:
        return f"**Stopped** {job.label} before it started."
    return f"**Stopping** {job.label} after the current step… finished methods are kept."


def build(rt: Runtime) -> DistillTab:
    gr.Markdown(INTRO, elem_classes="td-help")
    lm = rt.model() if rt.startup_error is None else None
    layers = lm.num_layers if lm is not None else 32
    with gr.Row():
        with gr.Column(scale=3):
            methods = W.CheckboxGroup(
                [(REGISTRY[m].label, m) for m in METHOD_NAMES], value=DEFAULT_METHODS,
                label="Methods to compare", elem_id="methods",
            )
            gr.Markdown("\n".join(f"- **{REGISTRY[m].label}**: {REGISTRY[m].description}" for m in METHOD_NAMES),
                        elem_classes="td-help")
        with gr.Column(scale=2):
            # Defaults, bounds and help from the config's fields; the app caps the upper bounds.
            field = {spec.name: spec for spec in config_fields()}
            epochs = W.Slider(field["epochs"].min, min(MAX_APP_EPOCHS, field["epochs"].max),
                              value=field["epochs"].default, step=1, label="Epochs (passes over the snippets)",
                              elem_id="epochs")
            optimizer = gr.Radio(OPTIMIZER_CHOICES, value=field["optimizer"].default, label="How the rows move",
                                 elem_id="optimizer", info="L-BFGS reaches in tens of steps what Adam reaches in "
                                                           "hundreds; the batch size is Adam's only.")
            learning_rate = W.Number(value=field["learning_rate"].default, label="Learning rate",
                                     info=f"Adam's step size, or how far L-BFGS's first step goes; "
                                          f"{field['learning_rate'].default:g} works well for a few words.")
            batch_size = W.Slider(field["batch_size"].min, min(MAX_APP_BATCH, field["batch_size"].max),
                                  value=field["batch_size"].default, step=1,
                                  label="Batch size (snippets per Adam step)", elem_id="batch-size")
            target_layer = gr.Dropdown([("last (after the final norm)", -1)] + [(f"layer {i}", i) for i in range(1, layers)],
                                       value=field["target_layer"].default, label="Target layer",
                                       info="Which internal layer's states must match the original ones.")
            output_policy = gr.Radio(list(OUTPUT_POLICIES), value="ntp", label="Output rows (untied models only)",
                                     info="SmolLM2 shares input and output rows, so this does not matter there.")
            seed = W.Number(value=field["seed"].default, precision=0, label="Training seed", minimum=0)
            precision = gr.Radio(PRECISION_CHOICES, value=field["mixed_precision"].default, label="Number precision",
                                 info="bf16 halves the bits per number: faster; rows differ from fp32's by rounding, more for words "
                                      "with only a few snippets.")
    with gr.Accordion("Loss, start and schedule (the paper's variants)", open=False, elem_id="variants"):
        gr.Markdown(VARIANTS_HELP, elem_classes="td-help")
        with gr.Row():
            losses = W.CheckboxGroup(LOSS_CHOICES, value=list(field["losses"].default),
                                     label="Token Distillation's losses", elem_id="losses",
                                     info="Token Distillation lowers the sum of the ticked losses. Token "
                                          "Distillation + αNTP takes the first three ticked here and adds the "
                                          "auto-weighted next-word loss itself.")
            with gr.Column():
                ntp_weight = W.Number(value=field["ntp_weight"].default, label="Weight of 'predict the next words'",
                                      minimum=field["ntp_weight"].min, maximum=field["ntp_weight"].max,
                                      info=field["ntp_weight"].help + " (only with the fixed-weight box ticked).")
                init = gr.Radio(INIT_CHOICES, value=field["init"].default, label="Start of the trained rows",
                                elem_id="init", info=field["init"].help + ".")
            with gr.Column():
                schedule = gr.Radio(SCHEDULE_CHOICES, value=field["schedule"].default, label="Learning-rate schedule",
                                    elem_id="schedule", info=field["schedule"].help + ".")
                warmup = W.Slider(field["warmup"].min, field["warmup"].max, value=field["warmup"].default, step=0.05,
                                  label="Warm-up share of the first epoch", info=field["warmup"].help + ".")
    device = gr.Markdown(_runs_on(rt, lm) if lm is not None else "")
    with gr.Row():
        run = gr.Button("Train", variant="primary", elem_id="train-btn", scale=3)
        stop_btn = gr.Button("Stop", variant="stop", elem_id="stop-btn", scale=1)
    progress = gr.HTML(H.progress_bar(0.0, "not started"), elem_id="train-progress")
    status = gr.Markdown()
    plot = gr.Plot(empty_figure("The loss curves appear here while training runs."), label="Loss curves",
                   elem_id="loss-plot")
    gr.Markdown(LIVE_LOSS_CAPTION, elem_classes="td-caption")
    details = W.api_details("distill")
    return DistillTab(methods, epochs, learning_rate, batch_size, target_layer, output_policy, seed, precision,
                      losses, ntp_weight, init, schedule, warmup, optimizer, run, stop_btn,
                      device, status, progress, plot, details)


def inputs(tab: DistillTab) -> list[gr.components.Component]:
    # New inputs go at the end: API clients that leave them out get the components' defaults.
    return [tab.methods, tab.epochs, tab.learning_rate, tab.batch_size, tab.target_layer, tab.output_policy, tab.seed,
            tab.precision, tab.losses, tab.ntp_weight, tab.init, tab.schedule, tab.warmup, tab.optimizer]


def outputs(tab: DistillTab) -> list[gr.components.Component]:
    return [tab.status, tab.progress, tab.plot, tab.details]


def handler_for(rt: Runtime):
    @gpu(duration=300)
    def handler(methods, epochs, learning_rate, batch_size, target_layer, output_policy, seed, precision,
                losses, ntp_weight, init, schedule, warmup, optimizer, st: SessionState):
        yield from run_distill(rt, methods, epochs, learning_rate, batch_size, target_layer, output_policy, seed,
                               precision, st, (losses, ntp_weight, init, schedule, warmup, optimizer))

    return user_errors(handler)


def wire(rt: Runtime, tab: DistillTab, state: gr.State):
    event = tab.run.click(handler_for(rt), [*inputs(tab), state], [*outputs(tab), state], api_name="distill",
                          show_progress_on=[tab.progress], **HEAVY)
    # Stop never waits behind the run it stops, nor behind anything else.
    tab.stop.click(stop, [state], [tab.status], api_name="stop", show_progress="hidden", **LIGHT)
    # Keep the time estimate next to the settings it depends on (cheap: arithmetic on cached figures).
    settings = [tab.methods, tab.epochs, tab.batch_size, state, tab.losses, tab.optimizer]
    for control in (tab.methods, tab.epochs, tab.batch_size, tab.losses, tab.optimizer):
        control.change(partial(estimate_note, rt), settings, [tab.device], api_visibility="private",
                       show_progress="hidden", **LIGHT)
    return event
