"""The optimisation loop: only the new input rows train, against the cached teacher; the model stays frozen."""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..forward import autocast_for, decoder_forward, embed_ids, embed_scale, output_logits, resolve_layer
from ..models import LoadedModel
from .batching import StudentBatch, length_groups, shuffled_batches, student_batch
from .config import DistillationCancelled, DistillationConfig, StepRecord
from .teacher import CachedSnippet, TeacherCache


@dataclass
class TrainResult:
    rows: dict[str, torch.Tensor]  # word -> new input row (unscaled, like the embedding matrix)
    seconds: float = 0.0
    snippets_seen: int = 0
    tokens_seen: int = 0


def masked_mse(student: torch.Tensor, teacher: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-weighted MSE over valid positions, and the per-row sums of squared error / counts."""
    per_position = (student.float() - teacher.float()).pow(2).mean(-1) * valid
    count = valid.sum(-1).clamp(min=1)
    per_row = per_position.sum(-1) / count
    return per_position.sum() / valid.sum().clamp(min=1), per_row


def _word_losses(items: list[CachedSnippet], row_losses: list[torch.Tensor]) -> dict[str, float]:
    """Mean loss per word over one step's snippets (one host sync for the whole step)."""
    per_word: dict[str, list[float]] = defaultdict(list)
    for it, value in zip(items, torch.cat(row_losses).cpu().tolist()):
        per_word[it.snippet.word].append(value)
    return {w: sum(v) / len(v) for w, v in per_word.items()}


class DistillationTrainer:
    """Trains the input rows of several new tokens at once; the base model is never modified."""

    def __init__(self, lm: LoadedModel, words: Sequence[str], config: DistillationConfig, cache: TeacherCache,
                 output_rows: torch.Tensor | None = None) -> None:
        config.validate(lm)
        self.lm, self.words, self.config, self.cache = lm, list(words), config, cache
        self.use_distill = "distill" in config.losses
        self.use_ntp = "ntp" in config.losses
        if self.use_distill and resolve_layer(lm.model, config.target_layer) != cache.layer:
            raise ValueError("teacher cache was built for a different target layer")
        if self.use_ntp and not cache.with_final:
            raise ValueError("next-token losses need a teacher cache built with_final=True")
        # Untied models keep their new output rows fixed while the input rows train (set by the output policy).
        self.fixed_output_rows = None if lm.tied else output_rows

    # -- the loop -----------------------------------------------------------------------------------
    def train(self, init_rows: torch.Tensor, method: str = "tokdist",
              callback: Callable[[StepRecord], None] | None = None,
              cancel: threading.Event | None = None) -> TrainResult:
        cfg, lm = self.config, self.lm
        if init_rows.shape != (len(self.words), lm.hidden_size):
            raise ValueError(f"init rows must be [{len(self.words)}, {lm.hidden_size}], got {tuple(init_rows.shape)}")
        # The new rows are the only parameters; they train in fp32 whatever the compute precision.
        rows = torch.nn.Parameter(init_rows.detach().clone().float().to(lm.device))
        optimizer = torch.optim.Adam([rows], lr=cfg.learning_rate)
        rng = random.Random(cfg.seed)
        order = list(range(len(self.cache.items)))
        # Every epoch has the same number of batches; counting them on a throwaway rng keeps `rng` untouched.
        total_steps = len(shuffled_batches(self.cache.items, order, cfg.batch_size, random.Random(0))) * cfg.epochs
        result = TrainResult(rows={})
        start = time.perf_counter()
        step = 0
        for epoch in range(cfg.epochs):
            for indices in shuffled_batches(self.cache.items, order, cfg.batch_size, rng):
                # Stop between steps only, so a cancelled run never hands back half-updated rows.
                if cancel is not None and cancel.is_set():
                    raise DistillationCancelled(f"{method}: stopped after {step} of {total_steps} steps")
                # Forward and backward: one or more passes whose gradients add up to the batch's.
                optimizer.zero_grad(set_to_none=True)
                loss, items, row_losses, tokens = self._forward_backward(rows, indices)
                optimizer.step()
                step += 1
                result.snippets_seen += len(items)
                result.tokens_seen += tokens
                # Report: per-word losses cost a host sync, so only when someone listens.
                if callback is not None:
                    callback(StepRecord(
                        method=method, step=step, total_steps=total_steps, epoch=epoch, loss=float(loss),
                        word_losses=_word_losses(items, row_losses), seconds=time.perf_counter() - start,
                    ))
        if not torch.isfinite(rows).all():
            raise FloatingPointError(f"{method}: training diverged (non-finite rows); lower the learning rate")
        result.seconds = time.perf_counter() - start
        result.rows = {w: rows.detach()[i].clone() for i, w in enumerate(self.words)}
        return result

    def _forward_backward(self, rows: torch.Tensor, indices: list[int],
                          ) -> tuple[torch.Tensor, list[CachedSnippet], list[torch.Tensor], int]:
        """Loss and gradients of one optimizer batch: (loss, its snippets, per-row losses, student tokens)."""
        lm, items = self.lm, self.cache.items
        groups = self._passes(indices)
        total = sum(items[i].width for i in indices)
        seen, row_losses, loss = [], [], 0.0
        for group in groups:
            batch = student_batch(lm, [items[i] for i in group], need_targets=self.use_distill)
            with autocast_for(lm.device, self.config.mixed_precision):
                part, per_row = self._loss(rows, batch)
            # Token-weighted means combine exactly: the batch loss is sum(tokens_g * loss_g) / tokens.
            if len(groups) > 1:
                part = part * (batch.tokens / total)
            part.backward()
            loss = loss + part.detach()
            seen.extend(batch.items)
            row_losses.append(per_row.detach())
        return loss, seen, row_losses, total

    def _passes(self, indices: list[int]) -> list[list[int]]:
        """The student passes of one batch: split by length where that saves padding and stays exact."""
        if self.use_ntp:  # the CE is a mean over its own labels and αNTP's scale a per-batch ratio: no exact split
            return [indices]
        return length_groups(self.cache.items, indices, self.lm.device.type)

    # -- losses -------------------------------------------------------------------------------------
    def _loss(self, rows: torch.Tensor, batch: StudentBatch) -> tuple[torch.Tensor, torch.Tensor]:
        model = self.lm.model
        scale = embed_scale(model)
        new = (rows[batch.word_index] * scale).unsqueeze(1)
        rest = embed_ids(model, batch.suffix_ids) if batch.suffix_ids.shape[1] else new[:, :0]
        embeds = torch.cat([new.to(rest.dtype), rest], dim=1)
        hidden, final = decoder_forward(
            model, embeds, batch.attention_mask, self.cache.layer, batch.position_ids, batch.cache,
            run_to_end=self.use_ntp,
        )
        zero = embeds.new_zeros(())
        per_row = embeds.new_zeros(len(batch.items))
        distill = zero
        if self.use_distill:
            distill, per_row = masked_mse(hidden, batch.targets, batch.valid)
        if not self.use_ntp:
            return distill, per_row
        ce = self._next_token_loss(rows, batch, final)
        if not self.use_distill:
            return ce, per_row
        # αNTP: the CE term is rescaled to the size of the distillation loss (stop-gradient ratio).
        alpha = (distill.detach() / ce.detach().clamp(min=1e-8))
        return distill + alpha * ce, per_row

    def _next_token_loss(self, rows: torch.Tensor, batch: StudentBatch, final: torch.Tensor) -> torch.Tensor:
        model = self.lm.model
        out_rows = rows if self.lm.tied else self.fixed_output_rows
        vocab = model.get_output_embeddings().weight.shape[0]
        # Student positions 0..s-1 predict the suffix tokens.
        logits = output_logits(model, final[:, :-1], out_rows)
        labels = batch.suffix_ids.masked_fill(~batch.valid[:, 1:], -100)
        total = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="sum")
        count = (labels != -100).sum()
        if self.lm.tied:
            # The last prefix position predicts the new token itself: the output side of a tied row.
            with_prefix = [i for i, it in enumerate(batch.items) if it.snippet.start > 0]
            if with_prefix:
                h = torch.stack([batch.items[i].prefix_final[-1] for i in with_prefix]).to(final.dtype)
                target = batch.word_index[with_prefix] + vocab
                total = total + F.cross_entropy(output_logits(model, h, out_rows), target, reduction="sum")
                count = count + len(with_prefix)
        return total / count.clamp(min=1)
