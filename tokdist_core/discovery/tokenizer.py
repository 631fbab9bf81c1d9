"""Candidates from another tokenizer's vocabulary: its word-initial tokens that this model splits."""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import regex

from ..contexts.documents import DocumentSplit
from ..contexts.sources import DataSpec, first_line
from ..foundations.vocab import whitespace_marker
from .candidates import (
    Discovery,
    DiscoveryError,
    PendingCandidate,
    check_options,
    reason_to_skip,
    select_candidates,
)
from .corpus import corpus_sources, count_in_corpus, describe_data

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

_BYTE_TOKEN = regex.compile(r"<0x[0-9A-Fa-f]{2}>")


def load_tokenizer(name: str | os.PathLike) -> PreTrainedTokenizerBase:
    """AutoTokenizer from a local folder or hub id (never trust_remote_code); DiscoveryError naming it."""
    text = str(name).strip()
    if not text:
        raise DiscoveryError("No tokenizer given: pass a local folder with tokenizer files or a hub id.")
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise DiscoveryError(f"Tokenizer {text!r} is a file; give the folder that holds the tokenizer files.")
    looks_local = text.startswith((".", "/", "~", "\\")) or text.count("/") > 1 or "\\" in text
    if looks_local and not path.is_dir():
        raise DiscoveryError(f"Tokenizer folder {text!r} does not exist.")
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path) if path.is_dir() else text, trust_remote_code=False)
    except Exception as exc:  # OSError, ValueError, EnvironmentError... from many loaders
        where = "the folder holds no loadable tokenizer" if path.is_dir() else "the Hugging Face Hub may be unreachable"
        raise DiscoveryError(f"Could not load tokenizer {text!r} ({where}): {first_line(exc)}") from exc


def _marker_of(other: PreTrainedTokenizerBase, vocab: dict[str, int]) -> str:
    marker = whitespace_marker(other)
    if len(marker) == 1:
        return marker
    # Small tokenizers may lack " the", and some merge across spaces ("▁the▁the"): fall back to the
    # marker that many vocabulary tokens start with.
    starts = Counter(token[0] for token in vocab if token[:1] in ("Ġ", "▁"))
    common = starts.most_common(1)
    return common[0][0] if common and common[0][1] >= 0.05 * len(vocab) else ""


def _continuation_prefix(other: PreTrainedTokenizerBase) -> str | None:
    """WordPiece's '##' (tokens with it continue a word) when the tokenizer has one."""
    backend = getattr(other, "backend_tokenizer", None)
    model = getattr(backend, "model", None)
    return getattr(model, "continuing_subword_prefix", None) or None


def _vocab_token_text(token: str, other: PreTrainedTokenizerBase, marker: str, prefix: str | None,
                      added: dict[str, Any], special: set[str]) -> tuple[str | None, str | None]:
    """-> (the token as text in " word" form, None) or (None, why it is skipped)."""
    if token in special:
        return None, "special token"
    if _BYTE_TOKEN.fullmatch(token):
        return None, "byte token"
    if token in added:
        content = added[token].content
        return (content, None) if content.startswith(" ") else (None, "word continuation (no leading space)")
    if marker and token.startswith(marker):
        body = token[len(marker):]
        if not body:
            return None, "whitespace marker alone"
        text = " " + other.convert_tokens_to_string([body])
    elif not marker and prefix and not token.startswith(prefix):
        text = " " + other.convert_tokens_to_string([token])
    else:
        # No marker: the token continues a word ("ing"); added as text it would match inside words.
        return None, "word continuation (no leading space)"
    if len(text.strip()) <= 1:
        return None, "single character"
    if "\ufffd" in text:
        return None, "partial UTF-8 bytes"
    return text, None


def candidates_from_tokenizer(
    tokenizer: PreTrainedTokenizerBase,
    other: str | os.PathLike | PreTrainedTokenizerBase,
    data: DataSpec | Iterable[DataSpec] | None = None,
    top: int = 50,
    min_count: int = 2,
    min_chars: int = 3,
    max_documents: int | None = None,
    text_column: str = "text",
    cancel: threading.Event | None = None,
    model_name: str = "",
    document_split: DocumentSplit | None = None,
    keep_numbers: bool = False,
) -> Discovery:
    """Tokens of another tokenizer that the model's tokenizer splits into 2+ pieces.

    Whitespace markers are mapped ('Ġ' byte-level, '▁' SentencePiece: a leading space); tokens without
    one continue a word and are skipped (added as text they would fire inside words), as are special
    and byte tokens and single characters. With ``data`` the candidates are counted in that corpus and
    ranked by tokens saved; without it they keep the other tokenizer's order (id, i.e. merge rank for BPE)
    and include word fragments (" cla" of " claimed") that a corpus would count zero times as whole words.
    """
    check_options(top, min_count, min_chars, max_documents)
    other_tok = other if not isinstance(other, (str, os.PathLike)) else load_tokenizer(other)
    name = str(other) if isinstance(other, (str, os.PathLike)) else getattr(other, "name_or_path", "tokenizer")
    if data is not None:
        corpus_sources(data)  # fail on a bad corpus now, before reading the vocabulary
    vocab = other_tok.get_vocab()
    marker, prefix = _marker_of(other_tok, vocab), _continuation_prefix(other_tok)
    added = {t.content: t for t in other_tok.added_tokens_decoder.values()}
    special = set(other_tok.all_special_tokens) | {c for c, t in added.items() if t.special}
    filtered: Counter[str] = Counter()
    entries: dict[str, PendingCandidate] = {}
    for token, token_id in sorted(vocab.items(), key=lambda kv: kv[1]):
        text, reason = _vocab_token_text(token, other_tok, marker, prefix, added, special)
        reason = reason or reason_to_skip(text, None, min_count, min_chars, frozenset())
        if reason is None and text in entries:
            reason = "duplicate text"
        if reason is not None:
            filtered[reason] += 1
            continue
        entries[text] = PendingCandidate(text, None, token_id)
    n_docs = n_tokens = None
    pool = list(entries.values())
    if data is not None:
        pool, n_docs, n_tokens = count_in_corpus(pool, data, tokenizer, text_column, max_documents, cancel,
                                                min_count, filtered, document_split)
    candidates, refused = select_candidates(tokenizer, pool, top, ranked=data is not None, corpus_tokens=n_tokens,
                                            keep_numbers=keep_numbers)
    filtered.update(reason for _e, reason in refused)
    return Discovery(model_name, None if data is None else describe_data(data), f"tokenizer:{name}", n_tokens,
                     n_docs, candidates, dict(filtered))
