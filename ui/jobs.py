"""The server's line for heavy jobs: one runs at a time, a bounded number wait, each has a time limit.

Gradio's own queue bound counts every waiting call, so a full queue would also refuse Stop and the
tokenizer-only Words tab. Heavy events therefore run with no Gradio limit and wait here instead: this
line refuses newcomers with a clear message when it is full, runs the work in a worker thread that holds
the slot until the work has really ended (a cancelled request's work stops at its next step; the next
job starts only after that), stops a job at its time limit, and lets a session run one job at a time.
A read-only view of a session's results (`view=True`: replay, inspect, lens, generate) holds the session's
second slot, `view_job`, instead: it waits in line behind the session's own run and the Compare that follows,
where a second job would be refused, and a session still has at most two entries in the line.

A handler iterates `JobLine.run(...)`, which yields `Waiting` while in line, `Running` heartbeats and the
items the work posts, and returns the work's result. Handlers are generators that yield at least every
`POLL_S`, so Gradio can close them when the client cancels or goes away; closing stops the work.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import gradio as gr

from tokdist_core import format_seconds

T = TypeVar("T")
JOB_SLOT, VIEW_SLOT = "job", "view_job"  # a session's attributes holding its heavy job and its read-only view
POLL_S = 0.25  # how often a waiting or running handler looks up (and yields)
# Event options of heavy handlers: Gradio runs them at once and this line decides who works.
HEAVY: dict[str, Any] = {"concurrency_id": "heavy", "concurrency_limit": None}
# Cheap handlers (Stop, the tokenizer) never wait behind anything.
LIGHT: dict[str, Any] = {"concurrency_id": "light", "concurrency_limit": None}


@dataclass
class Job:
    """One heavy request: what the work polls (`cancel`) and posts (`post`), and why it was stopped."""

    label: str
    max_seconds: float
    cancel: threading.Event = field(default_factory=threading.Event)
    events: queue.Queue = field(default_factory=queue.Queue)
    stop_reason: str | None = None
    queued: float = 0.0
    started: float | None = None
    ended: threading.Event = field(default_factory=threading.Event)

    def stop(self, reason: str) -> None:
        """Ask the work to stop at its next safe point; the first reason given is the one reported."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self.cancel.set()

    def post(self, item: Any) -> None:
        self.events.put(item)

    def report(self, fraction: float, message: str) -> None:
        """Progress for the page (the request's thread shows it: Gradio's progress lives there)."""
        self.post(Report(fraction, message))

    def warn(self, message: str) -> None:
        self.post(Notice(message))

    @property
    def elapsed(self) -> float:
        return 0.0 if self.started is None else time.monotonic() - self.started

    def time_limit_reason(self) -> str:
        return f"the server's time limit of {format_seconds(self.max_seconds)} per job"


@dataclass
class Report:
    fraction: float
    message: str


@dataclass
class Notice:
    message: str  # shown as a warning toast


@dataclass
class Waiting:
    ahead: int  # jobs before this one (the running one included)


@dataclass
class Running:
    elapsed: float


@dataclass
class Posted:
    item: Any


