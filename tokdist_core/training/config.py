"""What one training run is told: hyperparameters with their bounds and help, the step record, the stop.

Every `DistillationConfig` field carries its help text and bounds in `dataclasses.field(metadata=...)`
(the peft convention), so defaults, bounds and help live in one place: `validate()` checks against them,
and a command line or a form can read them with `config_fields()`:

    for spec in config_fields():
        spec.name, spec.type, spec.default, spec.help, spec.min, spec.max, spec.choices
        spec.check(value)  # raises ValueError with the same message validate() gives

Metadata keys: "help" (always), "min"/"max" (inclusive; "min_exclusive": True makes the lower bound
open), "choices" (allowed values; for a tuple field, a non-empty subset of them), "rule" (a function that
raises ValueError for values the other keys cannot express, such as combinations of losses).
"""

from __future__ import annotations

import functools
import math
import typing
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from typing import TYPE_CHECKING, Any

from ..foundations.cancel import Cancelled
from ..foundations.limits import PRECISIONS

if TYPE_CHECKING:
    from ..foundations.models import LoadedModel
    from ..foundations.snippet import Snippet

# This module imports no torch: the command line reads the fields' defaults, bounds and help before any
# heavy import. The checks that need the model import what they need when they run.
# The reference's losses (token_distillation/train_loop.py), by what they compare:
DISTILL_LOSSES = ("hidden_mse", "logit_mse", "logit_kl")  # the student against the teacher
NEXT_TOKEN_LOSSES = ("ntp", "ntp_auto")  # the student against the snippet's next tokens
LOSSES = DISTILL_LOSSES + NEXT_TOKEN_LOSSES
LOGIT_LOSSES = ("logit_mse", "logit_kl", *NEXT_TOKEN_LOSSES)  # these read the LM head
INITS = ("subword_mean", "subword_weighted", "random", "vocab_mean")  # the baselines' row functions
SCHEDULES = ("constant", "linear")
OPTIMIZERS = ("adam", "lbfgs")
# `tokdist adapt`'s defaults where they differ from the interactive ones: at hundreds of words on a tied model,
# L-BFGS's converged rows were all judged harmful (they take probability on ordinary text), Adam's 24 epochs
# of batches of 4 pass the held-out check (docs/method.md, "Fewer, better steps: L-BFGS"). In bf16 wherever
# the hardware computes it natively: 2.1 s a word instead of 4.9 at the same share recovered on a 2-core AMX
# CPU (docs/method.md, "bf16 on a CPU that computes it natively"); the harm check weeds out any row it spoils.
ADAPT_DEFAULTS = {"optimizer": "adam", "epochs": 24, "mixed_precision": "native"}
# Loss names of earlier versions; a config that still uses one is refused with what to write instead.
RENAMED_LOSSES = {"distill": "hidden_mse"}


def _check_losses(value: Any) -> None:
    """The combinations the reference allows, and a hint for names of earlier versions."""
    if isinstance(value, str):
        raise ValueError(f"losses must be a tuple of names such as ({value!r},), got the string {value!r}")
    if not isinstance(value, (tuple, list)):
        raise ValueError(f"losses must be a non-empty subset of {LOSSES}, got {value!r}")
    if any(v in RENAMED_LOSSES for v in value):
        if "ntp" in value:  # the old pair was αNTP; today's 'ntp' is the fixed-weight loss
            raise ValueError("losses: the old pair ('distill', 'ntp') was αNTP, now written "
                             "('hidden_mse', 'ntp_auto'); 'distill' is now called 'hidden_mse'")
        renamed = tuple(RENAMED_LOSSES.get(v, v) for v in value)
        raise ValueError(f"losses: 'distill' is now called 'hidden_mse' (the hidden-state MSE); write {renamed!r}")
    if not value or any(v not in LOSSES for v in value):
        return  # the choices check names the allowed values
    if "ntp" in value and "ntp_auto" in value:
        raise ValueError("losses: choose 'ntp' (a fixed weight, ntp_weight) or 'ntp_auto' (αNTP, weighted to the "
                         "size of the distillation loss), not both")
    if "ntp_auto" in value and not any(v in DISTILL_LOSSES for v in value):
        raise ValueError("losses: 'ntp_auto' scales the next-token loss to the size of the distillation loss, so it "
                         f"needs one of {DISTILL_LOSSES} beside it (or use 'ntp' alone)")


def lr_factor(schedule: str, update: int, total_updates: int, warmup_updates: int) -> float:
    """The learning-rate multiplier of one row's `update`-th Adam step (0-based) under `schedule`.

    "linear" is transformers' get_linear_schedule_with_warmup, the paper's schedule: from 0 up to 1 over
    `warmup_updates`, then down to 0 at `total_updates` (so with any warm-up the first step has lr 0, as there).
    """
    if schedule == "constant":
        return 1.0
    if update < warmup_updates:
        return update / max(1, warmup_updates)
    return max(0.0, (total_updates - update) / max(1, total_updates - warmup_updates))


