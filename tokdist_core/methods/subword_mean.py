"""`subword_mean` (FVT): the mean of the word's subword input rows."""

from .base import MethodContext, MethodOutput, register, subword_rows


@register("subword_mean", "Subword mean (FVT)", "Mean of the input rows of the word's subwords.")
def subword_mean_rows(ctx: MethodContext) -> MethodOutput:
    return MethodOutput(rows=subword_rows(ctx))
