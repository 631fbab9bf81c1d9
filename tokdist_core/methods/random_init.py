"""`random`: each dimension drawn from a normal with that dimension's mean and std over the vocabulary."""

import torch

from .base import MethodContext, MethodOutput, register


@register("random", label="Random", description="Normal sample with the per-dimension mean and std of the input embeddings.",
          colour="#9ca3af", order=0)
def random_rows(ctx: MethodContext) -> MethodOutput:
    matrix = ctx.input_matrix.float().cpu()
    noise = torch.randn((len(ctx.splits), matrix.shape[1]), generator=ctx.generator())
    return MethodOutput(rows=(matrix.mean(0) + noise * matrix.std(0)).to(ctx.lm.device))
