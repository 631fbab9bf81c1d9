"""Held-out metrics: how close the student's hidden states and next-token distributions come to the teacher's.

Evaluation runs full forward passes (no prefix-cache trick), so it also cross-checks training.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..foundations.cancel import check_cancel
from ..foundations.forward import autocast_for, embed_ids, resolve_layer
from ..foundations.models import LoadedModel
from ..foundations.rows import NewTokenRows
from ..foundations.snippet import Snippet

METRICS = ("hidden_mse", "hidden_cos", "next_token_kl", "norm_percentile", "seconds")
LOWER_IS_BETTER = {"hidden_mse": True, "hidden_cos": False, "next_token_kl": True}


def pad_rows(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids, mask


def student_embeds(lm: LoadedModel, snippets: Sequence[Snippet], rows: NewTokenRows) -> tuple[torch.Tensor, torch.Tensor]:
    pad = lm.tokenizer.pad_token_id or 0
    ids, mask = pad_rows([list(s.prefix) + [pad] + list(s.suffix) for s in snippets], pad)
    ids, mask = ids.to(lm.device), mask.to(lm.device)
    embeds = embed_ids(lm.model, ids)
    scaled = rows.scaled_input(lm.model).to(embeds.device, embeds.dtype)
    for i, s in enumerate(snippets):
        embeds[i, s.start] = scaled[rows.index(s.word)]
    return embeds, mask


@dataclass
class _Aligned:
    """Teacher outputs at the aligned positions of one held-out batch (computed once, shared by methods)."""

    hidden: list[torch.Tensor]  # per layer [N, H] (N = aligned positions in the batch)
    log_probs: torch.Tensor  # [N, V] over the original vocabulary
    owner: list[int]  # batch row of each aligned position


def _aligned_index(snippets: Sequence[Snippet], student: bool) -> tuple[list[int], list[int]]:
    rows, cols = [], []
    for i, s in enumerate(snippets):
        first = s.start if student else s.start + s.n_subwords - 1
        for j in range(len(s.suffix) + 1):
            rows.append(i)
            cols.append(first + j)
    return rows, cols


@torch.no_grad()
def _aligned(lm: LoadedModel, snippets: Sequence[Snippet], student: bool, **inputs: torch.Tensor) -> _Aligned:
    """A full forward, keeping every layer's states and the next-token log-probs at the aligned positions."""
    with autocast_for(lm.device):
        out = lm.model(**inputs, output_hidden_states=True, use_cache=False)
    r, c = _aligned_index(snippets, student=student)
    return _Aligned(hidden=[h[r, c].float() for h in out.hidden_states],
                    log_probs=F.log_softmax(out.logits[r, c].float(), -1), owner=r)


def _teacher(lm: LoadedModel, snippets: Sequence[Snippet]) -> _Aligned:
    ids, mask = pad_rows([list(s.token_ids) for s in snippets], lm.tokenizer.pad_token_id or 0)
    return _aligned(lm, snippets, False, input_ids=ids.to(lm.device), attention_mask=mask.to(lm.device))


def _student(lm: LoadedModel, snippets: Sequence[Snippet], rows: NewTokenRows) -> _Aligned:
    embeds, mask = student_embeds(lm, snippets, rows)
    return _aligned(lm, snippets, True, inputs_embeds=embeds, attention_mask=mask)


def norm_percentile(lm: LoadedModel, row: torch.Tensor) -> float:
    """Percentage of original input rows whose norm is below this row's norm."""
    weight = lm.model.get_input_embeddings().weight
    norms = weight[: min(len(lm.tokenizer), weight.shape[0])].detach().float().norm(dim=-1)
    return float((norms < row.float().norm()).float().mean() * 100)