class JobLine:
    def __init__(self, max_waiting: int, max_seconds: float) -> None:
        if max_waiting < 0 or max_seconds <= 0:
            raise ValueError("max_waiting must be >= 0 and max_seconds > 0")
        self.max_waiting = max_waiting
        self.max_seconds = max_seconds
        self._cond = threading.Condition()
        self._line: deque[Job] = deque()
        self._running: Job | None = None
        self.refused = 0  # newcomers turned away because the line was full
        self.finished: deque[tuple[str, float, float]] = deque(maxlen=1000)  # (label, waited s, ran s)

    # -- what the page shows ---------------------------------------------------------------------------
    def waiting(self) -> int:
        with self._cond:
            return len(self._line)

    def busy(self) -> bool:
        with self._cond:
            return self._running is not None or bool(self._line)

    def change_session(self, session: Any, action: str, change: Callable[[], None]) -> None:
        """Apply `change` to an idle session, atomically with respect to its jobs joining the line."""
        with self._cond:
            session.require_idle(action)
            change()

    # -- the line ----------------------------------------------------------------------------------------
    def _admit(self, session: Any, label: str, slot: str) -> Job:
        with self._cond:
            current = getattr(session, slot, None)
            if current is not None:
                stop = "" if slot == VIEW_SLOT else ", or press Stop in the Distill tab"
                raise gr.Error(f"This session is still busy with {current.label}. Wait for it to finish{stop}, "
                               "then try again.")
            if len(self._line) >= self.max_waiting:
                self.refused += 1
                raise gr.Error(f"The server is busy: {len(self._line)} jobs are already waiting, the most it "
                               "takes. Please try again in a few minutes.")
            job = Job(label=label, max_seconds=self.max_seconds, queued=time.monotonic())
            self._line.append(job)
            setattr(session, slot, job)
            return job

    def _leave(self, session: Any, job: Job) -> None:
        with self._cond:
            if job in self._line:
                self._line.remove(job)
            if self._running is job and job.started is not None:
                self._running = None
                self.finished.append((job.label, job.started - job.queued, time.monotonic() - job.started))
            for slot in (JOB_SLOT, VIEW_SLOT):
                if getattr(session, slot, None) is job:
                    setattr(session, slot, None)
            job.ended.set()
            self._cond.notify_all()

    def _take_turn(self, job: Job) -> bool:
        """Wait up to POLL_S for this job's turn; True once it holds the slot."""
        with self._cond:
            if self._running is None and self._line and self._line[0] is job:
                self._line.popleft()
                self._running = job
                job.started = time.monotonic()
                return True
            self._cond.wait(POLL_S)
            return False

    def _ahead(self, job: Job) -> int:
        with self._cond:
            position = self._line.index(job) if job in self._line else 0
            return position + (self._running is not None)

    def run(self, session: Any, label: str, work: Callable[[Job], T], view: bool = False
            ) -> Generator[Waiting | Running | Posted, None, T]:
        """Wait for the slot, run `work(job)` in a worker thread, relay what it posts, return its result.

        Raises gr.Error when the line is full or the session is busy, and when the job is stopped while
        it waits. Closing this generator (client gone, request cancelled) stops the work at its next step.
        `view`: the work only reads the session (see the module docstring).
        """
        job = self._admit(session, label, VIEW_SLOT if view else JOB_SLOT)
        worker: threading.Thread | None = None
        try:
            while not self._take_turn(job):
                if job.cancel.is_set():
                    raise gr.Error(f"Stopped before it started ({job.stop_reason}).")
                yield Waiting(self._ahead(job))
            outcome: dict[str, Any] = {}
            worker = threading.Thread(target=self._work, args=(session, job, work, outcome),
                                      name=f"tokdist-{label}", daemon=True)
            worker.start()
            last = time.monotonic()
            while not job.ended.is_set() or not job.events.empty():
                try:
                    item = job.events.get(timeout=POLL_S)
                except queue.Empty:
                    item = None
                if item is not None:
                    yield Posted(item)
                if time.monotonic() - last >= 1.0:
                    last = time.monotonic()
                    yield Running(job.elapsed)
            if "error" in outcome:
                raise outcome["error"]
            return outcome["result"]
        finally:
            if worker is None:
                self._leave(session, job)  # never started: just leave the line
            elif not job.ended.is_set():
                # The request went away mid-run: stop the work; its thread frees the slot when it ends.
                job.stop("the request was cancelled or the page was closed")

    def _work(self, session: Any, job: Job, work: Callable[[Job], Any], outcome: dict[str, Any]) -> None:
        timer = threading.Timer(self.max_seconds, job.stop, args=(job.time_limit_reason(),))
        timer.daemon = True
        timer.start()
        try:
            outcome["result"] = work(job)
        except BaseException as exc:  # handed to the request's generator, which re-raises it there
            outcome["error"] = exc
        finally:
            timer.cancel()
            self._leave(session, job)


def check_view_now(session: Any, check: Callable[[], Any]) -> None:
    """A view's checks at once, so a bad request is refused without waiting; but not while the session's own run
    is under way (it resets what they look at): the view's work checks again when its turn comes anyway."""
    if getattr(session, JOB_SLOT, None) is None:
        check()


def answer_when_done(line: JobLine, session: Any, label: str, work: Callable[[Job], tuple],
                     n_outputs: int, progress: Any = None, view: bool = False) -> Generator[tuple, None, None]:
    """A one-answer handler through the line: no-op updates while it waits or runs, then `work`'s outputs.

    `progress` (a gr.Progress) shows the place in line on the page; `view` as in JobLine.run.
    """
    updates = line.run(session, label, work, view=view)
    try:
        while True:
            try:
                update = next(updates)
            except StopIteration as done:
                yield done.value
                return
            item = update.item if isinstance(update, Posted) else None
            if isinstance(item, Notice):
                gr.Warning(item.message)
            elif progress is None:
                pass
            elif isinstance(update, Waiting):
                progress(0.0, desc=f"Waiting in line: {update.ahead} job(s) ahead")
            elif isinstance(item, Report):
                progress(item.fraction, desc=item.message)
            yield tuple(gr.skip() for _ in range(n_outputs))
    finally:
        updates.close()  # a closed handler stops its job now, not when the garbage collector gets to it
