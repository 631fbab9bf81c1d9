"""Where a model's bits go on held-out text: on the new words, on the text read after them, and elsewhere.

The parts are sets of characters of the held-out documents, the same for every model, so their bytes are
the same for the original and for every method and their bits compare directly:

- `new_words`: the characters of the new tokens' occurrences (in the extended tokenization): the bits
  spent predicting the words themselves;
- `after_new`: the characters of the other tokens whose scoring window holds an occurrence before them:
  the reading side, the text the model reads with a new token in its context;
- `elsewhere`: the rest: what the new rows cost where they do not belong (a tied or untied output row
  taking probability from the original tokens) or nothing at all.

A token's bits go to the parts of its characters in proportion to their UTF-8 bytes (a token of the
original tokenization can straddle a word's edge when the word is matched inside a longer one), so each
model's parts add up to its total bits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

PARTS = ("new_words", "after_new", "elsewhere")
PART_CAPTIONS = {
    "new_words": "the new words' own characters: the bits spent predicting them",
    "after_new": "text read with a new token earlier in the window: the reading side",
    "elsewhere": "all other text: what the new rows take where they do not belong",
}
NEW_WORDS, AFTER_NEW, ELSEWHERE = range(3)


def char_bytes(text: str) -> np.ndarray:
    """The UTF-8 length of each character of `text`."""
    return np.fromiter((len(c.encode("utf-8")) for c in text), dtype=np.int64, count=len(text))


def _covered(n_chars: int, spans: np.ndarray) -> np.ndarray:
    """[n_chars] True where a character lies in one of `spans` [k, 2] (start, end)."""
    depth = np.zeros(n_chars + 1, dtype=np.int64)
    np.add.at(depth, spans[:, 0], 1)
    np.add.at(depth, spans[:, 1], -1)
    return np.cumsum(depth[:-1]) > 0


def _read_after(is_new: np.ndarray, windows: Sequence[tuple[list[int], int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """(after, last_new): which tokens are read with an occurrence in their window's context, and the index of
    the last new token before each one (-1 when none)."""
    positions = np.where(is_new, np.arange(len(is_new)), -1)
    last_new = np.concatenate([[-1], np.maximum.accumulate(positions)[:-1]])
    # context_start[j]: the doc index of the first input of the window that predicts j (-1: the start token).
    context_start = np.zeros(len(is_new), dtype=np.int64)
    for inputs, first, count in windows:
        context_start[first : first + count] = first + count - 1 - len(inputs)
    return ~is_new & (last_new >= np.maximum(context_start, 0)), last_new


def elsewhere_tokens(ids: Sequence[int], word_of: dict[int, int],
                     windows: Sequence[tuple[list[int], int, int]]) -> np.ndarray:
    """[tokens] True for a token of the extended tokenization that is not new and has no new token in its
    window's context: the model reads and predicts it as the original does, but for the new output rows."""
    is_new = np.fromiter((t in word_of for t in ids), dtype=bool, count=len(ids))
    if not is_new.any():
        return ~is_new
    after, _last_new = _read_after(is_new, windows)
    return ~is_new & ~after


def part_labels(text: str, ids: Sequence[int], offsets: Sequence[tuple[int, int]], new_ids: set[int],
                windows: Sequence[tuple[list[int], int, int]]) -> np.ndarray:
    """Each character's part (NEW_WORDS, AFTER_NEW or ELSEWHERE) from the extended tokenization of `text`.

    `windows` are the scoring windows of `ids` (report.rolling_windows): a token is read after a new token
    when an occurrence lies inside its window's context, from the window's first input to the token before it.
    """
    labels = np.full(len(text), ELSEWHERE, dtype=np.int8)
    is_new = np.fromiter((t in new_ids for t in ids), dtype=bool, count=len(ids))
    if not is_new.any():
        return labels
    spans = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    after, _last_new = _read_after(is_new, windows)
    labels[_covered(len(text), spans[after])] = AFTER_NEW
    labels[_covered(len(text), spans[is_new])] = NEW_WORDS
    return labels


