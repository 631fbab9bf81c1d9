"""Attention to the word: per layer, how much the positions after the word attend to it.

For every position after the word, each head's attention row is a probability distribution over the
positions it may see. We split it into three parts that sum to one:

- ``word``: the new token's position (student), or the word's subword positions added up (teacher,
  "original pieces");
- ``prefix``: the positions before the word (the first token, an attention sink, usually takes most);
- ``later``: the positions after the word up to and including the query itself.

The parts are averaged over heads and over the positions after the word (one number per layer and
part for a snippet), then over snippets (each snippet counts once).

How the probabilities are obtained: the shared model runs with SDPA, which never materialises them.
Instead of switching the shared model to eager attention per request (a race between sessions), or
re-deriving them from q/k hooks (RoPE, q/k norms, GQA, scaling, softcapping and sliding windows would
all have to be re-implemented per architecture), we build once per model an *eager twin*: a deep copy
of the decoder's module tree whose parameters and buffers are the very same tensors (no weight memory)
and whose own config says "eager". transformers' own eager attention then returns the probabilities
(`output_attentions=True`), with its own masks (padding, causal, Gemma's sliding-window layers) and
grouped key/value heads repeated per query head. The shared model and its config are never touched.
"""

from __future__ import annotations

import copy
import itertools
import threading
import weakref
from collections.abc import Sequence

import torch
from torch import nn
from transformers import PreTrainedModel

from ..foundations.cancel import check_cancel
from ..foundations.models import LoadedModel
from ..foundations.rows import NewTokenRows
from ..foundations.snippet import Snippet
from .metrics import pad_rows, student_embeds

ATTENTION_PARTS = ("word", "prefix", "later")
ORIGINAL_PIECES = "original pieces"  # the key of the teacher's shares in attention_to_word's report

_twins: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_twins_lock = threading.Lock()


def eager_twin(model: PreTrainedModel) -> nn.Module:
    """The model's decoder with eager attention, sharing every parameter and buffer tensor (cached per model)."""
    with _twins_lock:
        twin = _twins.get(model)
        if twin is None:
            decoder = model.get_decoder()
            # deepcopy returns memo entries as they are: the module objects and config are new, the tensors shared.
            shared = {id(t): t for t in itertools.chain(decoder.parameters(), decoder.buffers())}
            twin = copy.deepcopy(decoder, memo=shared)
            twin.set_attn_implementation("eager")  # the twin's own (copied) config; the shared one keeps its SDPA
            _twins[model] = twin
        return twin


def _word_span(snippet: Snippet, student: bool) -> tuple[int, int]:
    """(first, last) position of the word in the teacher (its subwords) or the student (the new token)."""
    last = snippet.start if student else snippet.start + snippet.n_subwords - 1
    return snippet.start, last


def _parts_of(attn: torch.Tensor, first: int, last: int, n_after: int) -> torch.Tensor:
    """One sequence's attention [L, H, T, T] -> [L, H, Q, 3] (word, prefix, later) for its Q = n_after queries."""
    queries = torch.arange(last + 1, last + 1 + n_after, device=attn.device)
    rows = attn[:, :, queries, :].float()  # [L, H, Q, T]
    keys = torch.arange(rows.shape[-1], device=attn.device)
    # Each part sums only the keys a causal query may see, so probability mass leaking to padding or to
    # the future would show up as parts that no longer add up to one.
    later = ((keys > last) & (keys.unsqueeze(0) <= queries.unsqueeze(1))).to(rows.dtype)  # [Q, T]
    return torch.stack([rows[..., first : last + 1].sum(-1), rows[..., :first].sum(-1),
                        (rows * later).sum(-1)], dim=-1)


@torch.no_grad()
def attention_parts(lm: LoadedModel, snippets: Sequence[Snippet], rows: NewTokenRows | None = None,
                    batch_size: int = 8, cancel: threading.Event | None = None) -> list[torch.Tensor]:
    """Per snippet, the attention parts [layers, heads, positions after the word, 3 (word, prefix, later)].

    ``rows=None``: the teacher (original pieces); otherwise the student reading the snippet's word as its
    new row from ``rows``. Probabilities, not yet averaged: the three parts sum to one per position and head.
    """
    twin = eager_twin(lm.model)
    pad = lm.tokenizer.pad_token_id or 0
    out: list[torch.Tensor] = []
    for b in range(0, len(snippets), batch_size):
        check_cancel(cancel, f"stopped while reading attention ({b} of {len(snippets)} snippets)")
        batch = list(snippets[b : b + batch_size])
        if rows is None:
            ids, mask = pad_rows([list(s.token_ids) for s in batch], pad)
            inputs = {"input_ids": ids.to(lm.device)}
            mask = mask.to(lm.device)
        else:
            embeds, mask = student_embeds(lm, batch, rows)
            inputs = {"inputs_embeds": embeds}
        # Right padding: padded keys come after every real query, so the causal mask already hides them.
        attentions = twin(**inputs, attention_mask=mask, output_attentions=True, use_cache=False).attentions
        stacked = torch.stack(attentions, dim=1)  # [B, L, H, T, T]
        for i, s in enumerate(batch):
            first, last = _word_span(s, student=rows is not None)
            out.append(_parts_of(stacked[i], first, last, len(s.suffix)).cpu())
    return out


def _check(methods: Sequence[NewTokenRows], snippets: Sequence[Snippet]) -> list[Snippet]:
    if not snippets:
        raise ValueError("attention needs at least one snippet")
    usable = [s for s in snippets if s.suffix]
    if not usable:
        raise ValueError("no snippet has text after the word: the attention to the word is read at the positions "
                         "after it, so pick snippets where the word is not the last token")
    for rows in methods:
        missing = sorted({s.word for s in usable} - set(rows.words))
        if missing:
            raise ValueError(f"{rows.method} has no row for {', '.join(map(repr, missing))}; "
                             f"it has rows for {', '.join(map(repr, rows.words))}")
    return usable


def _mean_parts(parts: list[torch.Tensor]) -> dict[str, list[float]]:
    # Heads and positions within a snippet, then snippets: [S, L, 3] -> [L, 3].
    per_snippet = torch.stack([p.mean(dim=(1, 2)) for p in parts])
    mean = per_snippet.mean(0)
    return {part: mean[:, k].tolist() for k, part in enumerate(ATTENTION_PARTS)}


def attention_to_word(lm: LoadedModel, methods: Sequence[NewTokenRows], snippets: Sequence[Snippet],
                      batch_size: int = 8, cancel: threading.Event | None = None) -> dict:
    """Per layer: the share of attention that the positions after the word give to it, to the prefix and to
    the later positions; for the original pieces and for each method's rows, averaged over heads, over the
    positions after the word and over ``snippets`` (snippets with nothing after the word are left out).

    -> {"parts", "layers" (1..L), "heads", "snippets", "positions", "shares": {"original pieces" | method:
    {part: [one share per layer]}}}.
    """
    methods = list(methods)
    usable = _check(methods, snippets)
    shares = {ORIGINAL_PIECES: _mean_parts(attention_parts(lm, usable, None, batch_size, cancel))}
    for rows in methods:
        shares[rows.method] = _mean_parts(attention_parts(lm, usable, rows, batch_size, cancel))
    config = lm.model.config.get_text_config()
    return {
        "parts": list(ATTENTION_PARTS),
        "layers": list(range(1, lm.num_layers + 1)),
        "heads": int(config.num_attention_heads),
        "snippets": len(usable),
        "positions": sum(len(s.suffix) for s in usable),
        "shares": shares,
    }
