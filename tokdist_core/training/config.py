"""What one training run is told: hyperparameters with their bounds and help, the step record, the stop.

Every `DistillationConfig` field carries its help text and bounds in `dataclasses.field(metadata=...)`
(the peft convention), so defaults, bounds and help live in one place: `validate()` checks against them,
and a command line or a form can read them with `config_fields()`:

    for spec in config_fields():
        spec.name, spec.type, spec.default, spec.help, spec.min, spec.max, spec.choices
        spec.check(value)  # raises ValueError with the same message validate() gives

Metadata keys: "help" (always), "min"/"max" (inclusive; "min_exclusive": True makes the lower bound
open), "choices" (allowed values; for a tuple field, a non-empty subset of them).
"""

from __future__ import annotations

import functools
import math
import typing
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

from ..cancel import Cancelled

if TYPE_CHECKING:
    from ..models import LoadedModel

# This module imports no torch: the command line reads the fields' defaults, bounds and help before any
# heavy import. The checks that need the model import what they need when they run.
LOSSES = ("distill", "ntp")
PRECISIONS = ("auto", "bf16", "no")  # "auto": bf16 autocast on CUDA, fp32 on CPU


class DistillationCancelled(Cancelled):
    """The cancel flag was set; the run stopped between steps and returned nothing half-trained."""


@dataclass
class DistillationConfig:
    """Hyperparameters of one training run.

    Defaults are for the interactive case (a few words, ~25 snippets each): the paper's lr 1e-4 for one
    epoch relies on thousands of steps; here lr 1e-2 over 8 epochs of cached snippets converges (README).
    """

    epochs: int = field(default=8, metadata={"help": "passes over the training snippets", "min": 1, "max": 1000})
    batch_size: int = field(default=16, metadata={
        "help": "snippets of each word per optimizer step (every word trains on its own snippets only)",
        "min": 1, "max": 1024})
    learning_rate: float = field(default=1e-2, metadata={
        "help": "Adam learning rate of the new rows", "min": 0, "min_exclusive": True, "max": 10})
    target_layer: int = field(default=-1, metadata={
        "help": "hidden state to match (Hugging Face hidden-state index): 1..number of layers, or -1 for the "
                "last hidden state after the final norm; the range is checked against the model"})
    losses: tuple[str, ...] = field(default=("distill",), metadata={
        "help": "'distill' (hidden-state MSE), 'ntp' (next-token cross-entropy) or both (αNTP: the "
                "cross-entropy scaled to the size of the distillation loss)", "choices": LOSSES})
    seed: int = field(default=0, metadata={
        "help": "random seed: batch order, the 'random' method's rows and, in run() and compare(), snippet sampling"})
    mixed_precision: str = field(default="auto", metadata={
        "help": "'auto' (bf16 on CUDA, fp32 on CPU), 'bf16' (also on CPU, fast only with AVX-512 BF16 or AMX) "
                "or 'no' (fp32)", "choices": PRECISIONS})

    def validate(self, lm: LoadedModel | None = None) -> None:
        """Raise ValueError naming the first field outside its bounds; with `lm`, also the model-bound ones."""
        for spec in config_fields():
            spec.check(getattr(self, spec.name))
        if lm is not None:
            from ..forward import cpu_has_fast_bf16, resolve_layer

            resolve_layer(lm.model, self.target_layer)
            if self.mixed_precision == "bf16" and lm.device.type == "cpu" and not cpu_has_fast_bf16():
                raise ValueError("mixed_precision='bf16' on this CPU would be emulated and slower than fp32 "
                                 "(it needs AVX-512 or AMX); use 'auto' or 'no'")

    def to_dict(self) -> dict:
        return asdict(self)


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

    @property
    def multiple(self) -> bool:
        """A tuple field: a non-empty subset of `choices`."""
        return typing.get_origin(self.type) is tuple

    def check(self, value: Any) -> None:
        """Raise ValueError when `value` is not allowed for this field."""
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
                  min_exclusive=f.metadata.get("min_exclusive", False), choices=f.metadata.get("choices"))
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