def split_bits(bits: np.ndarray, offsets: Sequence[tuple[int, int]], labels: np.ndarray,
               weights: np.ndarray) -> np.ndarray:
    """[3] the bits of one document's tokens shared out over the parts by the bytes of their characters."""
    spans = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    # cumulative[p][c]: bytes of part p in characters [0, c).
    cumulative = np.zeros((3, len(labels) + 1))
    for p in range(3):
        cumulative[p, 1:] = np.cumsum(np.where(labels == p, weights, 0))
    share = cumulative[:, spans[:, 1]] - cumulative[:, spans[:, 0]]  # [3, tokens]
    total = share.sum(0)
    spread = np.divide(share, total, out=np.zeros_like(share), where=total > 0)
    out = (spread * bits).sum(1)
    # An empty span (a special token): all its bits to the part of the character it stands at.
    empty = total == 0
    if empty.any():
        at = spans[empty, 0]
        part = np.where(at < len(labels), labels[np.minimum(at, max(len(labels) - 1, 0))], ELSEWHERE)
        out += np.bincount(part, weights=bits[empty], minlength=3)
    return out


def bits_by_part(texts: Sequence[str], nll: Sequence[np.ndarray], offsets: Sequence[Sequence[tuple[int, int]]],
                 labels: Sequence[np.ndarray]) -> dict:
    """{part: {"bytes", "bits"}} of one model: its per-token NLL (nats) and offsets over the documents."""
    bits, n_bytes = np.zeros(3), np.zeros(3, dtype=np.int64)
    for text, doc_nll, doc_offsets, doc_labels in zip(texts, nll, offsets, labels):
        weights = char_bytes(text)
        bits += split_bits(np.asarray(doc_nll) / math.log(2), doc_offsets, doc_labels, weights)
        n_bytes += np.bincount(doc_labels, weights=weights, minlength=3).astype(np.int64)
    return {name: {"bytes": int(n_bytes[p]), "bits": float(bits[p])} for p, name in enumerate(PARTS)}


def parts_table(original: dict, methods: dict[str, dict]) -> list[str]:
    """Readable lines: bits per byte of each part for the original and every method, with the captions."""
    names = ["original", *methods]
    lines = ["Where the bits go (bits per byte of each part; the same bytes for every model):",
             f"  {'part':<11}{'bytes':>12}" + "".join(f"{n[:14]:>15}" for n in names)]
    for part in PARTS:
        n_bytes = original[part]["bytes"]
        cells = [original[part], *(m[part] for m in methods.values())]
        values = "".join(f"{c['bits'] / n_bytes:>15.4f}" if n_bytes else f"{'-':>15}" for c in cells)
        lines.append(f"  {part:<11}{n_bytes:>12,}{values}")
    lines += [f"  {part}: {PART_CAPTIONS[part]}" for part in PARTS]
    return lines


def char_bits(text: str, nll: np.ndarray, offsets: Sequence[tuple[int, int]]) -> np.ndarray:
    """[len(text)] each character's bits: a token's NLL (nats) spread over its characters by their UTF-8 bytes.

    Tokens with an empty span (special tokens) have no characters and are not counted."""
    weights = char_bytes(text).astype(np.float64)
    spans = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    cumulative = np.concatenate([[0.0], np.cumsum(weights)])
    span_bytes = cumulative[spans[:, 1]] - cumulative[spans[:, 0]]
    density = np.divide(np.asarray(nll, dtype=np.float64) / math.log(2), span_bytes,
                        out=np.zeros(len(spans)), where=span_bytes > 0)
    # One tokenization's spans do not overlap: a difference array paints each token's bits per byte.
    paint = np.zeros(len(text) + 1)
    np.add.at(paint, spans[:, 0], density)
    np.add.at(paint, spans[:, 1], -density)
    return np.cumsum(paint[:-1]) * weights


def word_owners(ids: Sequence[int], offsets: Sequence[tuple[int, int]], n_chars: int, word_of: dict[int, int],
                windows: Sequence[tuple[list[int], int, int]]) -> np.ndarray:
    """[n_chars] the word each character's bits are charged to, -1 for none (extended tokenization).

    A new token's characters go to its word; those of a token read after an occurrence in its window
    (the `after_new` part) go to the word of the last occurrence before it; the rest to none."""
    owners = np.full(n_chars, -1, dtype=np.int64)
    word = np.fromiter((word_of.get(t, -1) for t in ids), dtype=np.int64, count=len(ids))
    is_new = word >= 0
    if not is_new.any():
        return owners
    after, last_new = _read_after(is_new, windows)
    token_owner = np.where(is_new, word, np.where(after, word[np.maximum(last_new, 0)], -1))
    spans = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)[token_owner >= 0]
    who = token_owner[token_owner >= 0]
    # Byte-level tokens of one character share its span (an emoji in 2-4 tokens): write, don't add.
    lengths = np.maximum(spans[:, 1] - spans[:, 0], 0)
    chars = np.repeat(spans[:, 0] - (np.cumsum(lengths) - lengths), lengths) + np.arange(lengths.sum())
    owners[chars] = np.repeat(who, lengths)
    return owners
