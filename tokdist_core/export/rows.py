"""The `rows` format: the new rows alone (safetensors) and a JSON naming their words and base model."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..foundations.files import EXPORT_MARKER, atomic_path
from ..foundations.models import LoadedModel
from ..foundations.rows import NewTokenRows

ROWS_FILE = "new_rows.safetensors"
META_FILE = EXPORT_MARKER


def save_rows(rows: NewTokenRows, lm: LoadedModel, out_dir: str | Path, extra: dict | None = None) -> Path:
    """Write the new rows as safetensors plus a JSON describing which words and base model they belong to."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {"input_rows": rows.input_rows.detach().float().cpu().contiguous()}
    if rows.output_rows is not None:
        tensors["output_rows"] = rows.output_rows.detach().float().cpu().contiguous()
    with atomic_path(out / ROWS_FILE) as tmp:
        save_file(tensors, str(tmp))
    meta = {
        "format": "tokdist-new-rows/1",
        "method": rows.method,
        "words": rows.words,
        **({"descriptions": rows.descriptions} if rows.descriptions else {}),
        "base_model": lm.source,
        "hidden_size": lm.hidden_size,
        "tokenizer_vocab": len(lm.tokenizer),
        "tied_embeddings": lm.tied,
        **(extra or {}),
    }
    with atomic_path(out / META_FILE) as tmp:
        tmp.write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")
    return out


def load_rows(path: str | Path, lm: LoadedModel | None = None) -> NewTokenRows:
    """Read rows written by save_rows; with `lm`, check they fit that base model."""
    folder = Path(path)
    if folder.is_file():
        folder = folder.parent
    meta_path, rows_path = folder / META_FILE, folder / ROWS_FILE
    if not meta_path.is_file() or not rows_path.is_file():
        raise FileNotFoundError(f"{folder} does not hold {ROWS_FILE} and {META_FILE}")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    tensors = load_file(str(rows_path))
    rows = NewTokenRows(method=meta["method"], words=list(meta["words"]), input_rows=tensors["input_rows"],
                        output_rows=tensors.get("output_rows"), descriptions=dict(meta.get("descriptions", {})))
    if lm is not None and rows.input_rows.shape[1] != lm.hidden_size:
        raise ValueError(f"rows have hidden size {rows.input_rows.shape[1]} but the model has {lm.hidden_size}")
    if lm is not None and not lm.tied and rows.output_rows is None:
        rows.output_rows = torch.zeros_like(rows.input_rows)
    return rows