class DistillationCancelled(Cancelled):
    """The cancel flag was set; the run stopped between steps and returned nothing half-trained."""


class OutputPolicy(str, Enum):
    """How an untied model's new LM-head rows are made; the plain strings work wherever a policy is asked."""

    NTP = "ntp"  # the subword mean, then fitted so the model predicts the word where it occurs (fit_output_rows)
    ZERO = "zero"
    SUBWORD_MEAN = "subword_mean"  # the mean of the word's subwords' output rows

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, value: OutputPolicy | str) -> OutputPolicy:
        """The policy named by `value`; ValueError naming the choices otherwise."""
        try:
            return cls(value)
        except (ValueError, TypeError):
            raise ValueError(f"output policy must be one of {OUTPUT_POLICIES}, got {value!r}") from None


OUTPUT_POLICIES = tuple(policy.value for policy in OutputPolicy)


@dataclass
class DistillationConfig:
    """Hyperparameters of one training run.

    Defaults are for the interactive case (a few words, ~25 snippets each): the paper's lr 1e-4 for one
    epoch relies on thousands of steps. A row is a one-vector problem, so L-BFGS takes 39 steps, each on all
    of a word's snippets read up to 4 tokens after the word, where Adam needed hundreds of small ones
    (docs/method.md, "Fewer, better steps: L-BFGS"). `tokdist adapt` keeps Adam's 24 epochs of batches of 4
    (ADAPT_DEFAULTS, in bf16 where the hardware computes it natively): at hundreds of words its rows pass the
    held-out check and L-BFGS's did not.
    """

    epochs: int = field(default=39, metadata={
        "help": "passes over the training snippets (with lbfgs: steps, each a pass, after a first pass at the "
                "start)", "min": 1, "max": 1000})
    batch_size: int = field(default=4, metadata={
        "help": "snippets of each word per optimizer step (every word trains on its own snippets only)",
        "min": 1, "max": 1024})
    tokens_after: int = field(default=4, metadata={
        "help": "tokens after the new token that training reads: each training snippet is cut there, the "
                "teacher included (held-out evaluation reads whole snippets); 0 reads whole snippets",
        "min": 0, "max": 1024})
    learning_rate: float = field(default=1e-2, metadata={
        "help": "Adam's learning rate, or how far L-BFGS's first step moves a row's largest coordinate", "min": 0,
        "min_exclusive": True, "max": 10})
    target_layer: int = field(default=-1, metadata={
        "help": "hidden state to match (Hugging Face hidden-state index): 1..number of layers, or -1 for the "
                "last hidden state after the final norm; the range is checked against the model"})
    losses: tuple[str, ...] = field(default=("hidden_mse",), metadata={
        "help": "what Token Distillation minimises, summed: hidden_mse (the hidden states at the target layer "
                "match the original's), logit_mse and logit_kl (the next-token scores / probabilities over the "
                "original vocabulary match), ntp (predict the snippet's next tokens, times ntp_weight) or "
                "ntp_auto (αNTP: that loss scaled to the size of the others)",
        "choices": LOSSES, "rule": _check_losses})
    ntp_weight: float = field(default=1.0, metadata={
        "help": "weight of the 'ntp' loss next to the distillation losses", "min": 0, "min_exclusive": True,
        "max": 100})
    init: str = field(default="subword_mean", metadata={
        "help": "where the trained rows start: subword_mean (mean of the word's pieces), subword_weighted "
                "(later pieces count more), random (a typical embedding) or vocab_mean (mean of all rows)",
        "choices": INITS})
    schedule: str = field(default="constant", metadata={
        "help": "learning-rate schedule: constant, or linear (warm up from 0, then decay to 0 at the end, "
                "as in the paper); each word follows its own number of steps", "choices": SCHEDULES})
    warmup: float = field(default=0.5, metadata={
        "help": "with the linear schedule, the share of a word's first-epoch steps spent warming up "
                "(the paper's 0.5)", "min": 0, "max": 1})
    optimizer: str = field(default="lbfgs", metadata={
        "help": "how the rows move: adam (many small steps on batches of batch_size snippets) or lbfgs "
                "(quasi-Newton steps on all of a word's snippets at once: an epoch is one step, learning_rate is "
                "how far the first step moves the row's largest coordinate; batch_size, schedule and warmup do "
                "not apply)", "choices": OPTIMIZERS})
    seed: int = field(default=0, metadata={
        "help": "random seed: batch order, the 'random' method's rows and, in run() and compare(), snippet sampling"})
    mixed_precision: str = field(default="auto", metadata={
        "help": "'auto' (bf16 on CUDA, fp32 on CPU), 'native' (bf16 on CUDA and on CPUs with AVX-512 BF16 or "
                "AMX, else fp32), 'bf16' (also on CPU, fast only with AVX-512 BF16 or AMX) or 'no' (fp32)",
        "choices": PRECISIONS})

    def validate(self, lm: LoadedModel | None = None) -> None:
        """Raise ValueError naming the first field outside its bounds; with `lm`, also the model-bound ones."""
        for spec in config_fields():
            spec.check(getattr(self, spec.name))
        if self.optimizer == "lbfgs" and self.schedule != "constant":
            raise ValueError(f"schedule {self.schedule!r} is Adam's: L-BFGS sets its own step lengths "
                             "(use optimizer='adam' for a schedule)")
        if lm is not None:
            from ..foundations.forward import cpu_has_fast_bf16, resolve_layer

            resolve_layer(lm.model, self.target_layer)
            if self.mixed_precision == "bf16" and lm.device.type == "cpu" and not cpu_has_fast_bf16():
                raise ValueError("mixed_precision='bf16' on this CPU would be emulated and slower than fp32 "
                                 "(it needs AVX-512 or AMX); use 'auto' or 'no'")

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def passes(self) -> int:
        """Passes over the training snippets: L-BFGS measures the start before its first step."""
        return self.epochs + (self.optimizer == "lbfgs")

    def step_batch_size(self, snippets_per_word: Iterable[int]) -> int:
        """Snippets of a word in one step: `batch_size` with Adam, all of the word's with L-BFGS."""
        return max(snippets_per_word, default=1) if self.optimizer == "lbfgs" else self.batch_size

    def total_steps(self, snippets_per_word: Iterable[int]) -> int:
        """Optimizer steps of a run whose words have these numbers of training snippets."""
        counts = list(snippets_per_word)
        return steps_per_epoch(counts, self.step_batch_size(counts)) * self.epochs

    def trained_part(self, snippets: Iterable[Snippet]) -> list[Snippet]:
        """What training reads of each snippet: up to `tokens_after` tokens after the word (0: all of it)."""
        return [s.cut_after(self.tokens_after) if self.tokens_after else s for s in snippets]


