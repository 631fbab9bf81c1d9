"""Domain report: on held-out text, how many tokens the new vocabulary saves and how much quality it keeps.

Quality is bits per byte, which does not depend on the tokenization: the total negative log-likelihood
of the text (every token of every document, each document scored from a start token) / ln 2 / its UTF-8
bytes. The original model reads the original tokenization; each method's adapted model reads the
extended one. The adapted model is never built: new ids take the method's input rows as embeddings and
its output rows as extra logits over the shared, unmodified base model (as `evaluate.generate` does).
Each model's bits are also split into parts (`evaluation.parts`): the new words themselves, the text read
after them, and elsewhere, so a loss of quality can be traced to where it arises.
"""

from __future__ import annotations

import html
import json
import math
import threading
import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..foundations.cancel import check_cancel
from ..foundations.files import atomic_path
from ..foundations.forward import autocast_for, decoder_forward, embed_ids, output_logits
from ..foundations.models import LoadedModel
from ..foundations.rows import NewTokenRows, tokenizer_with_words
from ..foundations.vocab import WordError
from .parts import (
    bits_by_part,
    part_labels,
    parts_table,
)
from .report_inputs import check_documents, check_rows, check_settings

Progress = Callable[[float, str], None]
DEFAULT_TOKEN_BUDGET = 8192  # padded tokens per forward batch
_LOGIT_ELEMENTS = 1 << 25  # logits held at once (128 MiB fp32), whatever the vocabulary size
_ENCODE_BATCH = 256  # documents per tokenizer call (cancel is checked between calls)
SUMMARY_ABSENT_SHOWN = 20  # words absent from the held-out text named in the readable summary


def rolling_windows(tokens: Sequence[int], prefix: int, max_length: int) -> list[tuple[list[int], int, int]]:
    """Disjoint scoring windows, as lm-eval's `get_rolling_token_windows(context_len=1)` + `make_disjoint_window`
    (its `loglikelihood_rolling`): -> (model input of at most max_length ids, first target, number of targets).

    The last `count` input positions predict tokens[first : first + count]; every token is predicted once. The
    first window starts from `prefix`; later ones take the preceding tokens as context (the last may take more
    than its own targets, so it is a full window)."""
    n = len(tokens)
    if not n:
        return []
    first = min(max_length, n)
    windows = [([prefix, *tokens[: first - 1]], 0, first)]
    predicted = first
    while predicted < n:
        count = min(n - predicted, max_length)
        end = predicted + count
        windows.append((list(tokens[end - max_length - 1 : end - 1]), end - count, count))
        predicted = end
    return windows


@dataclass
class _NewRows:
    """One method's rows on the model's device, and where its new ids go in the logits."""

    input_rows: torch.Tensor  # [K, H], scaled like the embedding module's output
    output_rows: torch.Tensor  # [K, H]


@dataclass
class _Vocab:
    base: int  # ids below this are original tokens
    head_rows: int  # original output rows (more than `base` for padded matrices)
    new_ids: list[int]  # tokenizer ids of the new words, in word order

    def lookup(self, device: torch.device) -> torch.Tensor:
        table = torch.zeros(max(self.new_ids, default=self.base) - self.base + 1, dtype=torch.long)
        table[torch.tensor(self.new_ids, dtype=torch.long) - self.base] = torch.arange(len(self.new_ids))
        return table.to(device)


