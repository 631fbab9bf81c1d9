"""Student batches and the batch plan: which snippets train together and how one batch is assembled."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import DynamicCache

from ..foundations.models import LoadedModel
from .teacher import CachedSnippet, PrefixKV

# Splitting a student batch into two passes costs a pass's fixed overhead (30 layers of dispatch, about the
# compute of this many padded tokens on 2 CPU cores); on CUDA that overhead dominates, so never split there.
SPLIT_MIN_SAVED_TOKENS = {"cpu": 48}
# Padded student tokens per pass for a model of the embedded size (576 wide, 30 layers); scaled down for
# wider and deeper models so a pass's activations stay about the same size. One step may be several passes.
STUDENT_PASS_TOKENS = {"cpu": 2048, "cuda": 32768}
_REFERENCE_WIDTH = 576 * 30
# The logit losses hold several [tokens, vocabulary] tensors per pass (student and teacher logits, their
# log-softmaxes, the gradient): a pass holds at most this many logits, so Gemma's 262k vocabulary gets
# shorter passes (SmolLM2's 49k is unaffected on CPU).
LOGIT_PASS_ELEMENTS = {"cpu": 1 << 27, "cuda": 1 << 30}


def student_pass_tokens(lm: LoadedModel, vocab_wide: bool = False) -> int:
    """Padded student tokens one pass may hold on this device and model (`vocab_wide`: for the logit losses)."""
    base = STUDENT_PASS_TOKENS.get(lm.device.type, STUDENT_PASS_TOKENS["cpu"])
    tokens = max(64, int(base * min(1.0, _REFERENCE_WIDTH / (lm.hidden_size * lm.num_layers))))
    if vocab_wide:
        logits = LOGIT_PASS_ELEMENTS.get(lm.device.type, LOGIT_PASS_ELEMENTS["cpu"])
        tokens = min(tokens, max(64, logits // lm.embedding_rows))
    return tokens


class WordOrder:
    """One word's snippets (indices into the teacher cache) in an order seeded by the word alone.

    The epoch's batches are consecutive slices of a fresh shuffle, so which snippets a word trains on at
    step k depends on its own snippets, the seed and the word, never on the other words in the run.
    """

    def __init__(self, word: str, indices: list[int], seed: int) -> None:
        self.indices = list(indices)
        self.rng = random.Random(f"{seed}:batches:{word}")  # str seeds hash with SHA-512: stable everywhere

    def epoch(self, batch_size: int) -> list[list[int]]:
        order = list(self.indices)
        self.rng.shuffle(order)
        return [order[b : b + batch_size] for b in range(0, len(order), batch_size)]


def pass_groups(items: Sequence[CachedSnippet], units: list[list[int]], budget: int) -> list[list[int]]:
    """Pack units of snippets (indices into `items`) into student passes of at most `budget` padded tokens.

    A unit never splits (a word's batch when its loss needs all of its snippets in one pass). Units are
    sorted by length first, so a pass pads little; a unit larger than the budget is a pass of its own.
    """
    def width(unit: list[int]) -> int:
        return max(items[i].width for i in unit)

    passes: list[list[int]] = []
    current: list[int] = []
    for unit in sorted(units, key=width):
        if current and (len(current) + len(unit)) * max(width(current), width(unit)) > budget:
            passes.append(current)
            current = []
        current = current + unit
    if current:
        passes.append(current)
    return passes


def length_groups(items: Sequence[CachedSnippet], indices: list[int], device_type: str) -> list[list[int]]:
    """Split one optimizer batch into passes of similar student length when that saves enough padding.

    Only exact for a loss whose token-weighted mean splits (the distillation loss alone: αNTP's scale is
    a per-batch ratio), so the trainer asks only then.
    """
    threshold = SPLIT_MIN_SAVED_TOKENS.get(device_type)
    if threshold is None or len(indices) < 2:
        return [indices]
    ordered = sorted(indices, key=lambda i: items[i].width)
    widths = [items[i].width for i in ordered]
    padded = len(widths) * widths[-1]
    cost, k = min((k * widths[k - 1] + (len(widths) - k) * widths[-1], k) for k in range(1, len(widths)))
    if padded - cost < threshold:
        return [indices]
    return length_groups(items, ordered[:k], device_type) + [ordered[k:]]


@dataclass
class StudentBatch:
    """One student pass: the new token and the suffixes, reading the teacher's prefix key/values."""

    items: list[CachedSnippet]
    cache: DynamicCache | None
    attention_mask: torch.Tensor  # [B, P + S]
    position_ids: torch.Tensor  # [B, S]
    suffix_ids: torch.Tensor  # [B, S - 1] padded
    valid: torch.Tensor  # [B, S] bool: real student positions from the new token on
    word_index: torch.Tensor  # [B]
    targets: torch.Tensor | None  # [B, S, H]
    tokens: int  # real student positions, counted on the host (no device sync)
    final_targets: torch.Tensor | None = None  # [B, S, H] teacher final states, for the logit losses


def student_batch(lm: LoadedModel, items: list[CachedSnippet], need_targets: bool,
                  need_final_targets: bool = False) -> StudentBatch:
    """Assemble one student batch: prefix key/values gathered from the teacher blocks, masks, targets.

    Key layout per row: [padding (P - p_i) | prefix (p_i) | new token + suffix (1 + s_i) | padding]: index
    distances equal token distances (sliding windows), positions continue from p_i (RoPE).
    """
    device = lm.device
    # Rows from the same teacher block are gathered with one index per block. The order is the blocks' own
    # (never memory addresses): the same snippets give the same batch, so the same rows, in every run.
    items = sorted(items, key=lambda it: (it.kv.block, it.row))
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
    cache = _prefix_cache(items, prefix, device) if prefix else None
    targets = final_targets = None
    if need_targets:
        targets = torch.nn.utils.rnn.pad_sequence([it.targets for it in items], batch_first=True)
    if need_final_targets:
        if any(it.final_targets is None for it in items):
            raise ValueError("the logit losses need a teacher cache built with_final=True")
        final_targets = torch.nn.utils.rnn.pad_sequence([it.final_targets for it in items], batch_first=True)
    return StudentBatch(
        items=items,
        cache=cache,
        attention_mask=mask.to(device),
        position_ids=positions.to(device),
        suffix_ids=suffix_ids.to(device),
        valid=valid.to(device),
        word_index=torch.tensor([it.word_index for it in items], device=device),
        targets=targets,
        tokens=sum(it.width for it in items),
        final_targets=final_targets,
    )


def _prefix_cache(items: list[CachedSnippet], prefix: int, device: torch.device) -> DynamicCache:
    """The rows' prefix key/values, right-aligned in `prefix` slots, as the student's key/value cache."""
    blocks: dict[int, tuple[PrefixKV, list[int]]] = {}
    for it in items:
        blocks.setdefault(it.kv.block, (it.kv, []))[1].append(it.row)
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
    return cache