@dataclass(frozen=True)
class FieldSpec:
    """One `DistillationConfig` field as a command line or a form needs it (see the module docstring)."""

    name: str
    type: Any  # int, float, str or tuple[str, ...]
    default: Any
    help: str
    min: float | None = None
    max: float | None = None
    min_exclusive: bool = False
    choices: tuple[str, ...] | None = None
    rule: Callable[[Any], None] | None = None  # checks beyond the bounds and choices

    @property
    def multiple(self) -> bool:
        """A tuple field: a non-empty subset of `choices`."""
        return typing.get_origin(self.type) is tuple

    def check(self, value: Any) -> None:
        """Raise ValueError when `value` is not allowed for this field."""
        if self.rule is not None:
            self.rule(value)
        if self.choices is not None:
            self._check_choice(value)
        elif self.type is int:
            self._check_int(value)
        elif self.type is float:
            self._check_float(value)

    def _check_int(self, value: Any) -> None:
        is_int = isinstance(value, int) and not isinstance(value, bool)
        if self.min is None and self.max is None:
            if not is_int:
                raise ValueError(f"{self.name} must be an integer, got {value!r}")
        elif not is_int or not self.min <= value <= self.max:
            raise ValueError(f"{self.name} must be an integer between {self.min} and {self.max}, got {value!r}")

    def _check_float(self, value: Any) -> None:
        number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        low_ok = number and (value > self.min if self.min_exclusive else value >= self.min)
        if not low_ok or not value <= self.max:
            interval = f"{'(' if self.min_exclusive else '['}{self.min:g}, {self.max:g}]"
            raise ValueError(f"{self.name} must be a finite number in {interval}, got {value!r}")

    def _check_choice(self, value: Any) -> None:
        if self.multiple:
            if not value or any(v not in self.choices for v in value):
                raise ValueError(f"{self.name} must be a non-empty subset of {self.choices}, got {value!r}")
        elif value not in self.choices:
            names = [repr(c) for c in self.choices]
            either = f"{', '.join(names[:-1])} or {names[-1]}" if len(names) > 1 else names[0]
            raise ValueError(f"{self.name} must be {either}, got {value!r}")


def steps_per_epoch(snippets_per_word: Iterable[int], batch_size: int) -> int:
    """Optimizer steps in one epoch: each word takes `batch_size` of its own snippets per step."""
    return max((math.ceil(n / batch_size) for n in snippets_per_word if n), default=0)


def config_fields() -> list[FieldSpec]:
    """Every `DistillationConfig` field in declaration order: type, default, bounds, help and choices."""
    return list(_specs())


@functools.cache
def _specs() -> tuple[FieldSpec, ...]:
    hints = typing.get_type_hints(DistillationConfig)
    return tuple(
        FieldSpec(name=f.name, type=hints[f.name], default=f.default, help=f.metadata["help"],
                  min=f.metadata.get("min"), max=f.metadata.get("max"),
                  min_exclusive=f.metadata.get("min_exclusive", False), choices=f.metadata.get("choices"),
                  rule=f.metadata.get("rule"))
        for f in fields(DistillationConfig)
    )


@dataclass
class StepRecord:
    """One optimizer step, as the progress callback receives it."""

    method: str
    step: int
    total_steps: int
    epoch: int
    loss: float
    word_losses: dict[str, float]
    seconds: float
