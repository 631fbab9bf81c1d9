"""One training run as the Distill tab shows it: the checked plan, the work in the job line (it writes the
session's results and posts what happens), and the page's view of it: progress bar, live loss curves, details."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import gradio as gr
import plotly.graph_objects as go

from tokdist_core import (
    REGISTRY,
    DistillationConfig,
    JobEstimate,
    NewTokenRows,
    StepRecord,
    TokenDistillation,
    format_seconds,
    method_losses,
)

from ..jobs import Job, Posted, Waiting
from ..runtime import Runtime, device_label
from ..state import SessionState
from . import html as H
from .figures import empty_figure, loss_figure, method_label


@dataclass
class MethodDone:
    """Posted by a run when one method's rows are finished (and kept)."""

    method: str


class Evaluating:
    """Posted by a run when its last method is done and the held-out evaluation starts."""


def status_text(lines: list[str]) -> str:
    return "\n\n".join(lines)


@dataclass
class RunPlan:
    """Everything one run needs, checked before it joins the line."""

    chosen: list[str]
    config: DistillationConfig
    policy: str
    splits: list
    train: list
    heldout: list
    estimate: JobEstimate
    total_steps: int


def train_job(td: TokenDistillation, plan: RunPlan, state: SessionState) -> Callable[[Job], str | None]:
    """The work of one run. It writes the session's results itself, before the session is free again."""

    def work(job: Job) -> str | None:
        start = time.monotonic()
        state.reset_from_contexts()
        state.train_config = {**plan.config.to_dict(), "methods": plan.chosen, "output_policy": plan.policy,
                              "method_losses": method_losses(plan.chosen, plan.config),
                              "model": state.model_name, "mid_sentence": state.mid_sentence,
                              "words": [s.word for s in plan.splits], "contexts": dict(state.context_settings)}

        def method_done(rows: NewTokenRows, secs: float) -> None:
            state.rows[rows.method] = rows  # kept even if a later method is stopped or fails
            state.seconds[rows.method] = secs
            job.post(MethodDone(rows.method))
            if rows.method == plan.chosen[-1] and plan.heldout:
                job.post(Evaluating())  # train() evaluates right after the last method

        # The Replay tab draws each trained row's path: keep the rows at (up to 101) steps of every run.
        outcome = td.train(plan.splits, plan.train, plan.chosen, plan.config, plan.policy, callback=job.post,
                           cancel=job.cancel, on_method_done=method_done, heldout=plan.heldout,
                           record_trajectory=True)
        state.histories, state.metrics = dict(outcome.histories), outcome.metrics
        state.trajectories = dict(outcome.trajectories)
        if outcome.cancelled:
            state.cancelled = f"{job.stop_reason}; {outcome.cancelled}" if job.stop_reason else outcome.cancelled
        if not job.cancel.is_set():
            td.record_job_time(plan.estimate, time.monotonic() - start)
        return state.cancelled

    return work


class RunView:
    """What the page shows of one run: the progress bar, the live loss curves and the details."""

    def __init__(self, rt: Runtime, td: TokenDistillation, plan: RunPlan, state: SessionState) -> None:
        self.plan, self.state = plan, state
        self.device = device_label(td.lm)
        self.words = [s.word for s in plan.splits]
        self.histories: dict[str, list[StepRecord]] = {}
        self.done, self.current, self.finished = 0, "waiting for its turn", False
        self.header = (f"**Training {len(self.words)} word(s)** on {len(plan.train)} snippets with "
                       f"{', '.join(method_label(m) for m in plan.chosen)} · running on **{self.device}** · "
                       f"estimated {plan.estimate.describe()} (limit {format_seconds(rt.max_job_seconds)} per job)")

    def track(self, update: object) -> str:
        """Take in one update from the line; -> a line to show at once (or "")."""
        if isinstance(update, Waiting):
            return f"Waiting in line: {update.ahead} job(s) ahead of this one."
        item = update.item if isinstance(update, Posted) else None
        if isinstance(item, StepRecord):
            self.histories.setdefault(item.method, []).append(item)
            self.done += 1
            self.current = f"{method_label(item.method)} · epoch {item.epoch + 1}/{self.plan.config.epochs}"
        elif isinstance(item, MethodDone):
            self.current = f"{method_label(item.method)} done"
        elif isinstance(item, Evaluating):
            self.current = "evaluating on held-out snippets"
        elif self.done == 0 and self.current.startswith("waiting"):
            self.current = "preparing the teacher (the model reading the original pieces)"
        return ""

    def finish(self, cancelled: str | None) -> None:
        self.finished = True
        self.done = self.plan.total_steps if not cancelled else self.done
        self.current = "stopped" if cancelled else "finished"

    def frame(self, extra: str = "") -> tuple[str, str, go.Figure, dict, SessionState]:
        label = f"{self.current} · step {self.done}/{self.plan.total_steps}"
        job = self.state.job
        if job is not None and job.cancel.is_set() and not self.finished:
            label += " · stopping after this step…"
        trains = any(REGISTRY[m].trains for m in self.plan.chosen)
        fig = loss_figure(self.histories, self.words) if self.histories else empty_figure(
            "The loss curves appear here after the first training step." if trains
            else "These methods do not train, so there is no loss curve.")
        return (status_text([self.header, extra] if extra else [self.header]),
                H.progress_bar(self.done / self.plan.total_steps, label), fig,
                run_details(self.state, self.plan.chosen, self.device, self.histories), self.state)


def closing_lines(state: SessionState, cancelled: str | None, heldout: bool) -> list[str]:
    lines = []
    if cancelled:
        kept = ", ".join(method_label(m) for m in state.rows) or "nothing"
        lines.append(f"**Stopped** ({cancelled}). Kept the methods that finished: {kept}.")
        gr.Info("Training stopped; finished methods are kept.")
    if state.rows and state.metrics is not None:
        lines.append(("The finished methods were checked on the held-out snippets." if cancelled else "**Done.**")
                     + " Open the **Compare** tab to see which method matches the original best.")
    elif state.rows and not heldout:
        lines.append("**Done**, but there are no held-out snippets, so the Compare tab shows no quality numbers.")
    elif state.rows:
        lines.append("The **Compare** tab checks the finished methods on the held-out snippets when you open it.")
    timing = ", ".join(f"{method_label(m)} {s:.1f} s" for m, s in state.seconds.items())
    if timing:
        lines.append(f"Time per method: {timing}.")
    return lines


def run_details(state: SessionState, chosen: list[str], device: str, histories: dict[str, list[StepRecord]]) -> dict:
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
