"""Running the chosen methods one after another on one shared context: what the facade's train() does."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..foundations.cancel import Cancelled
from ..foundations.rows import NewTokenRows, Trajectory
from ..training.config import StepRecord
from .base import Method, MethodContext, MethodOutput

if TYPE_CHECKING:
    import torch


@dataclass
class TrainOutcome:
    """What one `train` call produced: per method its rows, loss history, time and tokens trained on."""

    rows: dict[str, NewTokenRows] = field(default_factory=dict)
    histories: dict[str, list[StepRecord]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # wall clock per method, its teacher included
    tokens_seen: dict[str, int] = field(default_factory=dict)  # student positions, all epochs
    teacher_seconds: float = 0.0  # building the teacher caches (shared by the methods)
    metrics: dict[str, dict[str, dict]] | None = None  # method -> word -> held-out metrics, when asked
    cancelled: str | None = None  # where a cancel stopped the run; finished methods are kept
    # With record_trajectory=True: trained method -> its rows during training (baselines have none).
    trajectories: dict[str, Trajectory] = field(default_factory=dict)

    def add(self, rows: NewTokenRows, out: MethodOutput, seconds: float) -> None:
        self.rows[rows.method] = rows
        self.histories[rows.method] = out.history
        self.seconds[rows.method] = seconds
        self.tokens_seen[rows.method] = out.tokens_seen
        if out.trajectory is not None:
            self.trajectories[rows.method] = Trajectory(rows.method, list(rows.words), list(out.trajectory_steps),
                                                        out.trajectory)


def run_methods(ctx: MethodContext, chosen: Sequence[Method], output_policy: str,
                on_method_done: Callable[[NewTokenRows, float], None] | None = None) -> TrainOutcome:
    """Each method in turn on `ctx` (teacher caches shared); untied models get one set of new output rows,
    made by `output_policy` after the first method. A cancel keeps the finished methods and says where it
    stopped (`outcome.cancelled`)."""
    from ..training import new_output_rows

    train = ctx.train_snippets
    outcome = TrainOutcome()
    shared_output: torch.Tensor | None = None
    for method in chosen:
        if ctx.cancel is not None and ctx.cancel.is_set():
            outcome.cancelled = f"cancelled before {method.name}"
            break
        start = time.perf_counter()
        try:
            out = method.run(ctx)
            if shared_output is None and not ctx.lm.tied:
                cache = ctx.teacher_cache(with_final=True) if output_policy == "ntp" and train else None
                shared_output = new_output_rows(ctx.lm, ctx.splits, train, output_policy, ctx.config, cache, ctx.cancel)
        except Cancelled as exc:
            outcome.cancelled = str(exc)
            break
        result = NewTokenRows(method=method.name, words=[s.word for s in ctx.splits],
                              input_rows=out.rows.detach().float().cpu(),
                              output_rows=None if shared_output is None else shared_output.detach().float().cpu(),
                              descriptions={s.word: s.description for s in ctx.splits if s.description})
        outcome.add(result, out, time.perf_counter() - start)
        if on_method_done is not None:
            on_method_done(result, outcome.seconds[method.name])
    outcome.teacher_seconds = ctx.teacher_seconds
    return outcome
