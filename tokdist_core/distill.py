"""Token Distillation training: teacher cache, aligned positions, losses and the optimisation loop.

Alignment (DESIGN.md §1.3). A teacher snippet is prefix (p tokens) + word (n subwords) + suffix (s
tokens); the student reads prefix + new token + suffix. Prefix positions are identical in both (causal
model), so the student reuses the teacher's prefix key/value cache and runs only from the new token on.
Student position j (0 = the new token) is paired with teacher position p + n - 1 + j.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from transformers import DynamicCache

from .cancel import Cancelled, check_cancel
from .forward import (
    PRECISIONS,
    autocast_for,
    cpu_has_fast_bf16,
    decoder_forward,
    embed_ids,
    embed_scale,
    output_logits,
    resolve_layer,
    softcap,
)
from .models import LoadedModel
from .snippet import Snippet

LOSSES = ("distill", "ntp")
# Splitting a student batch into two passes costs a pass's fixed overhead (30 layers of dispatch, about the
# compute of this many padded tokens on 2 CPU cores); on CUDA that overhead dominates, so never split there.
SPLIT_MIN_SAVED_TOKENS = {"cpu": 48}
# Teacher batches hold about this many tokens: large matmuls without a big key/value cache at once.
TEACHER_BATCH_TOKENS = {"cpu": 2048, "cuda": 32768}


class DistillationCancelled(Cancelled):
    """The cancel flag was set; the run stopped between steps and returned nothing half-trained."""


@dataclass
class DistillationConfig:
    """Hyperparameters of one training run.

    Defaults are for the interactive case (a few words, ~25 snippets each): the paper's lr 1e-4 for one
    epoch relies on thousands of steps; here lr 1e-2 over 8 epochs of cached snippets converges (README).
    """

    epochs: int = 8
    batch_size: int = 16
    learning_rate: float = 1e-2
    target_layer: int = -1  # HF hidden-state index; -1 = last hidden state after the final norm
    losses: tuple[str, ...] = ("distill",)  # "distill", "ntp" or both (αNTP: CE scaled to the distill loss)
    seed: int = 0
    mixed_precision: str = "auto"  # "auto" (bf16 on CUDA, fp32 on CPU), "bf16" (also on CPU) or "no" (fp32)

    def validate(self, lm: LoadedModel | None = None) -> None:
        def positive_int(name: str, value, upper: int) -> None:
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= upper:
                raise ValueError(f"{name} must be an integer between 1 and {upper}, got {value!r}")

        positive_int("epochs", self.epochs, 1000)
        positive_int("batch_size", self.batch_size, 1024)
        lr = self.learning_rate
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or not 0 < lr <= 10:
            raise ValueError(f"learning_rate must be a finite number in (0, 10], got {lr!r}")
        if not self.losses or any(loss not in LOSSES for loss in self.losses):
            raise ValueError(f"losses must be a non-empty subset of {LOSSES}, got {self.losses!r}")
        if self.mixed_precision not in PRECISIONS:
            raise ValueError(f"mixed_precision must be 'auto', 'bf16' or 'no', got {self.mixed_precision!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        if lm is not None:
            resolve_layer(lm.model, self.target_layer)
            if self.mixed_precision == "bf16" and lm.device.type == "cpu" and not cpu_has_fast_bf16():
                raise ValueError("mixed_precision='bf16' on this CPU would be emulated and slower than fp32 "
                                 "(it needs AVX-512 or AMX); use 'auto' or 'no'")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class StepRecord:
    method: str
    step: int
    total_steps: int
    epoch: int
    loss: float
    word_losses: dict[str, float]
    seconds: float


@dataclass
class TrainResult:
    rows: dict[str, torch.Tensor]  # word -> new input row (unscaled, like the embedding matrix)
    history: list[StepRecord] = field(default_factory=list)
    seconds: float = 0.0
    snippets_seen: int = 0
    tokens_seen: int = 0


@dataclass
class _PrefixKV:
    """The teacher's prefix keys and values for one teacher batch, all layers in one tensor each.

    Shape [layers, batch, kv_heads, P, head_dim] with P the batch's longest prefix; row i holds its own
    prefix right-aligned in [P - p_i:], so key index distances equal token distances (sliding windows).
    """

    keys: torch.Tensor
    values: torch.Tensor


@dataclass
class _Cached:
    snippet: Snippet
    word_index: int
    kv: _PrefixKV
    row: int  # this snippet's row in kv
    targets: torch.Tensor | None  # [1 + s, H] teacher states at the target layer, aligned to the student
    prefix_final: torch.Tensor | None  # [p, H] teacher final hidden states over the prefix (for next-token losses)

    @property
    def width(self) -> int:
        """Student positions: the new token and the suffix."""
        return len(self.snippet.suffix) + 1

    def prefix_kv(self) -> tuple[torch.Tensor, torch.Tensor]:
        """[layers, kv_heads, p, head_dim] keys and values of this snippet's prefix (views)."""
        start = self.kv.keys.shape[-2] - self.snippet.start
        return self.kv.keys[:, self.row, :, start:], self.kv.values[:, self.row, :, start:]


