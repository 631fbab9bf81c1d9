"""The app's job line on its own (no server): order, bounds, session busy, stops, time limits, closing."""

from __future__ import annotations

import threading
import time

import gradio as gr
import pytest

from ui.jobs import JobLine, Posted, Waiting
from ui.state import SessionState


def drain(gen):
    """Run a JobLine.run generator to its end: (updates, result)."""
    updates = []
    while True:
        try:
            updates.append(next(gen))
        except StopIteration as done:
            return updates, done.value


def sleeper(seconds: float, step: float = 0.02):
    """Work that polls its cancel flag like the trainer does; returns how far it got."""

    def work(job):
        steps = 0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if job.cancel.is_set():
                return f"stopped after {steps} steps ({job.stop_reason})"
            job.post(steps)
            steps += 1
            time.sleep(step)
        return "done"

    return work


def test_runs_work_relays_posts_and_frees_the_session():
    line, session = JobLine(max_waiting=2, max_seconds=10), SessionState()
    updates, result = drain(line.run(session, "a job", sleeper(0.2)))
    assert result == "done" and session.job is None and not line.busy()
    assert [u.item for u in updates if isinstance(u, Posted)][:3] == [0, 1, 2]
    assert line.finished[-1][0] == "a job"


def test_a_full_line_refuses_newcomers_and_a_busy_session_cannot_start_another_job():
    line = JobLine(max_waiting=1, max_seconds=10)
    first, second, third = SessionState(), SessionState(), SessionState()
    running = line.run(first, "a long job", sleeper(5))
    next(running)  # first holds the slot
    waiting = line.run(second, "a waiting job", sleeper(0.1))
    assert isinstance(next(waiting), Waiting)
    with pytest.raises(gr.Error, match="server is busy"):
        next(line.run(third, "one too many", sleeper(0.1)))
    assert line.refused == 1 and third.job is None
    with pytest.raises(gr.Error, match="still busy with a long job"):
        next(line.run(first, "a second job", sleeper(0.1)))
    with pytest.raises(gr.Error, match="Cannot change the words while a long job is running"):
        line.change_session(first, "change the words", lambda: None)
    first.job.stop("stopped by you")
    assert drain(running)[1].startswith("stopped after")
    assert drain(waiting)[1] == "done"  # the waiting job then runs


def test_stop_while_waiting_leaves_the_line_without_running():
    line = JobLine(max_waiting=2, max_seconds=10)
    a, b = SessionState(), SessionState()
    running = line.run(a, "job a", sleeper(1))
    next(running)
    ran = threading.Event()
    waiting = line.run(b, "job b", lambda job: ran.set())
    next(waiting)
    b.job.stop("stopped by you")
    with pytest.raises(gr.Error, match="Stopped before it started"):
        drain(waiting)
    assert b.job is None and line.waiting() == 0 and not ran.is_set()
    a.job.stop("done here")
    drain(running)


def test_the_time_limit_stops_the_work_and_says_so():
    line, session = JobLine(max_waiting=1, max_seconds=0.3), SessionState()
    _, result = drain(line.run(session, "a slow job", sleeper(10)))
    assert result.startswith("stopped after") and "time limit of 1 s" in result


def test_closing_the_request_stops_the_work_and_the_slot_is_freed_only_when_it_ends():
    line, a, b = JobLine(max_waiting=1, max_seconds=10), SessionState(), SessionState()
    ended = threading.Event()

    def slow_to_stop(job):
        while not job.cancel.is_set():
            time.sleep(0.01)
        time.sleep(0.5)  # the step in flight finishes first
        ended.set()

    gen = line.run(a, "job a", slow_to_stop)
    next(gen)
    gen.close()  # the client went away
    assert a.job is not None and a.job.stop_reason == "the request was cancelled or the page was closed"
    start = time.monotonic()
    _, result = drain(line.run(b, "job b", lambda job: ended.is_set()))
    assert result is True and time.monotonic() - start >= 0.3  # b waited until a's work had really ended
    assert a.job is None


