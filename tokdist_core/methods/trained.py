"""Trained methods: start from `config.init` and optimise only the new rows on the snippets.

`ntp`: next-token prediction. `tokdist`: Token Distillation with `config.losses` (hidden-state MSE by
default). `tokdist_antp`: the distillation losses of `config.losses` plus next-token CE auto-weighted to
their size (αNTP).
"""

from dataclasses import replace

from ..training.config import DISTILL_LOSSES, DistillationConfig
from .base import REGISTRY, MethodContext, MethodOutput, register


def start_rows(ctx: MethodContext):
    """The trained methods' starting rows: those of the baseline `config.init` names (random: seeded per word)."""
    return REGISTRY[ctx.config.init].run(ctx).rows.float()


def _train(ctx: MethodContext, name: str) -> MethodOutput:
    from ..training import DistillationTrainer, subword_mean_output_rows

    if not ctx.train_snippets:
        raise ValueError(f"{name} needs training snippets; none were given")
    losses = REGISTRY[name].losses_for(ctx.config)
    config = replace(ctx.config, losses=losses, ntp_weight=1.0 if name == "ntp" else ctx.config.ntp_weight)
    cache = ctx.teacher_cache(with_final=REGISTRY[name].needs_lm_head(ctx.config))
    init = start_rows(ctx)
    # Untied heads hold their new output rows fixed at the subword mean while input rows train.
    output_rows = None if ctx.lm.tied else subword_mean_output_rows(ctx.lm, ctx.splits)
    trainer = DistillationTrainer(ctx.lm, ctx.words, config, cache, output_rows=output_rows)
    history = []

    def record(step):
        history.append(step)
        if ctx.callback is not None:
            ctx.callback(step)

    result = trainer.train(init, method=name, callback=record, cancel=ctx.cancel,
                           trajectory_points=ctx.trajectory_points)
    rows = init.new_empty(init.shape)
    for i, word in enumerate(ctx.words):
        rows[i] = result.rows[word]
    return MethodOutput(rows=rows, history=history, seconds=result.seconds + cache.seconds,
                        tokens_seen=result.tokens_seen, trajectory=result.trajectory,
                        trajectory_steps=result.trajectory_steps)


def ntp_losses(config: DistillationConfig) -> tuple[str, ...]:  # noqa: ARG001  (the same under every config)
    return ("ntp",)


def tokdist_losses(config: DistillationConfig) -> tuple[str, ...]:
    return tuple(config.losses)


def tokdist_antp_losses(config: DistillationConfig) -> tuple[str, ...]:
    """The distillation losses the config names (the hidden-state MSE when it names none), plus αNTP."""
    distill = tuple(name for name in config.losses if name in DISTILL_LOSSES) or ("hidden_mse",)
    return (*distill, "ntp_auto")


@register("ntp", label="NTP", description="From the chosen start, next-token prediction on the snippets (new row only).",
          colour="#db2777", order=4, losses=ntp_losses)
def ntp_rows(ctx: MethodContext) -> MethodOutput:
    return _train(ctx, "ntp")


@register("tokdist", label="Token Distillation",
          description="Match what the model computed on the original subwords (its hidden states, or the "
                      "chosen losses).",
          colour="#ea580c", order=5, losses=tokdist_losses)
def tokdist_rows(ctx: MethodContext) -> MethodOutput:
    return _train(ctx, "tokdist")


@register("tokdist_antp", label="Token Distillation + αNTP",
          description="Token Distillation plus next-token loss auto-weighted to the distillation loss's size.",
          colour="#16a34a", order=6, losses=tokdist_antp_losses)
def tokdist_antp_rows(ctx: MethodContext) -> MethodOutput:
    return _train(ctx, "tokdist_antp")
