"""The prior correction: a tied model's new rows keep their start's prior on ordinary text (h̄ · row).

A tied row is read and predicted: on ordinary text its logit is mostly h̄ · row, with h̄ the mean of the final
hidden states (the LM head's input). Measured (docs/method.md): with adapt's defaults, Token Distillation's
rows for 200 words took 1.6-1.9 % of the next-token probability on text where no new word belongs (the
subword mean's: 0.01 %), and the adapted model read held-out text worse than with the subword mean. Taking
each row's rise along h̄'s direction away keeps h̄ · row at most its start's value: the share fell to
0.2 % while the rows moved by about 4 % of how far training had moved them. One way only: a row whose prior
training lowered keeps that (taking that back too cost, docs/method.md).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

import torch

from ..foundations.forward import autocast_for
from ..foundations.models import LoadedModel
from ..foundations.rows import NewTokenRows

PRIOR_TEXTS = 80  # ordinary texts whose final hidden states give the mean state
PRIOR_TOKENS = 256  # tokens read of each (80 x 256: a mean over about 15,000 positions)


def prior_sequences(tokenizer, texts: Iterable[str], max_texts: int = PRIOR_TEXTS,
                    max_tokens: int = PRIOR_TOKENS) -> list[list[int]]:
    """Token ids of the first `max_tokens` of up to `max_texts` non-empty texts: ordinary text, where no
    new word need occur (snippets centred on the new words would give the mean state near them instead)."""
    chosen = [t for t in itertools.islice((t for t in texts if t.strip()), max_texts)]
    encoded = tokenizer(chosen, add_special_tokens=False, truncation=True, max_length=max_tokens,
                        return_attention_mask=False)["input_ids"] if chosen else []
    return [ids for ids in encoded if ids]


@torch.no_grad()
def mean_final_state(lm: LoadedModel, sequences: Sequence[Sequence[int]], batch_size: int = 8) -> torch.Tensor:
    """[hidden] fp32 on the CPU: the mean final hidden state (after the final norm: the LM head's input) over
    every token of `sequences`, read by the base model."""
    if not sequences:
        raise ValueError("the mean final state needs at least one token sequence")
    pad = lm.tokenizer.pad_token_id or 0
    total, count = torch.zeros(lm.hidden_size), 0
    for start in range(0, len(sequences), batch_size):
        part = sequences[start : start + batch_size]
        width = max(len(ids) for ids in part)
        ids = torch.full((len(part), width), pad, dtype=torch.long)
        mask = torch.zeros((len(part), width), dtype=torch.long)
        for i, row in enumerate(part):
            ids[i, : len(row)] = torch.tensor(list(row))
            mask[i, : len(row)] = 1
        with autocast_for(lm.device):
            final = lm.model.get_decoder()(input_ids=ids.to(lm.device), attention_mask=mask.to(lm.device),
                                           use_cache=False).last_hidden_state
        total += (final.float() * mask[..., None].to(final.device)).sum((0, 1)).cpu()
        count += int(mask.sum())
    return total / count


def keep_start_prior(rows: NewTokenRows, start: NewTokenRows, mean_state: torch.Tensor) -> NewTokenRows:
    """A new object: `rows` with each row's rise along `mean_state`'s direction since its `start` row taken
    away (h̄ · row is then at most the start's; a row whose move lowered it keeps the move whole).

    Tied rows only (the row read is the row predicted); rows with separate output rows are returned as they
    are. `start` must hold every word of `rows` (e.g. the subword mean, where Token Distillation starts)."""
    if rows.output_rows is not None:
        return rows
    unit = mean_state.float() / mean_state.float().norm()
    begin = start.select(rows.words).input_rows.float()
    # Only a rise is taken away: a row that training made take less elsewhere keeps that (docs/method.md).
    rise = ((rows.input_rows.float() - begin) @ unit).clamp(min=0)
    corrected = rows.input_rows.float() - rise[:, None] * unit[None, :]
    return NewTokenRows(rows.method, list(rows.words), corrected.to(rows.input_rows.dtype),
                        descriptions=dict(rows.descriptions))
