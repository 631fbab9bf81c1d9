"""Whitespace markers, subword splits, word validation and adding tokens to a model."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

MAX_WORD_CHARS = 64
MAX_WORDS = 200


class WordError(ValueError):
    """A word the user gave cannot become a new token; the message says why."""


@dataclass(frozen=True)
class WordSplit:
    """How the base tokenizer splits one word, in the form the new token will have."""

    word: str  # the new token's text as it appears in running text, e.g. " Krankenwagen"
    pieces: tuple[str, ...]  # readable pieces (whitespace marker shown as a space)
    ids: tuple[int, ...]

    @property
    def n_subwords(self) -> int:
        return len(self.ids)

    @property
    def is_single_token(self) -> bool:
        return len(self.ids) == 1

    @property
    def display(self) -> str:
        return self.word.replace(" ", "␣", 1) if self.word.startswith(" ") else self.word


def whitespace_marker(tokenizer: PreTrainedTokenizerBase) -> str:
    """The character the tokenizer uses for a leading space: 'Ġ' (byte-level BPE), '▁' (SentencePiece) or ''."""
    ids = tokenizer.encode(" the the", add_special_tokens=False)
    for token in tokenizer.convert_ids_to_tokens(ids):
        if token.endswith("the") and len(token) > 3:
            return token[: -len("the")]
    return ""


def normalize_word(raw: str, mid_sentence: bool = True) -> str:
    """Validate one user word and return it in the form the new token will have.

    mid_sentence=True gives the usual form with a leading space (" word"); False gives the word-initial
    form with no space (the word at the start of a text or after punctuation).
    """
    if not isinstance(raw, str):
        raise WordError(f"A word must be text, got {type(raw).__name__}.")
    word = unicodedata.normalize("NFC", raw).strip()
    if not word:
        raise WordError("Empty word: type at least one letter.")
    if len(word) > MAX_WORD_CHARS:
        raise WordError(f"Word is {len(word)} characters long; the limit is {MAX_WORD_CHARS}.")
    if any(ch.isspace() for ch in word):
        raise WordError(f"{word!r} contains whitespace; a new token is one word (use one entry per word).")
    bad = sorted({f"U+{ord(ch):04X}" for ch in word if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn")})
    if bad:
        raise WordError(f"{word!r} contains control or invisible characters ({', '.join(bad)}); remove them.")
    if word[0] in "ĠĊ▁":
        raise WordError(
            f"{word!r} starts with a tokenizer whitespace marker; type the word itself, the space is added for you."
        )
    return " " + word if mid_sentence else word


def parse_word_list(text: str | list[str], mid_sentence: bool = True) -> tuple[list[str], list[tuple[str, str]]]:
    """Split comma/newline separated input into normalized words.

    Returns (words, rejected) where rejected lists (raw entry, reason) so nothing is silently dropped.
    Duplicates keep their first occurrence and are reported.
    """
    entries = text if isinstance(text, list) else [p for line in str(text).splitlines() for p in line.split(",")]
    words: list[str] = []
    rejected: list[tuple[str, str]] = []
    for raw in entries:
        if not str(raw).strip():
            continue
        try:
            word = normalize_word(raw, mid_sentence)
        except WordError as exc:
            rejected.append((str(raw)[:80], str(exc)))
            continue
        if word in words:
            rejected.append((str(raw)[:80], "duplicate of an earlier entry"))
            continue
        words.append(word)
    if len(words) > MAX_WORDS:
        rejected.extend((w, f"over the limit of {MAX_WORDS} words") for w in words[MAX_WORDS:])
        words = words[:MAX_WORDS]
    return words, rejected


def _readable(tokenizer: PreTrainedTokenizerBase, token_id: int) -> str:
    return tokenizer.decode([token_id], clean_up_tokenization_spaces=False)


def split_word(tokenizer: PreTrainedTokenizerBase, word: str) -> WordSplit:
    """The word's subword ids exactly as they appear in running text (no special tokens)."""
    ids = tuple(tokenizer.encode(word, add_special_tokens=False))
    if not ids:
        raise WordError(f"The tokenizer produced no tokens for {word!r}.")
    special = set(tokenizer.all_special_ids)
    if any(i in special for i in ids):
        raise WordError(f"{word!r} contains a special token of this tokenizer; pick a different word.")
    if tokenizer.decode(list(ids), clean_up_tokenization_spaces=False) != word:
        raise WordError(f"{word!r} does not survive a tokenizer round trip (unknown characters?); pick a different word.")
    return WordSplit(word=word, pieces=tuple(_readable(tokenizer, i) for i in ids), ids=ids)


def check_new_word(tokenizer: PreTrainedTokenizerBase, word: str) -> WordSplit:
    """split_word plus the rule that a new token must currently take two or more subwords."""
    split = split_word(tokenizer, word)
    if split.is_single_token:
        raise WordError(f"{split.display!r} is already a single token (id {split.ids[0]}); nothing to learn.")
    return split


def add_tokens_to_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    words: list[str],
    input_rows: torch.Tensor,
    output_rows: torch.Tensor | None = None,
) -> list[int]:
    """Add `words` as tokens to a (copied) model and tokenizer and write their embedding rows.

    Never shrinks a padded matrix: new ids that fall inside it overwrite padding rows. For untied models
    `output_rows` sets the LM-head rows. Returns the ids the words received.
    """
    from transformers import AddedToken

    if len(words) != input_rows.shape[0]:
        raise ValueError(f"{len(words)} words but {input_rows.shape[0]} input rows.")
    added = tokenizer.add_tokens([AddedToken(w, normalized=False, special=False) for w in words])
    if added != len(words):
        raise WordError("Some words already exist in the tokenizer's vocabulary; they cannot be added again.")
    ids = tokenizer.convert_tokens_to_ids(words)
    needed = max(ids) + 1
    emb = model.get_input_embeddings()
    if needed > emb.weight.shape[0]:
        model.resize_token_embeddings(needed, mean_resizing=False)
    emb = model.get_input_embeddings()
    with torch.no_grad():
        emb.weight[ids] = input_rows.to(emb.weight.dtype, copy=True).to(emb.weight.device)
        out = model.get_output_embeddings()
        if out is not None and out.weight is not emb.weight:
            rows = output_rows if output_rows is not None else torch.zeros_like(input_rows)
            out.weight[ids] = rows.to(out.weight.dtype).to(out.weight.device)
            if getattr(out, "bias", None) is not None:
                out.bias[ids] = 0.0
    return ids
