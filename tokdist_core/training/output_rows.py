"""New output (LM-head) rows for untied models, in one place: the policy, the subword mean and the fit.

Tied models share the input rows, so they get none. For untied ones the trained methods hold the new
output rows fixed at the subword mean while the input rows train; the rows that are exported follow
the output policy.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import torch

from ..foundations.cancel import check_cancel
from ..foundations.forward import output_logits, softcap
from ..foundations.models import LoadedModel
from ..foundations.snippet import Snippet
from ..foundations.vocab import WordSplit
from .config import DistillationConfig, OutputPolicy
from .teacher import TeacherCache


def subword_mean_output_rows(lm: LoadedModel, splits: Sequence[WordSplit]) -> torch.Tensor:
    """[words, hidden] per word, the mean of its subwords' LM-head rows (fp32, on the head's device)."""
    head = lm.model.get_output_embeddings().weight.detach()
    return torch.stack([head[list(s.ids)].float().mean(0) for s in splits])


def new_output_rows(lm: LoadedModel, splits: Sequence[WordSplit], train: Sequence[Snippet],
                    policy: OutputPolicy | str, config: DistillationConfig, cache: TeacherCache | None = None,
                    cancel: threading.Event | None = None) -> torch.Tensor | None:
    """New LM-head rows by `policy` (None for tied models, which share the input rows).

    `ntp` without training snippets falls back to the subword mean; it reuses `cache` when that was
    built with final states and builds one otherwise.
    """
    if lm.tied:
        return None
    policy = OutputPolicy.parse(policy)
    mean = subword_mean_output_rows(lm, splits)
    if policy is OutputPolicy.ZERO:
        return torch.zeros_like(mean)
    if policy is OutputPolicy.SUBWORD_MEAN or not train:
        return mean
    if cache is None or not cache.with_final:
        cache = TeacherCache(lm, train, [s.word for s in splits], config.target_layer, with_final=True,
                             mixed_precision=config.mixed_precision, cancel=cancel)
    return fit_output_rows(lm, cache, mean, cancel=cancel)


def fit_output_rows(lm: LoadedModel, cache: TeacherCache, init_rows: torch.Tensor, steps: int = 200,
                    learning_rate: float = 1e-2, cancel: threading.Event | None = None) -> torch.Tensor:
    """Next-token fit of new LM-head rows for untied models, from the teacher's prefix states.

    Every prefix position keeps its original target; the last one predicts the new token. The
    original logits are fixed, so their log-sum-exp is computed once and only the new rows train. Each
    position's softmax holds the original vocabulary and its own word's new row.
    """
    if not cache.with_final:
        raise ValueError("fit_output_rows needs a teacher cache built with_final=True")
    model = lm.model
    hs, targets, is_new = [], [], []
    for it in cache.items:
        p = it.snippet.start
        if p == 0:
            continue
        hs.append(it.prefix_final)
        nxt = list(it.snippet.prefix[1:])
        targets.append(torch.tensor(nxt + [0]))  # the last one predicts the new token (new_mask)
        is_new.append(torch.tensor([False] * (p - 1) + [True]))
    rows = init_rows.detach().clone().float().to(lm.device)
    if not hs:
        return rows
    h = torch.cat(hs).to(lm.device)
    target = torch.cat(targets).to(lm.device)
    new_mask = torch.cat(is_new).to(lm.device)
    with torch.no_grad():
        base = output_logits(model, h)  # [N, V] original rows only, softcapped
        base_lse = torch.logsumexp(base, -1)
        base_target = base.gather(1, target.clamp(max=base.shape[1] - 1).unsqueeze(1)).squeeze(1)
        del base
    word = target.new_tensor([it.word_index for it in cache.items if it.snippet.start > 0
                              for _ in range(it.snippet.start)])
    positions = torch.bincount(word, minlength=rows.shape[0]).clamp(min=1).float()
    param = torch.nn.Parameter(rows)
    optimizer = torch.optim.Adam([param], lr=learning_rate)
    for step in range(steps):
        check_cancel(cancel, f"stopped while fitting the output rows (step {step} of {steps})")
        # Each position sees only its own word's new row, and each word's loss is its own mean: a word's
        # output row does not depend on the other words (Adam is element-wise, every row steps every step).
        own = softcap(model, (h * param[word]).sum(-1))
        lse = torch.logaddexp(base_lse, own)
        nll = lse - torch.where(new_mask, own, base_target)
        loss = (torch.zeros_like(positions).index_add(0, word, nll) / positions).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return param.detach()
