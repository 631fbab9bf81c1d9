"""The domain report's input checks: held-out documents, every method's rows and the scoring settings.

Each raises ValueError with what to change, before any scoring starts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from ..foundations.forward import autocast_dtype
from ..foundations.models import LoadedModel
from ..foundations.rows import NewTokenRows

DEFAULT_MAX_LENGTH = 2048  # window length when the model allows it (lm-eval's HF default)


def check_documents(documents: Sequence[str]) -> list[str]:
    if isinstance(documents, str):
        raise ValueError("documents must be a list of texts, not one string: wrap a single text as [text].")
    try:
        docs = list(documents)
    except TypeError:
        raise ValueError(f"documents must be a list of texts, got {type(documents).__name__}.") from None
    if not docs:
        raise ValueError("No documents given: the report needs held-out text the training never saw "
                         "(e.g. DocumentSplit(0.05).select(texts, 'heldout')).")
    not_text = [f"#{i} ({type(d).__name__})" for i, d in enumerate(docs) if not isinstance(d, str)]
    if not_text:
        raise ValueError(f"{len(not_text)} document(s) are not text: {', '.join(not_text[:5])}.")
    empty = [str(i) for i, d in enumerate(docs) if not d]
    if empty:
        raise ValueError(f"{len(empty)} document(s) are empty (index {', '.join(empty[:5])}); remove them.")
    return docs


def check_one(lm: LoadedModel, rows: NewTokenRows, words: list[str]) -> None:
    if len(rows.words) != len(words) or set(rows.words) != set(words):
        raise ValueError(f"every method must have the same words: {rows.method!r} has {rows.words[:5]}, "
                         f"the first method has {words[:5]}.")
    if rows.input_rows.shape[1] != lm.hidden_size:
        raise ValueError(f"{rows.method}: rows of width {rows.input_rows.shape[1]}, the model's hidden size is "
                         f"{lm.hidden_size}: these rows belong to another model.")
    if rows.output_rows is None and not lm.tied:
        raise ValueError(f"{rows.method}: the model has an untied LM head, so the rows need output_rows.")
    if rows.output_rows is not None and rows.output_rows.shape != rows.input_rows.shape:
        raise ValueError(f"{rows.method}: output rows {tuple(rows.output_rows.shape)} do not match input rows "
                         f"{tuple(rows.input_rows.shape)}.")
    if not bool(torch.isfinite(rows.input_rows).all()) or not bool(torch.isfinite(rows.output_matrix()).all()):
        raise ValueError(f"{rows.method}: the rows hold NaN or infinite values.")


def check_rows(lm: LoadedModel, rows: Sequence[NewTokenRows] | Mapping[str, NewTokenRows]) -> list[NewTokenRows]:
    methods = list(rows.values()) if isinstance(rows, Mapping) else list(rows)
    if not methods:
        raise ValueError("No rows given: pass at least one method's NewTokenRows.")
    wrong = [type(r).__name__ for r in methods if not isinstance(r, NewTokenRows)]
    if wrong:
        raise ValueError(f"rows must be NewTokenRows, got {', '.join(wrong)}.")
    names = [r.method for r in methods]
    if len(set(names)) != len(names):
        raise ValueError(f"each method may appear once, got {names}.")
    words = list(methods[0].words)
    if not words or len(set(words)) != len(words) or not all(isinstance(w, str) and w for w in words):
        raise ValueError(f"the rows need distinct, non-empty words, got {words[:10]}.")
    for r in methods:
        check_one(lm, r, words)
    return methods


def positive_int(name: str, value: object, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{name} must be an integer of at least {least}, got {value!r}.")
    return value


def check_settings(lm: LoadedModel, max_length: int | None, token_budget: int, mixed_precision: str) -> dict:
    limit = getattr(lm.model.config.get_text_config(), "max_position_embeddings", None) or DEFAULT_MAX_LENGTH
    max_length = positive_int("max_length", min(DEFAULT_MAX_LENGTH, limit) if max_length is None else max_length, 2)
    if max_length > limit:
        raise ValueError(f"max_length={max_length} is over the model's {limit} positions.")
    positive_int("token_budget", token_budget, max_length)
    autocast_dtype(lm.device, mixed_precision)  # ValueError naming the choices
    tok = lm.tokenizer
    start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    if start is None:
        raise ValueError("the tokenizer has neither a BOS nor an EOS token to start each document from.")
    if lm.model.get_output_embeddings() is None:
        raise ValueError("the model has no LM head (get_output_embeddings() is None): not a causal LM.")
    return {"max_length": max_length, "token_budget": token_budget, "mixed_precision": mixed_precision,
            "start_token_id": int(start), "start_token": tok.convert_ids_to_tokens(int(start))}