class TeacherCache:
    """Teacher hidden states and prefix key/values, computed once under no_grad and reused.

    Built for one target layer; `with_final` also runs the teacher to the top for next-token losses.
    """

    def __init__(self, lm: LoadedModel, snippets: Sequence[Snippet], words: Sequence[str], target_layer: int,
                 with_final: bool, batch_size: int | None = None, mixed_precision: str = "auto",
                 cancel: threading.Event | None = None) -> None:
        self.lm = lm
        self.words = list(words)
        self.layer = resolve_layer(lm.model, target_layer)
        self.with_final = with_final
        self.mixed_precision = mixed_precision
        word_index = {w: i for i, w in enumerate(self.words)}
        unknown = {s.word for s in snippets} - set(word_index)
        if unknown:
            raise ValueError(f"snippets for words not being trained: {sorted(unknown)}")
        self.items: list[_Cached] = []
        self.seconds = 0.0
        start = time.perf_counter()
        # Similar lengths pad less; equal lengths sorted by prefix keep the stored prefix block tight.
        ordered = sorted(snippets, key=lambda s: (len(s.token_ids), s.start))
        if batch_size is None:
            budget = TEACHER_BATCH_TOKENS.get(lm.device.type, TEACHER_BATCH_TOKENS["cpu"])
            batch_size = max(1, budget // max((len(s.token_ids) for s in ordered), default=1))
        for b in range(0, len(ordered), batch_size):
            if cancel is not None and cancel.is_set():
                raise DistillationCancelled(f"stopped while preparing the teacher ({b} of {len(ordered)} snippets)")
            self.items.extend(self._run(ordered[b : b + batch_size], word_index))
        self.seconds = time.perf_counter() - start

    @torch.no_grad()
    def _run(self, batch: list[Snippet], word_index: dict[str, int]) -> list[_Cached]:
        lm, device = self.lm, self.lm.device
        pad = lm.tokenizer.pad_token_id or 0
        width = max(len(s.token_ids) for s in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, s in enumerate(batch):
            ids[i, : len(s.token_ids)] = torch.tensor(s.token_ids)
            mask[i, : len(s.token_ids)] = 1
        ids, mask = ids.to(device), mask.to(device)
        cache = DynamicCache()  # full layers: sliding-window layers would drop prefix keys we slice
        with autocast_for(device, self.mixed_precision):
            hidden, final = decoder_forward(
                lm.model, embed_ids(lm.model, ids), mask, self.layer, cache=cache, run_to_end=self.with_final
            )
        layers = [layer for layer in cache.layers if getattr(layer, "keys", None) is not None]
        longest = max(s.start for s in batch)
        # Right-align each row's prefix: slot q of row i reads token q - (longest - p_i) (clamped; masked later).
        starts = torch.tensor([longest - s.start for s in batch], device=device)
        index = (torch.arange(longest, device=device)[None, :] - starts[:, None]).clamp(min=0)

        def right_aligned(name: str) -> torch.Tensor:
            stacked = torch.stack([getattr(layer, name)[:, :, :longest] for layer in layers])
            return stacked.gather(3, index[None, :, None, :, None].expand_as(stacked))

        kv = _PrefixKV(keys=right_aligned("keys"), values=right_aligned("values"))
        out = []
        for i, s in enumerate(batch):
            p, n, length = s.start, s.n_subwords, len(s.token_ids)
            out.append(
                _Cached(
                    snippet=s,
                    word_index=word_index[s.word],
                    kv=kv,
                    row=i,
                    targets=hidden[i, p + n - 1 : length].float().clone(),
                    prefix_final=final[i, :p].float().clone() if final is not None else None,
                )
            )
        return out

    def __len__(self) -> int:
        return len(self.items)


@dataclass
class _StudentBatch:
    items: list[_Cached]
    cache: DynamicCache | None
    attention_mask: torch.Tensor  # [B, P + S]
    position_ids: torch.Tensor  # [B, S]
    suffix_ids: torch.Tensor  # [B, S - 1] padded
    valid: torch.Tensor  # [B, S] bool: real student positions from the new token on
    word_index: torch.Tensor  # [B]
    targets: torch.Tensor | None  # [B, S, H]
    tokens: int  # real student positions, counted on the host (no device sync)


def _student_batch(lm: LoadedModel, items: list[_Cached], need_targets: bool) -> _StudentBatch:
    """Assemble one student batch: prefix key/values gathered from the teacher blocks, masks, targets.

    Key layout per row: [padding (P - p_i) | prefix (p_i) | new token + suffix (1 + s_i) | padding]: index
    distances equal token distances (sliding windows), positions continue from p_i (RoPE).
    """
    device = lm.device
    # Rows from the same teacher block are gathered with one index per block.
    items = sorted(items, key=lambda it: (id(it.kv), it.row))
    bsz = len(items)
    prefix = max(it.snippet.start for it in items)
    width = max(it.width for it in items)
    pad = lm.tokenizer.pad_token_id or 0
    suffix_ids = torch.full((bsz, width - 1), pad, dtype=torch.long)
    mask = torch.zeros((bsz, prefix + width), dtype=torch.long)
    positions = torch.zeros((bsz, width), dtype=torch.long)
    valid = torch.zeros((bsz, width), dtype=torch.bool)
    for i, it in enumerate(items):
        p, s = it.snippet.start, len(it.snippet.suffix)
        if s:
            suffix_ids[i, :s] = torch.tensor(it.snippet.suffix)
        mask[i, prefix - p : prefix + 1 + s] = 1
        positions[i] = torch.arange(p, p + width)
        valid[i, : s + 1] = True
    cache = None
    if prefix:
        blocks: dict[int, tuple[_PrefixKV, list[int]]] = {}
        for it in items:
            blocks.setdefault(id(it.kv), (it.kv, []))[1].append(it.row)
        keys, values = [], []
        for kv, rows in blocks.values():
            index = torch.tensor(rows, device=device)
            stored = kv.keys.shape[-2]  # >= every p_i of its rows; right-aligned, so keep the last `prefix` slots
            for source, out in ((kv.keys, keys), (kv.values, values)):
                part = source.index_select(1, index)
                part = part[..., stored - prefix :, :] if stored >= prefix else F.pad(part, (0, 0, prefix - stored, 0))
                out.append(part)
        keys = torch.cat(keys, dim=1) if len(keys) > 1 else keys[0]
        values = torch.cat(values, dim=1) if len(values) > 1 else values[0]
        cache = DynamicCache()  # full layers: sliding-window layers would drop prefix keys we slice
        for layer in range(keys.shape[0]):
            cache.update(keys[layer], values[layer], layer)
    targets = None
    if need_targets:
        targets = torch.nn.utils.rnn.pad_sequence([it.targets for it in items], batch_first=True)
    return _StudentBatch(
        items=items,
        cache=cache,
        attention_mask=mask.to(device),
        position_ids=positions.to(device),
        suffix_ids=suffix_ids.to(device),
        valid=valid.to(device),
        word_index=torch.tensor([it.word_index for it in items], device=device),
        targets=targets,
        tokens=sum(it.width for it in items),
    )


def masked_mse(student: torch.Tensor, teacher: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-weighted MSE over valid positions, and the per-row sums of squared error / counts."""
    per_position = (student.float() - teacher.float()).pow(2).mean(-1) * valid
    count = valid.sum(-1).clamp(min=1)
    per_row = per_position.sum(-1) / count
    return per_position.sum() / valid.sum().clamp(min=1), per_row


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

    def _loss(self, rows: torch.Tensor, batch: _StudentBatch) -> tuple[torch.Tensor, torch.Tensor]:
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

    def _next_token_loss(self, rows: torch.Tensor, batch: _StudentBatch, final: torch.Tensor) -> torch.Tensor:
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

    def _length_groups(self, indices: list[int]) -> list[list[int]]:
        """Split one optimizer batch into passes of similar student length when that saves enough padding.

        Only for the distillation loss alone, whose token-weighted mean splits exactly (αNTP's scale is
        a per-batch ratio).
        """
        threshold = SPLIT_MIN_SAVED_TOKENS.get(self.lm.device.type)
        if threshold is None or self.use_ntp or len(indices) < 2:
            return [indices]
        ordered = sorted(indices, key=lambda i: self.cache.items[i].width)
        widths = [self.cache.items[i].width for i in ordered]
        padded = len(widths) * widths[-1]
        cost, k = min((k * widths[k - 1] + (len(widths) - k) * widths[-1], k) for k in range(1, len(widths)))
        if padded - cost < threshold:
            return [indices]
        return self._length_groups(ordered[:k]) + [ordered[k:]]

    def _batches(self, order: list[int], rng: random.Random) -> list[list[int]]:
        """Shuffled batches of snippets with similar student lengths.

        A word near a document edge gives one long student sequence; batched with centred ones it would
        pad the whole batch to its length. Sorting within shuffled pools of 50 batches (the megabatches
        of HF's LengthGroupedSampler) keeps padding low while batch contents and order stay random.
        """
        items, size = self.cache.items, self.config.batch_size
        shuffled = list(order)
        rng.shuffle(shuffled)
        pool = size * 50
        batches = []
        for p in range(0, len(shuffled), pool):
            chunk = sorted(shuffled[p : p + pool], key=lambda i: (items[i].width, items[i].snippet.start))
            batches.extend(chunk[b : b + size] for b in range(0, len(chunk), size))
        rng.shuffle(batches)
        return batches

    def train(self, init_rows: torch.Tensor, method: str = "tokdist",
              callback: Callable[[StepRecord], None] | None = None,
              cancel: threading.Event | None = None) -> TrainResult:
        cfg, lm = self.config, self.lm
        if init_rows.shape != (len(self.words), lm.hidden_size):
            raise ValueError(f"init rows must be [{len(self.words)}, {lm.hidden_size}], got {tuple(init_rows.shape)}")
        rows = torch.nn.Parameter(init_rows.detach().clone().float().to(lm.device))
        optimizer = torch.optim.Adam([rows], lr=cfg.learning_rate)
        rng = random.Random(cfg.seed)
        order = list(range(len(self.cache.items)))
        steps_per_epoch = len(self._batches(order, rng=random.Random(0)))
        total_steps = steps_per_epoch * cfg.epochs
        result = TrainResult(rows={})
        start = time.perf_counter()
        step = 0
        for epoch in range(cfg.epochs):
            for batch_indices in self._batches(order, rng):
                if cancel is not None and cancel.is_set():
                    raise DistillationCancelled(f"{method}: stopped after {step} of {total_steps} steps")
                optimizer.zero_grad(set_to_none=True)
                groups = self._length_groups(batch_indices)
                total = sum(self.cache.items[i].width for i in batch_indices)
                items, row_losses, loss = [], [], 0.0
                for group in groups:
                    batch = _student_batch(lm, [self.cache.items[i] for i in group], need_targets=self.use_distill)
                    with autocast_for(lm.device, cfg.mixed_precision):
                        part, per_row = self._loss(rows, batch)
                    # Token-weighted means combine exactly: the batch loss is sum(tokens_g * loss_g) / tokens.
                    if len(groups) > 1:
                        part = part * (batch.tokens / total)
                    part.backward()
                    loss = loss + part.detach()
                    items.extend(batch.items)
                    row_losses.append(per_row.detach())
                optimizer.step()
                step += 1
                result.snippets_seen += len(items)
                result.tokens_seen += total
                if callback is not None:
                    per_word: dict[str, list[float]] = defaultdict(list)
                    for it, value in zip(items, torch.cat(row_losses).cpu().tolist()):
                        per_word[it.snippet.word].append(value)
                    callback(StepRecord(
                        method=method, step=step, total_steps=total_steps, epoch=epoch, loss=float(loss.detach()),
                        word_losses={w: sum(v) / len(v) for w, v in per_word.items()},
                        seconds=time.perf_counter() - start,
                    ))
        if not torch.isfinite(rows).all():
            raise FloatingPointError(f"{method}: training diverged (non-finite rows); lower the learning rate")
        result.seconds = time.perf_counter() - start
        result.rows = {w: rows.detach()[i].clone() for i, w in enumerate(self.words)}
        return result


def fit_output_rows(lm: LoadedModel, cache: TeacherCache, init_rows: torch.Tensor, steps: int = 200,
                    learning_rate: float = 1e-2, cancel: threading.Event | None = None) -> torch.Tensor:
    """Next-token fit of new LM-head rows for untied models, from the teacher's prefix states.

    Every prefix position keeps its original target; the last one predicts the new token. The
    original logits are fixed, so their log-sum-exp is computed once and only the new rows train.
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
        targets.append(torch.tensor(nxt + [it.word_index]))
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
    param = torch.nn.Parameter(rows)
    optimizer = torch.optim.Adam([param], lr=learning_rate)
    for step in range(steps):
        check_cancel(cancel, f"stopped while fitting the output rows (step {step} of {steps})")
        extra = softcap(model, h @ param.T)  # only the new rows' logits; the original ones are fixed
        lse = torch.logaddexp(base_lse, torch.logsumexp(extra, -1))
        new_target = extra.gather(1, target.clamp(max=param.shape[0] - 1).unsqueeze(1)).squeeze(1)
        loss = (lse - torch.where(new_mask, new_target, base_target)).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return param.detach()