def test_work_errors_reach_the_request_and_free_the_session():
    line, session = JobLine(max_waiting=1, max_seconds=10), SessionState()

    def broken(job):
        raise ValueError("bad settings")

    with pytest.raises(ValueError, match="bad settings"):
        drain(line.run(session, "a job", broken))
    assert session.job is None and not line.busy()


def test_a_view_waits_behind_its_sessions_run_and_the_run_after_it_but_one_view_at_a_time():
    line, session = JobLine(max_waiting=3, max_seconds=10), SessionState()
    run = line.run(session, "a training run", sleeper(0.5))
    next(run)  # the session's run holds the slot
    # The view's work runs once the run has ended, so the session's job slot is free by then.
    view = line.run(session, "the replay", lambda job: "drawn" if session.job is None else "too early", view=True)
    assert isinstance(next(view), Waiting) and session.view_job.label == "the replay"
    with pytest.raises(gr.Error, match="still busy with the replay"):  # a second view of the same session
        next(line.run(session, "the lens", lambda job: None, view=True))
    with pytest.raises(gr.Error, match="still busy with a training run"):  # the job slot is still one
        next(line.run(session, "another run", lambda job: None))
    assert drain(run)[1] == "done"
    assert drain(view)[1] == "drawn"
    assert session.job is None and session.view_job is None and not line.busy()


def test_merge_retrained_replaces_only_that_words_rows_numbers_and_history():
    """A word re-trained alone (Inspect tab) takes its new rows, held-out numbers and loss curve into the session;
    the other word keeps everything; the record says what changed."""
    import torch

    from tokdist_core import NewTokenRows, StepRecord, TrainOutcome

    def record(step, losses):
        return StepRecord("tokdist", step, 2, 0, sum(losses.values()) / len(losses), losses, 0.0)

    a, b = " Alpha", " Beta"
    state = SessionState(
        rows={"tokdist": NewTokenRows("tokdist", [a, b], torch.zeros(2, 4))},
        histories={"tokdist": [record(1, {a: 1.0, b: 2.0}), record(2, {a: 0.5, b: 1.5})]},
        metrics={"tokdist": {a: {"hidden_mse": 0.3}, b: {"hidden_mse": 0.4}}},
        train_config={"contexts": {"snippet_edits": [(a, None, "old"), (b, None, "kept")]}},
        context_settings={"snippet_edits": [(a, None, "old"), (a, 0, "new"), (b, None, "kept")]},
        stale_words={b: "Its snippets changed"},
    )
    outcome = TrainOutcome(rows={"tokdist": NewTokenRows("tokdist", [b], torch.ones(1, 4))},
                           histories={"tokdist": [record(1, {b: 0.9}), record(2, {b: 0.2})]},
                           seconds={"tokdist": 1.23456}, metrics={"tokdist": {b: {"hidden_mse": 0.1}}})
    done = state.merge_retrained(b, outcome, ["tokdist"], n_train=3)
    rows = state.rows["tokdist"]
    assert torch.equal(rows.input_rows[rows.index(a)], torch.zeros(4))
    assert torch.equal(rows.input_rows[rows.index(b)], torch.ones(4))
    assert state.metrics["tokdist"] == {a: {"hidden_mse": 0.3}, b: {"hidden_mse": 0.1}}
    assert [r.word_losses for r in state.histories["tokdist"]] == [{a: 1.0, b: 0.9}, {a: 0.5, b: 0.2}]
    assert b not in state.stale_words and state.word_trajectories[b] == {}
    assert state.train_config["contexts"]["snippet_edits"] == [(a, None, "old"), (b, None, "kept")]
    assert done == state.retrained[b] and done["seconds"] == 1.235 and done["train_snippets"] == 3
    assert done["row_change"] == {"tokdist": pytest.approx(2.0)} and done["final_loss"] == {"tokdist": 0.2}
    assert (done["hidden_mse_before"], done["hidden_mse_after"]) == ({"tokdist": 0.4}, {"tokdist": 0.1})