@torch.no_grad()
def _batch_nll(lm: LoadedModel, vocab: _Vocab, windows: list, docs: list[list[int]], new: _NewRows | None,
               mixed_precision: str, charged: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """NLL (nats) of every target of a batch of windows, in window order, and with `charged` ([targets] bool)
    what the new rows take at those targets, per new word ([K] nats; `_new_row_takes`)."""
    width = max(len(w[1]) for w in windows)
    ids = torch.zeros((len(windows), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    rows, cols, targets = [], [], []
    for b, (doc, inputs, first, count) in enumerate(windows):
        ids[b, : len(inputs)] = torch.tensor(inputs)
        mask[b, : len(inputs)] = 1
        rows += [b] * count
        cols += range(len(inputs) - count, len(inputs))
        targets += docs[doc][first : first + count]
    ids, mask, target = ids.to(lm.device), mask.to(lm.device), torch.tensor(targets, device=lm.device)
    table = vocab.lookup(lm.device)
    is_new = ids >= vocab.base
    embeds = embed_ids(lm.model, torch.where(is_new, 0, ids))
    if new is not None and is_new.any():
        embeds[is_new] = new.input_rows[table[ids[is_new] - vocab.base]].to(embeds.dtype)
    # New output ids that land on padding rows replace those rows, exactly as add_tokens_to_model writes them.
    blocked = [t for t in vocab.new_ids if t < vocab.head_rows] if new is not None else []
    target = torch.where(target >= vocab.base, vocab.head_rows + table[(target - vocab.base).clamp(min=0)], target)
    positions = torch.arange(width, device=lm.device).expand(len(windows), -1)
    chunk = max(1, _LOGIT_ELEMENTS // (vocab.head_rows + len(vocab.new_ids)))
    out = []
    taken = torch.zeros(len(vocab.new_ids), dtype=torch.float64) if charged is not None and new is not None else None
    with autocast_for(lm.device, mixed_precision):
        hidden, _ = decoder_forward(lm.model, embeds, mask, -1, position_ids=positions)
        picked = hidden[torch.tensor(rows, device=lm.device), torch.tensor(cols, device=lm.device)]
        for start in range(0, len(targets), chunk):
            logits = output_logits(lm.model, picked[start : start + chunk], None if new is None else new.output_rows)
            if blocked:
                logits[:, blocked] = -math.inf
            out.append(F.cross_entropy(logits, target[start : start + chunk], reduction="none"))
            if taken is not None:
                where = charged[start : start + chunk].to(lm.device)
                if where.any():
                    taken += _new_row_takes(logits[where].float(), vocab.head_rows).cpu()
    return torch.cat(out).float().cpu(), taken


def _new_row_takes(logits: torch.Tensor, head_rows: int) -> torch.Tensor:
    """[K] nats: at positions whose target is an original token and whose hidden state the new tokens do not
    change, the new rows cost exactly -log(1 - P) each (P: their total probability there, which the original
    tokens lose); each word is charged its rows' share p_w / P of it, so the charges add up to the cost."""
    p_new = torch.softmax(logits, dim=-1)[:, head_rows:].double()
    total = p_new.sum(1, keepdim=True)
    cost = -torch.log1p(-total.clamp(max=1 - 1e-12))
    return (p_new * torch.where(total > 0, cost / total, torch.zeros_like(total))).sum(0)


def token_nll(lm: LoadedModel, vocab: _Vocab, docs: list[list[int]], new: _NewRows | None, settings: dict,
               tick: Callable[[int, str], None],
               charged: list[np.ndarray] | None = None) -> tuple[list[np.ndarray], np.ndarray | None]:
    """Per document, the NLL (nats) of each of its tokens, scored in windows batched by a token budget; with
    `charged` (per document, [tokens] bool) also what the new rows take at those tokens, per word ([K] nats)."""
    prefix, max_length, budget = settings["start_token_id"], settings["max_length"], settings["token_budget"]
    windows = [(d, *w) for d, ids in enumerate(docs) for w in rolling_windows(ids, prefix, max_length)]
    windows.sort(key=lambda w: -len(w[1]))  # longest first: the first window of a batch sets its width
    nll = [np.zeros(len(ids)) for ids in docs]
    taken = np.zeros(len(vocab.new_ids)) if charged is not None and new is not None else None
    done = 0
    while done < len(windows):
        check_cancel(settings["cancel"], f"stopped while scoring held-out text ({done} of {len(windows)} windows)")
        size = max(1, budget // len(windows[done][1]))
        batch = windows[done : done + size]
        where = None if taken is None else torch.from_numpy(
            np.concatenate([charged[doc][first : first + count] for doc, _, first, count in batch]))
        values, batch_taken = _batch_nll(lm, vocab, batch, docs, new, settings["mixed_precision"], where)
        values = values.numpy()
        if batch_taken is not None:
            taken += batch_taken.numpy()
        at = 0
        for doc, _, first, count in batch:
            nll[doc][first : first + count] = values[at : at + count]
            at += count
        done += len(batch)
        tick(len(batch), f"{done} of {len(windows)} windows")
    return nll, taken


def _aligned_pieces(span: tuple[int, int], starts: list[int], ends: list[int]) -> range | None:
    """The original tokens that exactly tile a new token's character span, or None (e.g. a new token matched
    inside a longer word, " Krankenwagen" in " Krankenwagens", is not cut at the same places)."""
    first, stop = bisect_right(ends, span[0]), bisect_left(starts, span[1])
    if stop <= first or starts[first] != span[0] or ends[stop - 1] != span[1]:
        return None
    return range(first, stop)


@dataclass
class _WordTally:
    count: int = 0
    aligned: int = 0
    nats_original: float = 0.0  # original model, original pieces, aligned occurrences
    nats: dict[str, float] = field(default_factory=dict)  # method -> new token's NLL, aligned occurrences


def _tally_words(words: list[str], vocab: _Vocab, original: dict, adapted: dict,
                 nll_original: list[np.ndarray], nll_methods: dict[str, list[np.ndarray]]) -> list[_WordTally]:
    """Count each new token in the extended encoding and, with offsets, the NLL spent on its occurrences."""
    tallies = [_WordTally(nats={m: 0.0 for m in nll_methods}) for _ in words]
    index = {t: k for k, t in enumerate(vocab.new_ids)}
    for d, ids in enumerate(adapted["ids"]):
        spans = adapted["offsets"][d] if adapted["offsets"] else None
        starts = [s for s, _ in original["offsets"][d]] if spans else []
        ends = [e for _, e in original["offsets"][d]] if spans else []
        for j, t in enumerate(ids):
            if t not in index:
                continue
            tally = tallies[index[t]]
            tally.count += 1
            pieces = _aligned_pieces(spans[j], starts, ends) if spans else None
            if pieces is None:
                continue
            tally.aligned += 1
            tally.nats_original += float(nll_original[d][pieces.start : pieces.stop].sum())
            for m, nll in nll_methods.items():
                tally.nats[m] += float(nll[d][j])
    return tallies


def extended_vocab(lm: LoadedModel, words: list[str]):
    """The base tokenizer's private copy with the words added as add_tokens_to_model adds them, and the ids."""
    extended = tokenizer_with_words(lm.tokenizer, tuple(words))
    base = len(lm.tokenizer)
    new_ids = [int(i) for i in extended.convert_tokens_to_ids(words)]
    if len(extended) != base + len(words) or min(new_ids) < base:
        raise WordError("Some words already exist in the tokenizer's vocabulary as added tokens; they are not new.")
    head_rows = int(lm.model.get_output_embeddings().weight.shape[0])
    return extended, _Vocab(base=base, head_rows=head_rows, new_ids=new_ids)


def device_rows(lm: LoadedModel, rows: NewTokenRows, words: list[str]) -> _NewRows:
    order = [rows.index(w) for w in words]
    return _NewRows(input_rows=rows.scaled_input(lm.model)[order].float().to(lm.device),
                    output_rows=rows.output_matrix()[order].float().to(lm.device))


def encode_documents(tokenizer, documents: list[str], cancel: threading.Event | None) -> dict:
    """Batch-encode (fast tokenizers also give character offsets, for the per-word breakdown)."""
    fast = bool(getattr(tokenizer, "is_fast", False))
    ids: list[list[int]] = []
    offsets: list[list[tuple[int, int]]] | None = [] if fast else None
    for start in range(0, len(documents), _ENCODE_BATCH):
        check_cancel(cancel, f"stopped while tokenizing ({start} of {len(documents)} documents)")
        enc = tokenizer(documents[start : start + _ENCODE_BATCH], add_special_tokens=False,
                        return_offsets_mapping=fast)
        ids += enc["input_ids"]
        if offsets is not None:
            offsets += [[tuple(o) for o in doc] for doc in enc["offset_mapping"]]
    return {"ids": ids, "offsets": offsets}


def _scores(nats: float, tokens: int, n_bytes: int) -> dict:
    return {"bits_per_byte": nats / math.log(2) / n_bytes, "bits_per_token": nats / math.log(2) / tokens,
            "nll_nats": nats}


def _change_pct(new: float, old: float) -> float | None:
    return (new - old) / old * 100 if old else None


def _word_json(lm: LoadedModel, word: str, tally: _WordTally) -> dict:
    pieces = len(lm.tokenizer.encode(word, add_special_tokens=False))
    bits_original = tally.nats_original / math.log(2) / tally.aligned if tally.aligned else None
    methods = {}
    for m, nats in tally.nats.items():
        bits = nats / math.log(2) / tally.aligned if tally.aligned else None
        methods[m] = {"bits": bits, "bits_change_pct": None if bits is None else _change_pct(bits, bits_original)}
    return {"word": word, "subwords": pieces, "count": tally.count, "tokens_saved": tally.count * (pieces - 1),
            "aligned": tally.aligned, "bits_original": bits_original, "methods": methods}


@dataclass
class DomainReport:
    """Tokens saved and bits per byte kept on held-out documents; `to_json()` is the saved format."""

    model: dict
    settings: dict  # max_length, token_budget, mixed_precision, start token
    documents: int
    bytes: int
    tokens_original: int
    tokens_adapted: int
    original: dict  # bits_per_byte, bits_per_token, nll_nats; parts (evaluation.parts) with a fast tokenizer
    methods: dict[str, dict]  # name -> the same plus label, colour, bits_per_byte_change_pct
    words: list[dict]
    seconds: float = 0.0

    @property
    def tokens_saved_pct(self) -> float:
        return (self.tokens_original - self.tokens_adapted) / self.tokens_original * 100

    def to_json(self) -> dict:
        return {"model": self.model, "settings": self.settings, "documents": self.documents, "bytes": self.bytes,
                "tokens_original": self.tokens_original, "tokens_adapted": self.tokens_adapted,
                "tokens_saved": self.tokens_original - self.tokens_adapted, "tokens_saved_pct": self.tokens_saved_pct,
                "original": self.original, "methods": self.methods, "words": self.words, "seconds": self.seconds}

    def summary(self) -> str:
        lines = [
            f"Domain report: {self.documents} held-out documents, {self.bytes:,} bytes, model {self.model.get('name')}",
            f"Tokens: {self.tokens_original:,} with the original tokenizer, {self.tokens_adapted:,} with the "
            f"{len(self.words)} new tokens: {self.tokens_saved_pct:.2f}% fewer.",
            "Bits per byte (lower is better; the same scale whatever the tokenization):",
            f"  {'original':<28}{self.original['bits_per_byte']:.4f}",
        ]
        for m in self.methods.values():
            lines.append(f"  {m['label']:<28}{m['bits_per_byte']:.4f}  ({m['bits_per_byte_change_pct']:+.2f}%)")
        if self.original.get("parts"):
            lines += parts_table(self.original["parts"], {n: m["parts"] for n, m in self.methods.items()})
        present = sorted((w for w in self.words if w["count"]), key=lambda w: (-w["tokens_saved"], -w["count"]))
        if present:
            lines.append("New tokens in the held-out text, most tokens saved first (bits: mean per occurrence whose "
                         "original pieces tile the same characters):")
        for w in present:
            bits = "" if w["bits_original"] is None else f", bits original {w['bits_original']:.2f}" + "".join(
                f", {m} {v['bits']:.2f}" for m, v in w["methods"].items())
            lines.append(f"  {w['word']!r}: {w['count']} occurrences, {w['tokens_saved']} tokens saved{bits}")
        # Words the held-out text lacks are named once, not a line each (a few thousand words would bury the rest).
        absent = [w["word"] for w in self.words if not w["count"]]
        if absent:
            shown = ", ".join(repr(word) for word in absent[:SUMMARY_ABSENT_SHOWN])
            more = f" and {len(absent) - SUMMARY_ABSENT_SHOWN:,} more (report.json lists every word)" \
                if len(absent) > SUMMARY_ABSENT_SHOWN else ""
            lines.append(f"Not in the held-out text ({len(absent):,} new tokens): {shown}{more}")
        return "\n".join(lines)

    def save(self, folder: str | Path) -> Path:
        """report.json, report.txt and report.html (the figure, plotly's JS embedded: works offline)."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        figure = report_figure(self).to_html(full_html=False, include_plotlyjs=True)
        page = (f"<!doctype html><html><head><meta charset='utf-8'><title>Domain report</title></head><body>"
                f"<pre>{html.escape(self.summary())}</pre>{figure}</body></html>")
        for name, text in (("report.json", json.dumps(self.to_json(), indent=2, ensure_ascii=False)),
                           ("report.txt", self.summary() + "\n"), ("report.html", page)):
            with atomic_path(out / name) as tmp:
                tmp.write_text(text, encoding="utf-8")
        return out


def report_figure(report: DomainReport):
    """Tokens saved (%) against bits per byte: the original at 0 %, one point per method in its colour."""
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0.0], y=[report.original["bits_per_byte"]], mode="markers+text", name="original",
                             text=["original"], textposition="top center", marker={"color": "#111827", "size": 12}))
    for m in report.methods.values():
        fig.add_trace(go.Scatter(
            x=[report.tokens_saved_pct], y=[m["bits_per_byte"]], mode="markers", name=m["label"],
            marker={"color": m["colour"], "size": 12},
            hovertemplate=f"{m['label']}: %{{y:.4f}} bits/byte ({m['bits_per_byte_change_pct']:+.2f}%)<extra></extra>"))
    fig.update_layout(template="plotly_white", height=420, xaxis_title="tokens saved on held-out text (%)",
                      yaxis_title="bits per byte (lower is better)", margin={"l": 20, "r": 20, "t": 30, "b": 20})
    return fig


def _method_meta(name: str) -> dict:
    from ..methods import REGISTRY

    method = REGISTRY.get(name)
    return {"label": method.label if method else name, "colour": method.colour if method else "#6b7280"}


def domain_report(lm: LoadedModel, documents: Sequence[str],
                  rows_by_method: Sequence[NewTokenRows] | Mapping[str, NewTokenRows], *,
                  max_length: int | None = None, token_budget: int = DEFAULT_TOKEN_BUDGET,
                  mixed_precision: str = "auto", cancel: threading.Event | None = None,
                  progress: Progress | None = None) -> DomainReport:
    """Score held-out `documents` with the original model and tokenizer and with each method's rows and the
    extended tokenizer (every method shares the same words). Windows of `max_length` tokens (default: the
    model's positions, at most 2048), batches of at most `token_budget` padded tokens. A set `cancel`
    raises Cancelled between batches; `progress(fraction, message)` is called after each."""
    started = time.perf_counter()
    docs = check_documents(documents)
    methods = check_rows(lm, rows_by_method)
    settings = check_settings(lm, max_length, token_budget, mixed_precision)
    words = list(methods[0].words)
    extended, vocab = extended_vocab(lm, words)
    original = encode_documents(lm.tokenizer, docs, cancel)
    adapted = encode_documents(extended, docs, cancel)
    if not any(original["ids"]):
        raise ValueError("The documents hold no tokens for this tokenizer; give documents with text.")
    windows = sum(math.ceil(len(ids) / settings["max_length"]) for ids in original["ids"])
    windows += len(methods) * sum(math.ceil(len(ids) / settings["max_length"]) for ids in adapted["ids"])
    done = {"windows": 0, "label": "original"}

    def tick(count: int, where: str) -> None:
        done["windows"] += count
        if progress is not None:
            progress(done["windows"] / max(windows, 1), f"{done['label']}: {where}")

    run = {**settings, "cancel": cancel}
    nll_original, _ = token_nll(lm, vocab, original["ids"], None, run, tick)
    nll_methods: dict[str, list[np.ndarray]] = {}
    for rows in methods:
        done["label"] = rows.method
        nll_methods[rows.method], _ = token_nll(lm, vocab, adapted["ids"], device_rows(lm, rows, words), run,
                                                 tick)
    n_bytes = sum(len(d.encode("utf-8")) for d in docs)
    tokens_original, tokens_adapted = sum(map(len, original["ids"])), sum(map(len, adapted["ids"]))
    base = _scores(float(sum(n.sum() for n in nll_original)), tokens_original, n_bytes)
    scored = {}
    for name, nll in nll_methods.items():
        s = _scores(float(sum(n.sum() for n in nll)), tokens_adapted, n_bytes)
        scored[name] = {**_method_meta(name), **s,
                        "bits_per_byte_change_pct": _change_pct(s["bits_per_byte"], base["bits_per_byte"])}
    if original["offsets"] is not None:  # the parts need character offsets (fast tokenizers)
        labels = [part_labels(doc, ids, offsets, set(vocab.new_ids),
                              rolling_windows(ids, settings["start_token_id"], settings["max_length"]))
                  for doc, ids, offsets in zip(docs, adapted["ids"], adapted["offsets"])]
        base["parts"] = bits_by_part(docs, nll_original, original["offsets"], labels)
        for name, nll in nll_methods.items():
            scored[name]["parts"] = bits_by_part(docs, nll, adapted["offsets"], labels)
    tallies = _tally_words(words, vocab, original, adapted, nll_original, nll_methods)
    return DomainReport(model=lm.describe(), settings=settings, documents=len(docs), bytes=n_bytes,
                        tokens_original=tokens_original, tokens_adapted=tokens_adapted, original=base,
                        methods=scored, words=[_word_json(lm, w, t) for w, t in zip(words, tallies)],
                        seconds=time.perf_counter() - started)
