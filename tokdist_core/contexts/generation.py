"""Generated snippets: the model writes texts that start with the word; the sampled ids are the teacher tokenization.

This runs the model (torch and transformers are imported when it is called), unlike the text readers.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..foundations.cancel import check_cancel
from ..foundations.snippet import Snippet
from ..foundations.vocab import WordSplit
from .mining import check_seed, check_snippet_count, check_snippet_len, continues_word

if TYPE_CHECKING:  # models imports torch/transformers; only needed for type hints here
    from transformers import PreTrainedTokenizerBase

    from ..foundations.models import LoadedModel

GENERATE_BATCH = 32


def _int_seed(seed: int, word: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:generate:{word}".encode()).digest()[:4], "little")


# tokenizer id -> (tokenizer, vocabulary size, banned-first-token ids); identity-checked to survive id reuse.
_FIRST_TOKEN_BANS: dict[int, tuple[Any, int, list[int]]] = {}


def _first_token_bans(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Ids that must not directly follow the word: they would glue onto it or end the text.

    Banned: tokens whose text starts with a letter/digit/combining mark ("Krankenwagen" + "s"), partial
    UTF-8 byte tokens (decode to U+FFFD), empty tokens and special tokens (eos, bos...).
    """
    cached = _FIRST_TOKEN_BANS.get(id(tokenizer))
    if cached is not None and cached[0] is tokenizer and cached[1] == len(tokenizer):
        return cached[2]
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))], clean_up_tokenization_spaces=False)
    special = set(tokenizer.all_special_ids)
    banned = [
        i for i, t in enumerate(texts) if i in special or not t or t[0] == "\ufffd" or continues_word(t[0])
    ]
    _FIRST_TOKEN_BANS[id(tokenizer)] = (tokenizer, len(tokenizer), banned)
    return banned


class _BanAtPosition:
    """Logits processor: at one sequence position, give the banned ids probability zero."""

    def __init__(self, position: int, banned: list[int], vocab_size: int) -> None:
        self.position = position
        self.banned = banned
        self.vocab_size = vocab_size  # ids at or above it are padding rows of a padded embedding matrix
        self._index: Any = None

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        if input_ids.shape[1] != self.position:
            return scores
        if self._index is None or self._index.device != scores.device:
            self._index = torch.tensor(self.banned, dtype=torch.long, device=scores.device)
        scores = scores.clone()
        scores[:, self._index] = -float("inf")
        if scores.shape[-1] > self.vocab_size:
            scores[:, self.vocab_size :] = -float("inf")
        return scores


class _StopWhenCancelled:
    """Stopping criterion: every sequence is done once the cancel flag is set (checked each new token)."""

    def __init__(self, cancel: threading.Event) -> None:
        self.cancel = cancel

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        return torch.full((input_ids.shape[0],), self.cancel.is_set(), dtype=torch.bool, device=input_ids.device)


def generate_snippets(
    lm: LoadedModel, split: WordSplit, n: int, snippet_len: int, seed: int = 0,
    cancel: threading.Event | None = None,
) -> list[Snippet]:
    """Let the model write ``n`` texts that start with the word; the sampled ids are the teacher tokenization.

    Prompt = [bos] (when the tokenizer has one) + split.ids; nucleus sampling (top_p 0.95, temperature 1,
    no top-k), deterministic for (seed, word). At the first generated position, tokens that would glue onto
    the word (letters/digits: "Krankenwagen" + "reference"), partial bytes and special tokens are masked, so
    the word stays a whole word (the same right-boundary rule as mining) and every text continues. Sequences
    are cut at the first eos; exact duplicates are dropped and up to two more rounds top up, so in rare cases
    fewer than ``n`` come back. A set ``cancel`` flag ends generation at the next token and raises Cancelled.
    """
    import torch

    check_snippet_count("n", n, 1)
    check_snippet_len(snippet_len, [split])
    check_seed(seed)
    sampler = _Sampler(lm, split, snippet_len, cancel)
    device = lm.device
    fork_devices = [device.index or 0] if device.type == "cuda" else []
    snippets: list[Snippet] = []
    seen: set[tuple[int, ...]] = set()
    # fork_rng: seeding must not disturb the caller's global RNG state.
    with torch.random.fork_rng(devices=fork_devices), torch.no_grad():
        torch.manual_seed(_int_seed(seed, split.word))
        for _round in range(3):
            missing = n - len(snippets)
            if missing <= 0:
                break
            snippets.extend(sampler.new_snippets(sampler.rows(missing), seen))
    return snippets[:n]


