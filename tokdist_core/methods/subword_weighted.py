"""`subword_weighted`: an exponentially position-weighted subword mean (AdaptiVocab style).

Later pieces weigh more (weight 2^i, normalised): in a causal model the last subword's position is where
the word's meaning has been assembled, and it is the position the new token replaces.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import MethodContext, MethodOutput, register, subword_rows

if TYPE_CHECKING:
    import torch


def exponential_weights(n: int) -> torch.Tensor:
    import torch

    w = torch.pow(2.0, torch.arange(n, dtype=torch.float32))
    return w / w.sum()


@register("subword_weighted", label="Weighted subword mean",
          description="Subword rows averaged with weights 2^position (later pieces count more).",
          colour="#7c3aed", order=3)
def subword_weighted_rows(ctx: MethodContext) -> MethodOutput:
    return MethodOutput(rows=subword_rows(ctx, exponential_weights))
