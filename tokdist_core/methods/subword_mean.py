"""`subword_mean` (FVT): the mean of the word's subword input rows."""

from .base import MethodContext, MethodOutput, register, subword_rows


@register("subword_mean", label="Subword mean (FVT)", description="Mean of the input rows of the word's subwords.",
          colour="#2563eb", order=2)
def subword_mean_rows(ctx: MethodContext) -> MethodOutput:
    return MethodOutput(rows=subword_rows(ctx))
