"""What every init method gets and returns, and the one registry they live in.

The registry loads without torch (each method imports it when it runs), so the command line checks
method names before any heavy import.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..foundations.snippet import Snippet
from ..foundations.vocab import WordSplit
from ..training.config import LOGIT_LOSSES, DistillationConfig, StepRecord

if TYPE_CHECKING:
    import torch

    from ..foundations.models import LoadedModel
    from ..training.teacher import TeacherCache


@dataclass
class MethodContext:
    """Inputs shared by all methods of one run; teacher caches are built lazily and shared."""

    lm: LoadedModel
    splits: list[WordSplit]
    train_snippets: list[Snippet]
    config: DistillationConfig
    callback: Callable[[StepRecord], None] | None = None
    cancel: threading.Event | None = None
    trajectory_points: int = 0  # >= 2: trained methods also record their rows at that many steps (0: off)
    _caches: dict[tuple[int, bool], TeacherCache] = field(default_factory=dict, repr=False)

    @property
    def words(self) -> list[str]:
        return [s.word for s in self.splits]

    @property
    def input_matrix(self) -> torch.Tensor:
        """Original input rows only (padding rows beyond the tokenizer are excluded)."""
        weight = self.lm.model.get_input_embeddings().weight
        return weight[: min(len(self.lm.tokenizer), weight.shape[0])].detach()

    @property
    def teacher_seconds(self) -> float:
        """Time spent building the teacher caches so far (shared by every method of the run)."""
        return sum(cache.seconds for cache in self._caches.values())

    def teacher_cache(self, with_final: bool) -> TeacherCache:
        # A cache with final states also serves distill-only methods, so reuse it when present.
        layer = self.config.target_layer
        for (cached_layer, cached_final), cache in self._caches.items():
            if cached_layer == layer and (cached_final or not with_final):
                return cache
        from ..training.teacher import TeacherCache

        snippets = self.config.trained_part(self.train_snippets)  # what training reads of each snippet
        cache = TeacherCache(self.lm, snippets, self.words, layer, with_final,
                             mixed_precision=self.config.mixed_precision, cancel=self.cancel)
        self._caches[(layer, with_final)] = cache
        return cache


@dataclass
class MethodOutput:
    rows: torch.Tensor  # [num_words, hidden] new input rows in the embedding matrix's (unscaled) space
    history: list[StepRecord] = field(default_factory=list)
    seconds: float = 0.0
    tokens_seen: int = 0  # student positions trained on, over all epochs
    # Trained methods asked to record: the rows at `trajectory_steps` ([points, words, hidden], cpu fp32).
    trajectory: torch.Tensor | None = None
    trajectory_steps: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Method:
    """Everything about one init method, in one place: the app, the CLI, figures and docs read it."""

    name: str
    label: str  # for people: tables, legends, the method picker
    description: str  # one sentence: what it does
    colour: str  # one colour per method everywhere, so a teacher can point at "the orange line"
    order: int  # display order: baselines from weakest to strongest, then the trained methods
    # The training losses it uses under a config (names from training.LOSSES); None for methods that
    # only compute rows.
    losses: Callable[[DistillationConfig], tuple[str, ...]] | None
    run: Callable[[MethodContext], MethodOutput]

    @property
    def trains(self) -> bool:
        """Needs training snippets and an optimisation loop."""
        return self.losses is not None

    def losses_for(self, config: DistillationConfig) -> tuple[str, ...]:
        """The losses this method trains with under `config` (empty when it does not train)."""
        return () if self.losses is None else tuple(self.losses(config))

    def needs_lm_head(self, config: DistillationConfig) -> bool:
        """Its losses read logits (next-token or logit losses), so teacher and student run through the LM head."""
        return any(name in LOGIT_LOSSES for name in self.losses_for(config))


REGISTRY: dict[str, Method] = {}


def register(name: str, *, label: str, description: str, colour: str, order: int,
             losses: Callable[[DistillationConfig], tuple[str, ...]] | None = None) -> Callable:
    """Decorator: add the function as method `name` with its metadata (one call per method); `losses`
    maps a config to the losses the method trains with (None: it only computes rows)."""

    def wrap(fn: Callable[[MethodContext], MethodOutput]) -> Callable[[MethodContext], MethodOutput]:
        if name in REGISTRY:
            raise ValueError(f"method {name!r} registered twice")
        REGISTRY[name] = Method(name=name, label=label, description=description, colour=colour, order=order,
                                losses=losses, run=fn)
        return fn

    return wrap


def subword_rows(ctx: MethodContext, weights: Callable[[int], torch.Tensor] | None = None) -> torch.Tensor:
    """Per word, a (weighted) mean of its subwords' input rows."""
    import torch

    matrix = ctx.lm.model.get_input_embeddings().weight.detach()
    rows = []
    for split in ctx.splits:
        pieces = matrix[list(split.ids)].float()
        w = torch.full((len(split.ids),), 1.0 / len(split.ids)) if weights is None else weights(len(split.ids))
        rows.append((w.to(pieces.device).unsqueeze(1) * pieces).sum(0))
    return torch.stack(rows)