def _eos_ids(lm: LoadedModel) -> set[int]:
    eos_ids: set[int] = set()
    for value in (lm.tokenizer.eos_token_id, getattr(lm.model.generation_config, "eos_token_id", None)):
        if isinstance(value, int):
            eos_ids.add(value)
        elif isinstance(value, (list, tuple)):
            eos_ids.update(int(v) for v in value)
    return eos_ids


class _Sampler:
    """One word's prompt and sampling settings; ``rows`` samples, ``new_snippets`` keeps the usable texts."""

    def __init__(self, lm: LoadedModel, split: WordSplit, snippet_len: int, cancel: threading.Event | None) -> None:
        import torch
        from transformers import StoppingCriteriaList

        tok = lm.tokenizer
        bos = tok.bos_token_id
        self.lm, self.split, self.cancel = lm, split, cancel
        self.prompt = ([bos] if bos is not None else []) + list(split.ids)
        max_new = snippet_len - len(self.prompt)
        if max_new < 1:
            raise ValueError(f"snippet_len={snippet_len} leaves no room to generate after {split.word!r}.")
        self.eos_ids = _eos_ids(lm)
        pad = tok.pad_token_id if tok.pad_token_id is not None else (min(self.eos_ids) if self.eos_ids else 0)
        self.ban = _BanAtPosition(len(self.prompt), _first_token_bans(tok), len(tok))
        stopping = StoppingCriteriaList([_StopWhenCancelled(cancel)] if cancel is not None else [])
        self.input_ids = torch.tensor([self.prompt], dtype=torch.long, device=lm.device)
        self.kwargs = dict(
            attention_mask=torch.ones_like(self.input_ids), do_sample=True, top_p=0.95, top_k=0, temperature=1.0,
            max_new_tokens=max_new, pad_token_id=pad, stopping_criteria=stopping,
        )  # fmt: skip

    def rows(self, count: int) -> list[list[int]]:
        """``count`` sampled sequences (prompt included), in batches of at most GENERATE_BATCH."""
        import torch
        from transformers import LogitsProcessorList

        lm = self.lm
        stopped = f"stopped while generating snippets for {self.split.word!r}"
        rows: list[list[int]] = []
        while len(rows) < count:
            check_cancel(self.cancel, stopped)
            batch = min(GENERATE_BATCH, count - len(rows))
            with torch.autocast(
                device_type=lm.device.type, dtype=lm.autocast_dtype or torch.float32,
                enabled=lm.autocast_dtype is not None,
            ):  # fmt: skip
                out = lm.model.generate(input_ids=self.input_ids, num_return_sequences=batch,
                                        logits_processor=LogitsProcessorList([self.ban]), **self.kwargs)
            check_cancel(self.cancel, stopped)
            rows.extend(out.tolist())
        return rows

    def new_snippets(self, rows: list[list[int]], seen: set[tuple[int, ...]]) -> Iterator[Snippet]:
        """Each row cut at its first eos, unless nothing follows the word or it was seen before."""
        split, n_prompt = self.split, len(self.prompt)
        start = n_prompt - split.n_subwords
        for row in rows:
            cut = next((pos for pos in range(n_prompt, len(row)) if row[pos] in self.eos_ids), len(row))
            ids = tuple(row[:cut])
            if len(ids) <= n_prompt or ids in seen:
                continue  # nothing after the word, or a duplicate
            seen.add(ids)
            yield Snippet(split.word, ids, start, split.n_subwords, "generated")
