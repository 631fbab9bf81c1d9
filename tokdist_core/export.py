"""Export: full model + tokenizer, the new rows alone (safetensors + JSON), and a reproducible snippet."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .models import LoadedModel
from .rows import NewTokenRows

ROWS_FILE = "new_rows.safetensors"
META_FILE = "new_rows.json"


def save_model(model, tokenizer, out_path: str | Path) -> Path:
    """save_pretrained for both, loadable with AutoModelForCausalLM / AutoTokenizer."""
    out = Path(out_path)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def save_rows(rows: NewTokenRows, lm: LoadedModel, out_dir: str | Path, extra: dict | None = None) -> Path:
    """Write the new rows as safetensors plus a JSON describing which words and base model they belong to."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {"input_rows": rows.input_rows.detach().float().cpu().contiguous()}
    if rows.output_rows is not None:
        tensors["output_rows"] = rows.output_rows.detach().float().cpu().contiguous()
    save_file(tensors, str(out / ROWS_FILE))
    meta = {
        "format": "tokdist-new-rows/1",
        "method": rows.method,
        "words": rows.words,
        "base_model": lm.source,
        "hidden_size": lm.hidden_size,
        "tokenizer_vocab": len(lm.tokenizer),
        "tied_embeddings": lm.tied,
        **(extra or {}),
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")
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
                        output_rows=tensors.get("output_rows"))
    if lm is not None and rows.input_rows.shape[1] != lm.hidden_size:
        raise ValueError(f"rows have hidden size {rows.input_rows.shape[1]} but the model has {lm.hidden_size}")
    if lm is not None and not lm.tied and rows.output_rows is None:
        rows.output_rows = torch.zeros_like(rows.input_rows)
    return rows


def zip_folder(folder: str | Path, zip_path: str | Path, compresslevel: int = 1) -> Path:
    """Zip a folder. Level 1: weights barely compress, and level 6 is ~7x slower on a 540 MB model."""
    folder, zip_path = Path(folder), Path(zip_path)
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED, compresslevel=compresslevel) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder))
    return zip_path


def reproduce_snippet(model: str, words: list[str], method: str, config: dict, data: str | list[str] = "auto",
                      snippet_len: int = 50, snippets_per_token: int = 25, mid_sentence: bool = True,
                      output_policy: str = "ntp") -> str:
    """Python code that redoes a run with the library."""
    training = {k: config[k] for k in ("epochs", "batch_size", "learning_rate", "target_layer", "seed") if k in config}
    args = ", ".join(f"{k}={v!r}" for k, v in training.items())
    return (
        "from tokdist_core.api import TokenDistillation\n"
        "from tokdist_core.distill import DistillationConfig\n\n"
        f"td = TokenDistillation(model={model!r})\n"
        "model, tokenizer = td.run(\n"
        f"    new_tokens={[w.strip() for w in words]!r},\n"
        f"    data={data!r},\n"
        f"    method={method!r}, mid_sentence={mid_sentence!r}, output_policy={output_policy!r},\n"
        f"    training=DistillationConfig({args}),\n"
        f"    snippet_len={snippet_len}, snippets_per_token={snippets_per_token},\n"
        "    out_path='tokdist-model', save=True,\n"
        ")\n"
        f"print(tokenizer.tokenize({words[0] if words else ' word'!r}))\n"
    )
