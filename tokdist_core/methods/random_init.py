"""`random`: each dimension drawn from a normal with that dimension's mean and std over the vocabulary."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from .base import MethodContext, MethodOutput, register

if TYPE_CHECKING:
    import torch


def _word_generator(seed: int, word: str) -> torch.Generator:
    import torch

    # Seeded by the word too: a word's random row does not depend on the other words in the run.
    digest = hashlib.sha256(f"{seed}:random:{word}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


@register("random", label="Random", description="Normal sample with the per-dimension mean and std of the input embeddings.",
          colour="#9ca3af", order=0)
def random_rows(ctx: MethodContext) -> MethodOutput:
    import torch

    matrix = ctx.input_matrix.float().cpu()
    noise = torch.stack([torch.randn(matrix.shape[1], generator=_word_generator(ctx.config.seed, w))
                         for w in ctx.words])
    return MethodOutput(rows=(matrix.mean(0) + noise * matrix.std(0)).to(ctx.lm.device))
