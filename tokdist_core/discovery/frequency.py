"""Candidates from a frequency list: `word<TAB>count` lines or JSONL {"word": ..., "count": ...}."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..foundations.vocab import WordError, normalize_word
from .candidates import (
    SNIFF_BYTES,
    Discovery,
    DiscoveryError,
    PendingCandidate,
    Rejection,
    check_options,
    reason_to_skip,
    select_candidates,
)

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@dataclass
class FrequencyList:
    """A parsed frequency list: (line, token, count) entries and every line that was not one."""

    path: str
    entries: list[tuple[int, str, int]]
    rejected: list[Rejection]


def _parse_line(text: str, jsonl: bool) -> tuple[str, int]:
    """One line -> (word as written, count); ValueError saying what is wrong with it."""
    if jsonl:
        try:
            row = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not JSON ({exc.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("word"), str) or "count" not in row:
            raise ValueError('expected {"word": "...", "count": N}')
        word, count = row["word"], row["count"]
    else:
        parts = text.split("\t")
        if len(parts) > 2:
            raise ValueError(f"expected word<TAB>count, got {len(parts)} tab-separated fields")
        parts = parts if len(parts) == 2 else text.rsplit(None, 1)
        if len(parts) != 2:
            raise ValueError("expected word<TAB>count (no count found)")
        word, raw = parts
        try:
            count = int(raw.strip())
        except ValueError:
            raise ValueError(f"count {raw.strip()[:20]!r} is not a whole number") from None
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"count {count!r} is not a whole number >= 0")
    return word, count


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    with path.open("rb") as fh:
        head = fh.read(SNIFF_BYTES)
        if b"\x00" in head:
            raise DiscoveryError(f"Frequency list {str(path)!r} is a binary file (it contains NUL bytes; UTF-16 "
                                 "text?); give UTF-8 word<TAB>count lines or JSONL.")
        fh.seek(0)
        for number, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise DiscoveryError(f"Frequency list {str(path)!r} is not UTF-8 text (line {number}, byte "
                                     f"{exc.start}); save it as UTF-8.") from None
            yield number, line.rstrip("\r\n")


def read_frequency_list(path: str | os.PathLike) -> FrequencyList:
    """Parse a frequency list; bad lines are reported with their number and reason, never dropped.

    Formats: ``word<TAB>count`` (or ``word count``, the count being the last field) per line, or JSONL
    objects ``{"word": ..., "count": ...}`` (a ``.jsonl`` file or a first line starting with '{'). Words may
    be phrases of up to 3 words. A binary file, non-UTF-8 text or a file without one valid line raises
    DiscoveryError.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise DiscoveryError(f"Frequency list {str(path)!r} " + ("is a folder; give a file." if file.is_dir()
                                                                 else "does not exist."))
    entries: list[tuple[int, str, int]] = []
    rejected: list[Rejection] = []
    first_line_of: dict[str, int] = {}
    jsonl: bool | None = True if file.suffix.lower() == ".jsonl" else None
    for number, line in _lines(file):
        if not line.strip():
            continue
        if jsonl is None:
            jsonl = line.lstrip().startswith("{")
        try:
            word, count = _parse_line(line, jsonl)
            token = normalize_word(word)
        except (ValueError, WordError) as exc:
            rejected.append(Rejection(line[:80], str(exc), number))
            continue
        if token in first_line_of:
            rejected.append(Rejection(line[:80], f"duplicate of line {first_line_of[token]}", number))
            continue
        first_line_of[token] = number
        entries.append((number, token, count))
    if not entries:
        why = "; ".join(f"line {r.line}: {r.reason}" for r in rejected[:3]) or "it has no lines"
        raise DiscoveryError(f"Frequency list {str(path)!r} has no valid word<TAB>count or JSONL line ({why}).")
    return FrequencyList(str(path), entries, rejected)


def candidates_from_frequency_list(
    tokenizer: PreTrainedTokenizerBase,
    frequency_list: str | os.PathLike | FrequencyList,
    top: int = 50,
    min_count: int = 2,
    min_chars: int = 3,
    model_name: str = "",
    keep_numbers: bool = False,
) -> Discovery:
    """The list's words ranked by tokens saved = its count x (pieces - 1); every entry not kept is in
    ``rejected`` with its line and reason."""
    check_options(top, min_count, min_chars)
    parsed = frequency_list if isinstance(frequency_list, FrequencyList) else read_frequency_list(frequency_list)
    filtered: Counter[str] = Counter({"invalid line or word": len(parsed.rejected)} if parsed.rejected else {})
    refused: list[Rejection] = []
    entries = []
    for number, token, count in parsed.entries:
        reason = reason_to_skip(token, count, min_count, min_chars, frozenset())
        if reason is None:
            entries.append(PendingCandidate(token, count, number))
        else:
            refused.append(Rejection(token, reason, number))
    candidates, unsplit = select_candidates(tokenizer, entries, top, ranked=True, corpus_tokens=None,
                                            keep_numbers=keep_numbers)
    refused += [Rejection(e.token, reason, e.rank) for e, reason in unsplit]
    filtered.update(r.reason for r in refused)
    rejected = sorted([*parsed.rejected, *refused], key=lambda r: r.line or 0)
    return Discovery(model_name, None, f"frequency list:{parsed.path}", None, None, candidates, dict(filtered),
                     rejected)