def heldout_metrics(lm: LoadedModel, methods: Sequence[NewTokenRows], snippets: Sequence[Snippet],
                    target_layer: int = -1, batch_size: int = 16, cancel: threading.Event | None = None) -> dict:
    """Per method and word: hidden MSE/cos at the target layer, next-token KL, norm percentile, and
    per-layer MSE/cos curves, all over aligned positions of held-out snippets from the new token on.

    A set ``cancel`` flag raises Cancelled before the next batch."""
    layer = resolve_layer(lm.model, target_layer)
    sums: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(float)))
    curves: dict = defaultdict(lambda: defaultdict(lambda: None))
    counts: dict = defaultdict(int)
    ordered = sorted(snippets, key=lambda s: len(s.token_ids))
    for b in range(0, len(ordered), batch_size):
        check_cancel(cancel, f"stopped while evaluating ({b} of {len(ordered)} held-out snippets)")
        batch = ordered[b : b + batch_size]
        teacher = _teacher(lm, batch)
        words = [batch[i].word for i in teacher.owner]
        for w in set(words):
            counts[w] += sum(1 for x in words if x == w)
        for rows in methods:
            student = _student(lm, batch, rows)
            mse_layers = torch.stack([(s - t).pow(2).mean(-1) for s, t in zip(student.hidden, teacher.hidden)])
            cos_layers = torch.stack([F.cosine_similarity(s, t, dim=-1) for s, t in zip(student.hidden, teacher.hidden)])
            # Both distributions are over the original output rows (the plain model head), so KL compares like with like.
            kl = (teacher.log_probs.exp() * (teacher.log_probs - student.log_probs)).sum(-1)
            for w in set(words):
                sel = torch.tensor([x == w for x in words])
                acc = sums[rows.method][w]
                acc["hidden_mse"] += float(mse_layers[layer][sel].sum())
                acc["hidden_cos"] += float(cos_layers[layer][sel].sum())
                acc["next_token_kl"] += float(kl[sel].sum())
                prev = curves[rows.method][w]
                add = torch.stack([mse_layers[:, sel].sum(1), cos_layers[:, sel].sum(1)])
                curves[rows.method][w] = add if prev is None else prev + add
    report: dict = {}
    for rows in methods:
        per_word = {}
        for w in rows.words:
            n = counts.get(w, 0)
            if not n:
                continue
            acc = sums[rows.method][w]
            curve = curves[rows.method][w] / n
            per_word[w] = {
                "hidden_mse": acc["hidden_mse"] / n,
                "hidden_cos": acc["hidden_cos"] / n,
                "next_token_kl": acc["next_token_kl"] / n,
                "norm_percentile": norm_percentile(lm, rows.input_rows[rows.index(w)]),
                "layer_mse": curve[0].tolist(),
                "layer_cos": curve[1].tolist(),
                "positions": n,
            }
        report[rows.method] = per_word
    return report


def heldout_snippet_losses(lm: LoadedModel, methods: Sequence[NewTokenRows], snippets: Sequence[Snippet],
                           target_layer: int = -1, batch_size: int = 16) -> dict[str, list[tuple[float, int]]]:
    """Per method, per snippet (in the given order): (hidden MSE at the target layer, aligned positions).

    The same full forward passes and batches as `heldout_metrics`, so a word's position-weighted mean over
    its snippets is that function's `hidden_mse` for the word."""
    layer = resolve_layer(lm.model, target_layer)
    order = sorted(range(len(snippets)), key=lambda i: len(snippets[i].token_ids))
    sums: dict[str, list[float]] = {rows.method: [0.0] * len(snippets) for rows in methods}
    counts = [len(s.suffix) + 1 for s in snippets]
    for b in range(0, len(order), batch_size):
        chosen = order[b : b + batch_size]
        batch = [snippets[i] for i in chosen]
        teacher = _teacher(lm, batch)
        owner = torch.tensor(teacher.owner)
        for rows in methods:
            student = _student(lm, batch, rows)
            mse = (student.hidden[layer] - teacher.hidden[layer]).pow(2).mean(-1)
            per_row = torch.zeros(len(batch), dtype=mse.dtype).index_add(0, owner, mse.cpu())
            for k, i in enumerate(chosen):
                sums[rows.method][i] = float(per_row[k])
    return {method: [(total / n, n) for total, n in zip(values, counts)] for method, values in sums.items()}
