"""The optimisation loop: only the new input rows train, against the cached teacher; the model stays frozen."""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

import torch
import torch.nn.functional as F

from ..foundations.forward import (
    autocast_for,
    decoder_forward,
    embed_ids,
    embed_scale,
    original_logits,
    own_row_logits,
    resolve_layer,
)
from ..foundations.models import LoadedModel
from .batching import (
    StudentBatch,
    WordOrder,
    length_groups,
    pass_groups,
    student_batch,
    student_pass_tokens,
)
from .config import (
    DISTILL_LOSSES,
    LOGIT_LOSSES,
    DistillationCancelled,
    DistillationConfig,
    StepRecord,
    lr_factor,
)
from .lbfgs import RowLBFGS
from .teacher import TeacherCache
from .trajectory import RowRecorder


@dataclass
class TrainResult:
    rows: dict[str, torch.Tensor]  # word -> new input row (unscaled, like the embedding matrix)
    seconds: float = 0.0
    snippets_seen: int = 0
    tokens_seen: int = 0
    # With trajectory_points: every word's row at `trajectory_steps` ([points, words, hidden], cpu fp32).
    trajectory: torch.Tensor | None = None
    trajectory_steps: list[int] = field(default_factory=list)  # 0 = the init; the last = the final rows


def masked_mse(student: torch.Tensor, teacher: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-weighted MSE over valid positions, and the per-row sums of squared error / counts."""
    per_position = (student.float() - teacher.float()).pow(2).mean(-1) * valid
    count = valid.sum(-1).clamp(min=1)
    per_row = per_position.sum(-1) / count
    return per_position.sum() / valid.sum().clamp(min=1), per_row


def _word_lr_factor(config: DistillationConfig, word_steps: int, steps: int, step: int) -> float:
    """LambdaLR's multiplier at global `step` for a row with `word_steps` of the epoch's `steps` batches.

    The row takes its k-th batch of epoch e at global step e * steps + k (k < word_steps): its own update
    index is e * word_steps + k, so its learning rate follows its own steps, not the other words'.
    """
    epoch, k = divmod(step, max(steps, 1))
    update = epoch * word_steps + min(k, max(word_steps - 1, 0))
    return lr_factor(config.schedule, update, config.epochs * word_steps, int(config.warmup * word_steps))


@dataclass
class _Step:
    """One optimizer step: per word its snippets, and the per-word counts that normalise its loss."""

    batches: dict[int, list[int]]  # word index -> indices into the cache
    distill_tokens: dict[int, int]  # word index -> student positions of its snippets in this step
    ntp_labels: dict[int, int]  # word index -> next-token labels of its snippets in this step


class DistillationTrainer:
    """Trains the input rows of several new tokens at once; the base model is never modified.

    Words are independent: each step takes `batch_size` of a word's own snippets in an order seeded by
    the word, its loss is normalised by its own tokens, its next-token softmax holds only its own new
    token, and Adam keeps one parameter (and one step count) per word. A word's row is therefore the same
    whichever words train beside it, so chunked, resumed and sharded runs give the same rows.
    """

    def __init__(self, lm: LoadedModel, words: Sequence[str], config: DistillationConfig, cache: TeacherCache,
                 output_rows: torch.Tensor | None = None) -> None:
        config.validate(lm)
        self.lm, self.words, self.config, self.cache = lm, list(words), config, cache
        self.model = lm.compute_model(config.mixed_precision)  # the base model, or its bf16 twin on a CPU
        losses = set(config.losses)
        self.use_hidden = "hidden_mse" in losses
        self.logit_losses = [name for name in ("logit_mse", "logit_kl") if name in losses]
        self.use_ntp = bool(losses & {"ntp", "ntp_auto"})
        self.use_final = bool(losses & set(LOGIT_LOSSES))  # the student runs through the LM head
        if self.use_hidden and resolve_layer(lm.model, config.target_layer) != cache.layer:
            raise ValueError("teacher cache was built for a different target layer")
        if self.use_final and not cache.with_final:
            raise ValueError("next-token and logit losses need a teacher cache built with_final=True")
        # The original vocabulary (padding rows beyond the tokenizer excluded), as the reference compares logits.
        self.vocab = min(len(lm.tokenizer), lm.model.get_output_embeddings().weight.shape[0])
        # Untied models keep their new output rows fixed while the input rows train (set by the output policy).
        self.fixed_output_rows = None if lm.tied else output_rows
        by_word: dict[int, list[int]] = defaultdict(list)
        for i, it in enumerate(cache.items):
            by_word[it.word_index].append(i)
        # Within a word, the cache keeps the word's own snippet order (a stable sort by length).
        self.orders = {w: WordOrder(self.words[w], idx, config.seed) for w, idx in sorted(by_word.items())}
        self.pass_budget = student_pass_tokens(lm, vocab_wide=bool(self.logit_losses))

    @property
    def total_steps(self) -> int:
        return self.config.total_steps(len(order.indices) for order in self.orders.values())

    # -- the loop -----------------------------------------------------------------------------------
    def train(self, init_rows: torch.Tensor, method: str = "tokdist",
              callback: Callable[[StepRecord], None] | None = None,
              cancel: threading.Event | None = None, trajectory_points: int = 0) -> TrainResult:
        """Train the rows from `init_rows` [words, hidden]. `trajectory_points` >= 2 also records the rows
        at that many evenly spaced steps, the init and the final rows included (see RowRecorder)."""
        cfg, lm = self.config, self.lm
        if init_rows.shape != (len(self.words), lm.hidden_size):
            raise ValueError(f"init rows must be [{len(self.words)}, {lm.hidden_size}], got {tuple(init_rows.shape)}")
        if cfg.optimizer == "lbfgs":
            return self._train_lbfgs(init_rows, method, callback, cancel, trajectory_points)
        # The new rows are the only parameters, one per word (fp32 whatever the compute precision). Adam
        # skips a parameter whose gradient is None, so a word with no batch this step does not move.
        init = init_rows.detach().float().to(lm.device)
        rows = [torch.nn.Parameter(init[i].clone()) for i in range(len(self.words))]
        optimizer, scheduler = self._optimizer(rows)
        total_steps = self.total_steps
        result = TrainResult(rows={})
        recorder = RowRecorder(rows, total_steps, trajectory_points) if trajectory_points else None
        start = time.perf_counter()
        step = 0
        for epoch in range(cfg.epochs):
            for plan in self._epoch_steps():
                # Stop between steps only, so a cancelled run never hands back half-updated rows.
                if cancel is not None and cancel.is_set():
                    raise DistillationCancelled(f"{method}: stopped after {step} of {total_steps} steps")
                # Forward and backward: one or more passes whose gradients add up to the step's.
                optimizer.zero_grad(set_to_none=True)
                word_losses, snippets, tokens = self._forward_backward(rows, plan)
                optimizer.step()
                scheduler.step()  # each row's learning rate follows its own number of steps (_optimizer)
                step += 1
                if recorder is not None:
                    recorder.record(step, rows)
                result.snippets_seen += snippets
                result.tokens_seen += tokens
                # Report: per-word losses cost a host sync, so only when someone listens.
                if callback is not None:
                    losses = {self.words[w]: v for w, v in zip(word_losses, torch.stack(
                        list(word_losses.values())).cpu().tolist())}
                    callback(StepRecord(
                        method=method, step=step, total_steps=total_steps, epoch=epoch,
                        loss=sum(losses.values()) / len(losses), word_losses=losses,
                        seconds=time.perf_counter() - start,
                    ))
        return self._finish(result, torch.stack([r.detach() for r in rows]), method, start, recorder)

    def _finish(self, result: TrainResult, final: torch.Tensor, method: str, start: float,
                recorder: RowRecorder | None) -> TrainResult:
        if not torch.isfinite(final).all():
            raise FloatingPointError(f"{method}: training diverged (non-finite rows); lower the learning rate")
        result.seconds = time.perf_counter() - start
        result.rows = {w: final[i].clone() for i, w in enumerate(self.words)}
        if recorder is not None:
            result.trajectory, result.trajectory_steps = recorder.result()
        return result

    def _train_lbfgs(self, init_rows: torch.Tensor, method: str, callback: Callable[[StepRecord], None] | None,
                     cancel: threading.Event | None, trajectory_points: int) -> TrainResult:
        """L-BFGS (RowLBFGS): a first pass measures every word's loss and gradient at its start, then each step
        is one pass over all of each word's snippets at its trial point (so `epochs` steps take epochs + 1
        passes). The rows handed back are the best each word reached (its last accepted point); a step whose
        trial a word rejects does not move that word, and the loss reported is the one reached so far.
        """
        optimizer = RowLBFGS(init_rows.detach().float().to(self.lm.device), first_step=self.config.learning_rate)
        plan = self._step_plan({w: list(order.indices) for w, order in self.orders.items()})
        total_steps = self.total_steps
        result = TrainResult(rows={})
        recorder = RowRecorder(list(optimizer.rows), total_steps, trajectory_points) if trajectory_points else None
        start = time.perf_counter()

        def evaluate() -> list[int]:
            rows = [torch.nn.Parameter(row.clone()) for row in optimizer.trial]
            word_losses, snippets, tokens = self._forward_backward(rows, plan)
            loss = optimizer.loss.clone()  # a word with no snippets keeps its start
            for w, value in word_losses.items():
                loss[w] = value
            optimizer.observe(loss, torch.stack([r.grad if r.grad is not None else torch.zeros_like(r) for r in rows]))
            result.snippets_seen += snippets
            result.tokens_seen += tokens
            return list(word_losses)

        for step in range(total_steps + 1):  # step 0: the start
            if cancel is not None and cancel.is_set():
                raise DistillationCancelled(f"{method}: stopped after {max(step - 1, 0)} of {total_steps} steps")
            trained = evaluate()
            if step == 0:
                continue
            if recorder is not None:
                recorder.record(step, list(optimizer.rows))
            if callback is not None:
                reached = optimizer.loss.cpu().tolist()
                losses = {self.words[w]: reached[w] for w in trained}
                callback(StepRecord(method=method, step=step, total_steps=total_steps, epoch=step - 1,
                                    loss=sum(losses.values()) / max(len(losses), 1), word_losses=losses,
                                    seconds=time.perf_counter() - start))
        return self._finish(result, optimizer.rows, method, start, recorder)

    def _optimizer(self, rows: list[torch.nn.Parameter]) -> tuple[torch.optim.Adam, torch.optim.lr_scheduler.LambdaLR]:
        """Adam over the rows, one parameter group per number of batches a word has in an epoch.

        The schedule is a function of a word's own update count, and words with as many batches per epoch
        share it; so a word's learning rates do not depend on the words beside it.
        """
        batch_size = self.config.batch_size
        per_epoch = {w: math.ceil(len(order.indices) / batch_size) for w, order in self.orders.items()}
        groups: dict[int, list[torch.nn.Parameter]] = defaultdict(list)
        for w, row in enumerate(rows):
            groups[per_epoch.get(w, 0)].append(row)
        optimizer = torch.optim.Adam([{"params": params} for params in groups.values()], lr=self.config.learning_rate)
        steps = max(per_epoch.values(), default=0)  # global steps per epoch: the longest word's batches
        factors = [partial(_word_lr_factor, self.config, word_steps, steps) for word_steps in groups]
        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factors)

    def _epoch_steps(self) -> list[_Step]:
        """This epoch's steps: step k holds the k-th batch of every word that has one."""
        per_word = {w: order.epoch(self.config.batch_size) for w, order in self.orders.items()}
        return [self._step_plan({w: b[k] for w, b in per_word.items() if k < len(b)})
                for k in range(max((len(b) for b in per_word.values()), default=0))]

    def _step_plan(self, batches: dict[int, list[int]]) -> _Step:
        """One step over these snippets of each word, with the counts that normalise each word's loss."""
        items = self.cache.items
        tokens = {w: sum(items[i].width for i in idx) for w, idx in batches.items()}
        # Positions 0..s-1 predict the suffix; a tied row also predicts itself after a prefix.
        labels = {w: sum(len(items[i].snippet.suffix) + (self.lm.tied and items[i].snippet.start > 0)
                         for i in idx) for w, idx in batches.items()}
        return _Step(batches, tokens, labels)

    def _passes(self, plan: _Step) -> list[list[int]]:
        """The student passes of one step, packed to the pass budget; split by length where exact."""
        if "ntp_auto" in self.config.losses:  # αNTP's scale is a per-word ratio of whole-step losses: keep it whole
            return pass_groups(self.cache.items, list(plan.batches.values()), self.pass_budget)
        units = [[i] for idx in plan.batches.values() for i in idx]
        passes = pass_groups(self.cache.items, units, self.pass_budget)
        return [g for p in passes for g in length_groups(self.cache.items, p, self.lm.device.type)]

    def _forward_backward(self, rows: list[torch.nn.Parameter], plan: _Step,
                          ) -> tuple[dict[int, torch.Tensor], int, int]:
        """Loss and gradients of one step: (per-word losses, snippets, student tokens)."""
        items = self.cache.items
        word_losses: dict[int, torch.Tensor] = {}
        snippets = 0
        for group in self._passes(plan):
            batch = student_batch(self.lm, [items[i] for i in group], need_targets=self.use_hidden,
                                  need_final_targets=bool(self.logit_losses))
            words = sorted({it.word_index for it in batch.items})
            local = {w: j for j, w in enumerate(words)}
            local_index = torch.tensor([local[it.word_index] for it in batch.items], device=self.lm.device)
            table = torch.stack([rows[w] for w in words])
            with autocast_for(self.lm.device, self.config.mixed_precision):
                per_word = self._loss(table, words, local_index, batch, plan)
            # Each word's loss is its own mean; their sum trains every row by its own loss alone.
            per_word.sum().backward()
            for w, value in zip(words, per_word.detach()):
                word_losses[w] = word_losses[w] + value if w in word_losses else value
            snippets += len(batch.items)
        tokens = sum(plan.distill_tokens.values())
        return word_losses, snippets, tokens

    # -- losses -------------------------------------------------------------------------------------
    @torch.no_grad()
    def snippet_losses(self, rows: torch.Tensor, indices: Sequence[int] | None = None,
                       loss: str = "hidden_mse") -> list[float]:
        """One distillation loss of each cached snippet for `rows` [words, hidden], averaged over its positions:
        "hidden_mse" (the default), "logit_mse" or "logit_kl" (these need a cache built with_final)."""
        if loss not in DISTILL_LOSSES:
            raise ValueError(f"snippet_losses: loss must be one of {DISTILL_LOSSES}, got {loss!r}")
        items = self.cache.items
        chosen = list(range(len(items))) if indices is None else list(indices)
        logits = loss != "hidden_mse"
        budget = student_pass_tokens(self.lm, vocab_wide=True) if logits else self.pass_budget
        losses: dict[int, float] = {}
        for group in pass_groups(items, [[i] for i in chosen], budget):
            batch = student_batch(self.lm, [items[i] for i in group], need_targets=not logits,
                                  need_final_targets=logits)
            index = torch.tensor([it.word_index for it in batch.items], device=self.lm.device)
            with autocast_for(self.lm.device, self.config.mixed_precision):
                hidden, final = self._student(rows.to(self.lm.device), index, batch, run_to_end=logits)
                sums = self._logit_sums(final, batch, [loss])[0] if logits else self._hidden_sums(hidden, batch)
            position = {id(items[i]): i for i in group}
            for it, total in zip(batch.items, sums.cpu().tolist()):
                losses[position[id(it)]] = total / it.width
        return [losses[i] for i in chosen]

    def _student(self, table: torch.Tensor, local_index: torch.Tensor, batch: StudentBatch, run_to_end: bool,
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The student pass from the new token on: (states at the target layer, final states or None)."""
        model = self.model
        new = (table[local_index] * embed_scale(model)).unsqueeze(1)
        rest = embed_ids(model, batch.suffix_ids) if batch.suffix_ids.shape[1] else new[:, :0]
        embeds = torch.cat([new.to(rest.dtype), rest], dim=1)
        return decoder_forward(model, embeds, batch.attention_mask, self.cache.layer, batch.position_ids, batch.cache,
                               run_to_end=run_to_end)

    @staticmethod
    def _hidden_sums(hidden: torch.Tensor, batch: StudentBatch) -> torch.Tensor:
        """Per row of the pass: squared error to the teacher's states, mean over hidden, summed over positions."""
        return ((hidden.float() - batch.targets.float()).pow(2).mean(-1) * batch.valid).sum(-1)

    def _logit_sums(self, final: torch.Tensor, batch: StudentBatch, names: Sequence[str]) -> list[torch.Tensor]:
        """Per loss in `names`, per row, summed over its positions: "logit_mse" (squared logit difference, mean
        over the original vocabulary) or "logit_kl" (KL(teacher || student) of the next-token distributions
        over the original vocabulary): the reference's definitions."""
        student = original_logits(self.model, final, self.vocab)
        with torch.no_grad():  # the teacher's logits, from its cached final states
            teacher = original_logits(self.model, batch.final_targets.to(final.dtype), self.vocab)
        sums = []
        for name in names:
            if name == "logit_mse":
                per_position = (student - teacher).pow(2).mean(-1)
            else:
                per_position = F.kl_div(student.log_softmax(-1), teacher.log_softmax(-1), reduction="none",
                                        log_target=True).sum(-1)
            sums.append((per_position * batch.valid).sum(-1))
        return sums

    def _loss(self, table: torch.Tensor, words: list[int], local_index: torch.Tensor, batch: StudentBatch,
              plan: _Step) -> torch.Tensor:
        """[len(words)] each word's loss over this pass, normalised by its counts over the whole step."""
        device = table.device
        hidden, final = self._student(table, local_index, batch, run_to_end=self.use_final)

        def per_word(row_sums: torch.Tensor, counts: dict[int, int]) -> torch.Tensor:
            norm = torch.tensor([max(counts[w], 1) for w in words], device=device, dtype=torch.float32)
            return torch.zeros(len(words), device=device).index_add(0, local_index, row_sums.float()) / norm

        # The distillation losses: each a mean over the word's student positions in the step, summed.
        distill = []
        if self.use_hidden:
            distill.append(per_word(self._hidden_sums(hidden, batch), plan.distill_tokens))
        if self.logit_losses:
            distill += [per_word(sums, plan.distill_tokens) for sums in self._logit_sums(final, batch, self.logit_losses)]
        distill = torch.stack(distill).sum(0) if distill else None
        if not self.use_ntp:
            return distill
        ce = per_word(self._next_token_sums(table, local_index, batch, final, words), plan.ntp_labels)
        if "ntp" in self.config.losses:
            ce = self.config.ntp_weight * ce
        else:  # αNTP: each word's CE term is rescaled to the size of its distillation loss (stop-gradient ratio)
            ce = distill.detach() / ce.detach().clamp(min=1e-8) * ce
        return ce if distill is None else distill + ce

    def _next_token_sums(self, table: torch.Tensor, local_index: torch.Tensor, batch: StudentBatch,
                         final: torch.Tensor, words: list[int]) -> torch.Tensor:
        """Per row, the summed next-token cross-entropy over its original vocabulary plus its own new token."""
        model = self.model
        if self.lm.tied:
            own = table[local_index]
        else:
            fixed = self.fixed_output_rows.to(table.device)
            own = fixed[torch.tensor([words[j] for j in local_index.tolist()], device=table.device)]
        # Student positions 0..s-1 predict the suffix tokens.
        logits = own_row_logits(model, final[:, :-1], own)
        labels = batch.suffix_ids.masked_fill(~batch.valid[:, 1:], -100)
        sums = F.cross_entropy(logits.transpose(1, 2), labels, reduction="none").sum(-1)
        if self.lm.tied:
            # The last prefix position predicts the new token itself: the output side of a tied row.
            with_prefix = [i for i, it in enumerate(batch.items) if it.snippet.start > 0]
            if with_prefix:
                h = torch.stack([batch.items[i].prefix_final[-1] for i in with_prefix]).to(final.dtype)
                own_logits = own_row_logits(model, h, own[with_prefix])
                target = torch.full((len(with_prefix),), own_logits.shape[-1] - 1, device=h.device)
                extra = F.cross_entropy(own_logits, target, reduction="none")
                sums = sums.index_add(0, torch.tensor(with_prefix, device=h.device), extra)
        return sums
