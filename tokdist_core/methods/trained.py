"""Trained methods: start from the subword mean and optimise only the new rows on the snippets.

`ntp`: next-token prediction. `tokdist`: Token Distillation (hidden-state MSE against the original
tokenization). `tokdist_antp`: Token Distillation plus next-token CE auto-weighted to the same size.
"""

from dataclasses import replace

from ..training import DistillationTrainer, subword_mean_output_rows
from .base import REGISTRY, MethodContext, MethodOutput, register, subword_rows


def _train(ctx: MethodContext, name: str) -> MethodOutput:
    if not ctx.train_snippets:
        raise ValueError(f"{name} needs training snippets; none were given")
    losses = REGISTRY[name].losses
    config = replace(ctx.config, losses=losses)
    cache = ctx.teacher_cache(with_final="ntp" in losses)
    init = subword_rows(ctx)
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


@register("ntp", label="NTP", description="Subword-mean start, then next-token prediction on the snippets (new row only).",
          colour="#db2777", order=4, losses=("ntp",))
def ntp_rows(ctx: MethodContext) -> MethodOutput:
    return _train(ctx, "ntp")


@register("tokdist", label="Token Distillation",
          description="Match the hidden states the model had on the original subwords.",
          colour="#ea580c", order=5, losses=("distill",))
def tokdist_rows(ctx: MethodContext) -> MethodOutput:
    return _train(ctx, "tokdist")


@register("tokdist_antp", label="Token Distillation + αNTP",
          description="Token Distillation plus next-token loss auto-weighted to the distillation loss's size.",
          colour="#16a34a", order=6, losses=("distill", "ntp"))
def tokdist_antp_rows(ctx: MethodContext) -> MethodOutput:
    return _train(ctx, "tokdist_antp")
