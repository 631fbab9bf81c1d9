"""`vocab_mean`: the mean of all input rows, as HF resize_token_embeddings(mean_resizing=True) does."""

from .base import MethodContext, MethodOutput, register


@register("vocab_mean", label="Vocabulary mean", description="Mean of all input embedding rows (HF mean_resizing).",
          colour="#a16207", order=1)
def vocab_mean_rows(ctx: MethodContext) -> MethodOutput:
    mean = ctx.input_matrix.float().mean(0)
    return MethodOutput(rows=mean.expand(len(ctx.splits), -1).clone())
