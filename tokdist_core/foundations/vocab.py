"""Whitespace markers, subword splits, word validation and adding tokens to a model."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .limits import MAX_DESCRIPTION_CHARS, MAX_DESCRIPTIONS, MAX_PHRASE_WORDS, MAX_WORD_CHARS

if TYPE_CHECKING:  # the word rules import no torch: the CLI checks words files before loading anything
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase



class WordError(ValueError):
    """A word the user gave cannot become a new token; the message says why."""


@dataclass(frozen=True)
class WordSplit:
    """How the base tokenizer splits one word, in the form the new token will have."""

    word: str  # the new token's text as it appears in running text, e.g. " Krankenwagen"
    pieces: tuple[str, ...]  # readable pieces (whitespace marker shown as a space)
    ids: tuple[int, ...]
    # A special token from a description ("<|capital|>"): the text the teacher reads in its place, as in running
    # text (" the capital city of France"); pieces and ids are that text's. Empty for words.
    description: str = ""

    @property
    def surface(self) -> str:
        """The text the original model reads where the new token stands: the word itself or its description."""
        return self.description or self.word

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


def _invisible(text: str) -> str:
    """The code points of `text`'s control, format, surrogate, private-use and unassigned characters."""
    return ", ".join(sorted({f"U+{ord(ch):04X}" for ch in text if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn")}))


def normalize_word(raw: str, mid_sentence: bool = True) -> str:
    """Validate one user word (or phrase) and return it in the form the new token will have.

    A new token is one word or a phrase of 2-3 words separated by single spaces (" New York"); tabs,
    newlines, other whitespace and double spaces are refused. mid_sentence=True gives the usual form with a
    leading space (" word"); False gives the word-initial form with no space (the word at the start of a
    text or after punctuation).
    """
    if not isinstance(raw, str):
        raise WordError(f"A word must be text, got {type(raw).__name__}.")
    word = unicodedata.normalize("NFC", raw).strip()
    if not word:
        raise WordError("Empty word: type at least one letter.")
    if len(word) > MAX_WORD_CHARS:
        raise WordError(f"Word is {len(word)} characters long; the limit is {MAX_WORD_CHARS}.")
    _check_spaces(word)
    if _invisible(word):
        raise WordError(f"{word!r} contains control or invisible characters ({_invisible(word)}); remove them.")
    if any(part[0] in "ĠĊ▁" for part in word.split(" ")):
        raise WordError(
            f"{word!r} starts a word with a tokenizer whitespace marker; type the word itself, the space is "
            "added for you."
        )
    return " " + word if mid_sentence else word


def _check_spaces(word: str) -> None:
    """Words of a phrase are separated by single plain spaces, exactly as the token will match running text."""
    other = sorted({f"U+{ord(ch):04X}" for ch in word if ch.isspace() and ch != " "})
    if other:
        raise WordError(
            f"{word!r} contains whitespace other than single spaces ({', '.join(other)}: tab, newline...); "
            f"a new token is one word or up to {MAX_PHRASE_WORDS} words separated by single spaces."
        )
    if "  " in word:
        raise WordError(f"{word!r} has two spaces in a row; separate the words of a phrase by single spaces.")
    n_words = word.count(" ") + 1
    if n_words > MAX_PHRASE_WORDS:
        raise WordError(
            f"{word!r} has {n_words} words; a new token is one word or a phrase of at most {MAX_PHRASE_WORDS} "
            "words (use one entry per word or phrase)."
        )


def parse_word_list(
    text: str | list[str], mid_sentence: bool = True, limit: int | None = None
) -> tuple[list[str], list[tuple[str, str]]]:
    """Split comma/newline separated input into normalized words (or phrases of up to 3 words).

    Returns (words, rejected) where rejected lists (raw entry, reason) so nothing is silently dropped.
    Duplicates keep their first occurrence and are reported. The library has no cap on the number of
    words; ``limit`` (e.g. an app's own cap) keeps the first ``limit`` words and reports the rest.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}.")
    entries = text if isinstance(text, list) else [p for line in str(text).splitlines() for p in line.split(",")]
    words: list[str] = []
    seen: set[str] = set()  # a set: thousands of words must not cost a quadratic duplicate check
    rejected: list[tuple[str, str]] = []
    for raw in entries:
        if not str(raw).strip():
            continue
        try:
            word = normalize_word(raw, mid_sentence)
        except WordError as exc:
            rejected.append((str(raw)[:80], str(exc)))
            continue
        if word in seen:
            rejected.append((str(raw)[:80], "duplicate of an earlier entry"))
            continue
        seen.add(word)
        words.append(word)
    if limit is not None and len(words) > limit:
        rejected.extend((w, f"over the limit of {limit} words") for w in words[limit:])
        words = words[:limit]
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


def split_words(
    tokenizer: PreTrainedTokenizerBase, words: Sequence[str], batch_size: int = 4096
) -> list[WordSplit | WordError]:
    """check_new_word for many words in a few batched tokenizer calls: per word its split or the error."""
    special = set(tokenizer.all_special_ids)
    out: list[WordSplit | WordError] = []
    for start in range(0, len(words), batch_size):
        chunk = list(words[start : start + batch_size])
        all_ids = tokenizer(chunk, add_special_tokens=False, return_attention_mask=False)["input_ids"]
        decoded = tokenizer.batch_decode(all_ids, clean_up_tokenization_spaces=False)
        singles = [[i] for ids in all_ids for i in ids]
        pieces = iter(tokenizer.batch_decode(singles, clean_up_tokenization_spaces=False))
        for word, ids, text in zip(chunk, all_ids, decoded, strict=True):
            readable = tuple(next(pieces) for _ in ids)
            out.append(_checked_split(word, tuple(ids), readable, text, special))
    return out


def _checked_split(
    word: str, ids: tuple[int, ...], pieces: tuple[str, ...], decoded: str, special: set[int]
) -> WordSplit | WordError:
    # The same rules, in the same order, as split_word + check_new_word.
    if not ids:
        return WordError(f"The tokenizer produced no tokens for {word!r}.")
    if any(i in special for i in ids):
        return WordError(f"{word!r} contains a special token of this tokenizer; pick a different word.")
    if decoded != word:
        return WordError(f"{word!r} does not survive a tokenizer round trip (unknown characters?); pick a different word.")
    split = WordSplit(word=word, pieces=pieces, ids=ids)
    if split.is_single_token:
        return WordError(f"{split.display!r} is already a single token (id {ids[0]}); nothing to learn.")
    return split


# -- special tokens from a description -------------------------------------------------------------------


def parse_descriptions(entries: Mapping[str, str] | Sequence[str | tuple[str, str]]) -> dict[str, str]:
    """{token: description} from a mapping, (token, text) pairs or ``TOKEN=TEXT`` entries (split at the first
    '='); each token and description checked (check_special_token_text, check_description_text). WordError
    names what is wrong."""
    if isinstance(entries, str):
        entries = [entries]
    if isinstance(entries, Mapping):
        pairs = list(entries.items())
    else:
        pairs = []
        for entry in entries:
            if isinstance(entry, tuple) and len(entry) == 2:  # a JSON file's pair: '=' may be in either part
                pairs.append(entry)
                continue
            token, sep, text = str(entry).partition("=")
            if not sep:
                raise WordError(f"{str(entry)[:80]!r}: write a special token and its description as TOKEN=TEXT, "
                                "e.g. <|capital|>=the capital city of France")
            pairs.append((token, text))
    if len(pairs) > MAX_DESCRIPTIONS:
        raise WordError(f"{len(pairs)} described tokens; the limit is {MAX_DESCRIPTIONS} in one run.")
    out: dict[str, str] = {}
    for token, text in pairs:
        token = check_special_token_text(token)
        if token in out:
            raise WordError(f"{token!r} is described twice; give each special token one description.")
        out[token] = check_description_text(token, text)
    return out


def check_special_token_text(raw: object) -> str:
    """A special token's text (e.g. ``<|cite|>``): one piece of visible text with no spaces, NFC-normalized."""
    if not isinstance(raw, str):
        raise WordError(f"A special token must be text, got {type(raw).__name__}.")
    token = unicodedata.normalize("NFC", raw).strip()
    if not token:
        raise WordError("Empty special token: write it before the '=', e.g. <|cite|>=a citation marker.")
    if len(token) > MAX_WORD_CHARS:
        raise WordError(f"Special token {token[:20]!r}... is {len(token)} characters long; the limit is {MAX_WORD_CHARS}.")
    if any(ch.isspace() for ch in token):
        raise WordError(f"Special token {token!r} contains whitespace; a special token is one piece of text "
                        "such as <|cite|>.")
    if _invisible(token):
        raise WordError(f"Special token {token!r} contains control or invisible characters ({_invisible(token)}).")
    return token


def check_description_text(token: str, raw: object) -> str:
    """A description: visible text on one line, at most MAX_DESCRIPTION_CHARS characters, NFC-normalized."""
    if not isinstance(raw, str):
        raise WordError(f"The description of {token!r} must be text, got {type(raw).__name__}.")
    text = unicodedata.normalize("NFC", raw).strip()
    if not text:
        raise WordError(f"The description of {token!r} is empty: say in words what the token stands for, e.g. "
                        f"{token}=the capital city of France.")
    if len(text) > MAX_DESCRIPTION_CHARS:
        raise WordError(f"The description of {token!r} is {len(text)} characters long; the limit is "
                        f"{MAX_DESCRIPTION_CHARS} (a phrase or a sentence the token stands for).")
    if _invisible(text):
        raise WordError(f"The description of {token!r} contains control or invisible characters "
                        f"({_invisible(text)}: newline, tab...); write it on one line.")
    return text


def described_split(
    tokenizer: PreTrainedTokenizerBase, token: str, description: str, mid_sentence: bool = True
) -> WordSplit:
    """The special token `token` read by the original model as `description`'s pieces.

    Mid-sentence (the default) the description is read with its leading space, and the token takes the space
    before it in running text (lstrip), so "visited <|capital|> today" reads like "visited the capital...".
    """
    token = check_special_token_text(token)
    description = check_description_text(token, description)
    if token in tokenizer.get_vocab():
        raise WordError(f"{token!r} already exists in this tokenizer (id {tokenizer.convert_tokens_to_ids(token)}); "
                        "choose a new name.")
    try:
        split = split_word(tokenizer, (" " if mid_sentence else "") + description)
    except WordError as exc:
        raise WordError(f"The description of {token!r}: {exc}") from None
    return WordSplit(word=token, pieces=split.pieces, ids=split.ids, description=split.word)


def prepare_splits(
    tokenizer: PreTrainedTokenizerBase,
    new_tokens: str | Sequence[str],
    mid_sentence: bool = True,
    describe: Mapping[str, str] | Sequence[str] | None = None,
) -> tuple[list[WordSplit], list[tuple[str, str]]]:
    """The splits of new words and of special tokens from a description, and (entry, reason) per word that
    cannot become a new token. Problems with `describe` ({token: text} or TOKEN=TEXT entries) raise WordError:
    the user wrote those tokens out one by one, so none is left out quietly."""
    entries = new_tokens if isinstance(new_tokens, str) else list(new_tokens)
    words, rejected = parse_word_list(entries, mid_sentence=mid_sentence)
    splits: list[WordSplit] = []
    for word, result in zip(words, split_words(tokenizer, words), strict=True):
        if isinstance(result, WordError):
            rejected.append((word, str(result)))
        else:
            splits.append(result)
    for token, text in parse_descriptions(describe or {}).items():
        if token in words:
            raise WordError(f"{token!r} is both a word and a described special token; give it once.")
        splits.append(described_split(tokenizer, token, text, mid_sentence))
    return splits, rejected


def added_tokens(words: Sequence[str], descriptions: Mapping[str, str] | None = None) -> list:
    """The AddedTokens for new `words`: plain tokens, and special ones for the tokens in `descriptions`."""
    from transformers import AddedToken

    descriptions = descriptions or {}
    return [
        AddedToken(w, normalized=False, special=w in descriptions, lstrip=descriptions.get(w, "").startswith(" "))
        for w in words
    ]


def add_tokens_to_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    words: list[str],
    input_rows: torch.Tensor,
    output_rows: torch.Tensor | None = None,
    descriptions: Mapping[str, str] | None = None,
) -> list[int]:
    """Add `words` as tokens to a (copied) model and tokenizer and write their embedding rows.

    Never shrinks a padded matrix: new ids that fall inside it overwrite padding rows. For untied models
    `output_rows` sets the LM-head rows. Returns the ids the words received.

    The tokens are plain ``AddedToken(w, normalized=False, special=False)``: not ``single_word=True``, which
    in HF tokenizers refuses a match whose preceding character is a word character, and for a token with
    a leading space (" New York") that is the last letter of the previous word, so the token would never
    fire mid-sentence (tests/test_multiword.py). The price: an added token also matches inside a longer
    word (" New York" + "er" in " New Yorker"); mining and discovery count only whole-word occurrences.
    Tokens in `descriptions` (token -> the text it stands for) are added as special tokens (added_tokens).
    """
    if len(words) != input_rows.shape[0]:
        raise ValueError(f"{len(words)} words but {input_rows.shape[0]} input rows.")
    added = tokenizer.add_tokens(added_tokens(words, descriptions))
    if added != len(words):
        raise WordError("Some words already exist in the tokenizer's vocabulary; they cannot be added again.")
    ids = tokenizer.convert_tokens_to_ids(words)
    needed = max(ids) + 1
    emb = model.get_input_embeddings()
    if needed > emb.weight.shape[0]:
        model.resize_token_embeddings(needed, mean_resizing=False)
    write_new_rows(model, ids, input_rows, output_rows)
    return ids


def write_new_rows(model: PreTrainedModel, ids: list[int], input_rows: torch.Tensor,
                   output_rows: torch.Tensor | None = None) -> None:
    """Write the new tokens' input rows (and, untied, output rows: zeros when None; bias 0) at `ids`."""
    import torch

    emb = model.get_input_embeddings()
    with torch.no_grad():
        emb.weight[ids] = input_rows.to(emb.weight.dtype, copy=True).to(emb.weight.device)
        out = model.get_output_embeddings()
        if out is not None and out.weight is not emb.weight:
            rows = output_rows if output_rows is not None else torch.zeros_like(input_rows)
            out.weight[ids] = rows.to(out.weight.dtype).to(out.weight.device)
            if getattr(out, "bias", None) is not None:
                out.bias[ids] = 0.0
