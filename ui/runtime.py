"""Process-wide runtime of the app: the shared base models, flags, limits and the GPU decorator.

One base model per name is loaded once per process and shared by every session; requests only read
it (the core never mutates it). Everything per user lives in `ui.state.SessionState`.
"""

from __future__ import annotations

import functools
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gradio as gr
import psutil

from tokdist_core import (
    BUNDLED_MODELS,
    Cancelled,
    JobEstimate,
    LoadedModel,
    ModelLoadError,
    TokenDistillation,
    format_seconds,
    load_model,
)

from .jobs import JobLine

# --- limits the app enforces on top of the library's own (CPU-friendly; say them in the UI) ----------
MAX_APP_WORDS = 20  # words per session run
MAX_APP_CANDIDATES = 200  # candidates one Find-words search lists (the CLI has no such limit)
MAX_INPUT_CHARS = 5_000  # any free-text box
MAX_APP_SNIPPETS = 200  # train snippets per word
MAX_APP_HELDOUT = 50
MAX_APP_SNIPPET_LEN = 256
MIN_APP_SNIPPET_LEN = 8
MAX_APP_EPOCHS = 50
MAX_APP_BATCH = 64
MAX_NEW_TOKENS = 100
MAX_UPLOAD_FILES = 5
MAX_UPLOAD_MB = 20
UPLOAD_TYPES = (".txt", ".md", ".jsonl", ".json", ".parquet", ".csv")
MAX_EXTRA_MODELS = 2  # non-default models kept in memory at once (least recently used is dropped)
MEMORY_SHARE = 0.5  # a job may plan to use at most this share of the memory available when it starts

# ZeroGPU on Hugging Face Spaces: functions that touch the GPU are wrapped by `spaces.GPU`.
try:  # pragma: no cover - only present on Spaces
    import spaces  # type: ignore[import-not-found]

    def gpu(duration: int = 120) -> Callable[[Callable], Callable]:
        return spaces.GPU(duration=duration)

except ImportError:  # the normal case here: a no-op decorator

    def gpu(duration: int = 120) -> Callable[[Callable], Callable]:  # noqa: ARG001
        def wrap(fn: Callable) -> Callable:
            return fn

        return wrap


@dataclass
class Runtime:
    """Flags from app.py plus the shared model cache."""

    default_model: str = "smollm2-135m"
    allow_any_model: bool = False
    device: str = "auto"
    max_job_seconds: float = 300.0  # wall-clock limit of one heavy job (training, contexts, export...)
    max_waiting_jobs: int = 16  # heavy jobs waiting across all sessions before new ones are refused
    max_export_bytes: int = 2 * 1024**3  # disk the app's exports may use at once
    _models: OrderedDict[str, LoadedModel] = field(default_factory=OrderedDict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    startup_error: str | None = None
    jobs: JobLine = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.jobs = JobLine(self.max_waiting_jobs, self.max_job_seconds)

    def preload(self) -> None:
        """Load the default model at start so the first click is fast; remember a failure to show it."""
        try:
            lm = self.model(self.default_model)
        except (ModelLoadError, ValueError, OSError) as exc:
            self.startup_error = str(exc)
            return
        TokenDistillation(lm).estimate_generation(1, 1)  # measures the model's speed once: estimates are instant

    def check_estimate(self, estimate: JobEstimate, what: str) -> None:
        """Refuse a job that cannot finish within the time limit or would not fit in memory."""
        if estimate.seconds > self.max_job_seconds:
            raise gr.Error(f"{what} would take {estimate.describe()} on this server; the limit is "
                           f"{format_seconds(self.max_job_seconds)} per job. Use fewer words, snippets, "
                           "epochs or methods (or a larger batch), or run it with the tokdist command line.")
        free = psutil.virtual_memory().available
        if estimate.memory_bytes > MEMORY_SHARE * free:
            raise gr.Error(f"{what} would hold about {estimate.memory_bytes / 2**30:.1f} GB of teacher states; "
                           f"this server can spare {MEMORY_SHARE * free / 2**30:.1f} GB now. "
                           "Use fewer words or shorter snippets.")

    def model_choices(self) -> list[str]:
        names = list(BUNDLED_MODELS)
        if self.default_model not in names:
            names.insert(0, self.default_model)
        return names

    def check_model_name(self, name: str | None) -> str:
        name = (name or "").strip() or self.default_model
        if len(name) > 300:
            raise gr.Error("The model name is too long (over 300 characters).")
        if name != self.default_model and name not in BUNDLED_MODELS and not self.allow_any_model:
            raise gr.Error(
                f"This server only serves its bundled models ({', '.join(self.model_choices())}). "
                "Start the app with --allow-any-model to load any Hugging Face id or local folder."
            )
        return name

    def model(self, name: str | None = None) -> LoadedModel:
        """The shared, frozen base model `name` (loaded on first use, then cached)."""
        name = (name or "").strip() or self.default_model
        with self._lock:  # one load at a time; concurrent callers wait and then share it
            if name in self._models:
                self._models.move_to_end(name)
                return self._models[name]
            lm = load_model(name, device=self.device)
            self._models[name] = lm
            extra = [n for n in self._models if n != self.default_model]
            while len(extra) > MAX_EXTRA_MODELS:
                self._models.pop(extra.pop(0))
            return lm

    def engine(self, name: str | None = None) -> TokenDistillation:
        """A thin TokenDistillation wrapper around the shared model (cheap: no copy)."""
        try:
            return TokenDistillation(self.model(name))
        except ModelLoadError as exc:
            raise gr.Error(f"Could not load the model: {exc}") from exc


def device_label(lm: LoadedModel) -> str:
    """'GPU (NVIDIA H100)' or 'CPU (2 cores)' for the page."""
    return lm.device_label


# An absolute path of two or more parts (a server temp file, the working directory...): users see its last part.
_RE_SERVER_PATH = re.compile(r"(?<![\w.:/])(?:/[\w.@+\-]+)+/([\w.@+\-]+)")


def public_message(message: str) -> str:
    """An error message fit for a remote user: no server paths, only file names."""
    return _RE_SERVER_PATH.sub(r"\1", message)


def user_errors(fn: Callable) -> Callable:
    """Turn the library's ValueErrors (clear messages by design) and stops into visible gr.Error toasts.

    Works for plain functions and generators; unexpected errors keep their type so bugs stay visible.
    """
    import inspect

    def convert(exc: BaseException) -> gr.Error:
        text = str(exc) or exc.__class__.__name__
        if isinstance(exc, Cancelled):
            text = f"Stopped ({text}); nothing was changed."
        return gr.Error(public_message(text), print_exception=False)

    handled = (ValueError, OSError, Cancelled)

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen_wrapper(*args: Any, **kwargs: Any):
            try:
                yield from fn(*args, **kwargs)
            except gr.Error as exc:
                raise gr.Error(public_message(str(exc.message)), print_exception=False) from exc
            except handled as exc:
                raise convert(exc) from exc

        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any):
        try:
            return fn(*args, **kwargs)
        except gr.Error as exc:
            raise gr.Error(public_message(str(exc.message)), print_exception=False) from exc
        except handled as exc:
            raise convert(exc) from exc

    return wrapper
