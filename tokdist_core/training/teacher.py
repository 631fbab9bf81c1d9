"""The teacher's side, computed once under no_grad: target hidden states and prefix key/values per snippet.

Alignment (docs/method.md, step 3). A teacher snippet is prefix (p tokens) + word (n subwords) + suffix (s
tokens); the student reads prefix + new token + suffix. Prefix positions are identical in both (causal
model), so the student reuses the teacher's prefix key/value cache and runs only from the new token on.
Student position j (0 = the new token) is paired with teacher position p + n - 1 + j.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import DynamicCache

from ..foundations.forward import autocast_for, decoder_forward, embed_ids, resolve_layer
from ..foundations.models import LoadedModel
from ..foundations.snippet import Snippet
from .config import DistillationCancelled

# Teacher batches hold about this many tokens: large matmuls without a big key/value cache at once.
TEACHER_BATCH_TOKENS = {"cpu": 2048, "cuda": 32768}


@dataclass
class PrefixKV:
    """The teacher's prefix keys and values for one teacher batch, all layers in one tensor each.

    Shape [layers, batch, kv_heads, P, head_dim] with P the batch's longest prefix; row i holds its own
    prefix right-aligned in [P - p_i:], so key index distances equal token distances (sliding windows).
    """

    keys: torch.Tensor
    values: torch.Tensor
    block: int = 0  # its teacher batch's place in the cache: the order student batches gather rows in


@dataclass
class CachedSnippet:
    """One training snippet with what the teacher computed for it."""

    snippet: Snippet
    word_index: int
    kv: PrefixKV
    row: int  # this snippet's row in kv
    targets: torch.Tensor | None  # [1 + s, H] teacher states at the target layer, aligned to the student
    prefix_final: torch.Tensor | None  # [p, H] teacher final hidden states over the prefix (for next-token losses)
    # [1 + s, H] teacher final hidden states aligned like `targets` (the logit losses apply the LM head to them:
    # V-wide logits would be far bigger); the same tensor as `targets` when the target layer is the last.
    final_targets: torch.Tensor | None = None

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

    Built for one target layer; `with_final` also runs the teacher to the top and keeps its final hidden
    states, for the losses that read the LM head (next-token and logit losses).
    """

    def __init__(self, lm: LoadedModel, snippets: Sequence[Snippet], words: Sequence[str], target_layer: int,
                 with_final: bool, batch_size: int | None = None, mixed_precision: str = "auto",
                 cancel: threading.Event | None = None) -> None:
        self.lm = lm
        self.words = list(words)
        self.layer = resolve_layer(lm.model, target_layer)
        self.with_final = with_final
        self.mixed_precision = mixed_precision
        self.model = lm.compute_model(mixed_precision)  # the base model, or its bf16 twin on a CPU
        word_index = {w: i for i, w in enumerate(self.words)}
        unknown = {s.word for s in snippets} - set(word_index)
        if unknown:
            raise ValueError(f"snippets for words not being trained: {sorted(unknown)}")
        self.items: list[CachedSnippet] = []
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
            self.items.extend(self._run(ordered[b : b + batch_size], word_index, block=b // batch_size))
        self.seconds = time.perf_counter() - start

    @torch.no_grad()
    def _run(self, batch: list[Snippet], word_index: dict[str, int], block: int) -> list[CachedSnippet]:
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
        model = self.model
        with autocast_for(device, self.mixed_precision):
            hidden, final = decoder_forward(
                model, embed_ids(model, ids), mask, self.layer, cache=cache, run_to_end=self.with_final
            )
        layers = [layer for layer in cache.layers if getattr(layer, "keys", None) is not None]
        longest = max(s.start for s in batch)
        # Right-align each row's prefix: slot q of row i reads token q - (longest - p_i) (clamped; masked later).
        starts = torch.tensor([longest - s.start for s in batch], device=device)
        index = (torch.arange(longest, device=device)[None, :] - starts[:, None]).clamp(min=0)

        def right_aligned(name: str) -> torch.Tensor:
            stacked = torch.stack([getattr(layer, name)[:, :, :longest] for layer in layers])
            return stacked.gather(3, index[None, :, None, :, None].expand_as(stacked))

        kv = PrefixKV(keys=right_aligned("keys"), values=right_aligned("values"), block=block)
        out = []
        for i, s in enumerate(batch):
            p, n, length = s.start, s.n_subwords, len(s.token_ids)
            targets = hidden[i, p + n - 1 : length].float().clone()
            final_targets = None
            if final is not None:
                final_targets = targets if final is hidden else final[i, p + n - 1 : length].float().clone()
            out.append(
                CachedSnippet(
                    snippet=s,
                    word_index=word_index[s.word],
                    kv=kv,
                    row=i,
                    targets=targets,
                    prefix_final=final[i, :p].float().clone() if final is not None else None,
                    final_targets=final_targets,
                )
            )
        return out

    def __len__(self) -> int:
        return len(self.items)
