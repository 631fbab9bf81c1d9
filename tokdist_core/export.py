"""Export: full model + tokenizer, the new rows alone (safetensors + JSON), and a reproducible snippet."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .models import LoadedModel
from .rows import NewTokenRows

ROWS_FILE = "new_rows.safetensors"
META_FILE = "new_rows.json"
PARTIAL_SUFFIX = ".partial"  # temporaries are named ".<final name>.<random>.partial" next to their final path
UNZIPPED_PREFIX = ".unzipped-"  # the temporary model folder export_model_zip zips and removes


@contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `final`; on success it is renamed onto `final` (os.replace, atomic).

    The temporary name starts with a dot and ends with PARTIAL_SUFFIX, so a process killed mid-write leaves
    only a hidden `.partial` file, never a truncated file under the final name. On an exception it is removed.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    while True:  # created here ("x": never someone else's file), with the usual permissions (umask), unlike mkstemp
        tmp_path = final.with_name(f".{final.name}.{secrets.token_hex(4)}{PARTIAL_SUFFIX}")
        try:
            tmp_path.open("xb").close()
            break
        except FileExistsError:
            continue
    try:
        yield tmp_path
        os.replace(tmp_path, final)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


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
    with atomic_path(out / ROWS_FILE) as tmp:
        save_file(tensors, str(tmp))
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
                        output_rows=tensors.get("output_rows"))
    if lm is not None and rows.input_rows.shape[1] != lm.hidden_size:
        raise ValueError(f"rows have hidden size {rows.input_rows.shape[1]} but the model has {lm.hidden_size}")
    if lm is not None and not lm.tied and rows.output_rows is None:
        rows.output_rows = torch.zeros_like(rows.input_rows)
    return rows


def zip_folder(folder: str | Path, zip_path: str | Path, compresslevel: int = 1) -> Path:
    """Zip a folder, written under a temporary name and renamed (see atomic_path).

    Level 1: weights barely compress, and level 6 is ~7x slower on a 540 MB model.
    """
    folder, zip_path = Path(folder), Path(zip_path)
    with atomic_path(zip_path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED,
                                                       compresslevel=compresslevel) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder))
    return zip_path


def export_model_zip(model, tokenizer, zip_path: str | Path, compresslevel: int = 1) -> Path:
    """save_pretrained model + tokenizer into a temporary folder next to `zip_path`, zip it, remove the folder.

    The folder (UNZIPPED_PREFIX...) is removed in `finally`, the zip appears under its name only when complete;
    a process killed meanwhile leaves only dot-named temporaries (the app's start-up clean-up removes them).
    """
    zip_path = Path(zip_path)
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=UNZIPPED_PREFIX, dir=zip_path.parent))
    try:
        save_model(model, tokenizer, folder)
        return zip_folder(folder, zip_path, compresslevel=compresslevel)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def estimate_model_bytes(model, tokenizer, new_rows: int = 0) -> int:
    """Upper estimate of what save_pretrained writes (and so of the zip): parameter bytes in the saved dtype.

    Counts each stored tensor once (tied weights share storage), plus `new_rows` embedding rows (and LM-head
    rows when untied) that adding words may append, plus the tokenizer files. Level-1 deflate makes the
    zip somewhat smaller (about half for the dequantized bundled SmolLM2), never meaningfully larger.
    """
    seen: set[tuple[int, int]] = set()
    total = 0
    for tensor in model.state_dict().values():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
        if key in seen:
            continue
        seen.add(key)
        total += tensor.numel() * tensor.element_size()
    if new_rows:
        emb = model.get_input_embeddings().weight
        heads = 1 if model.get_output_embeddings() is None or model.get_output_embeddings().weight is emb else 2
        total += heads * new_rows * emb.shape[1] * emb.element_size()
    return total + _tokenizer_bytes(tokenizer) + 64 * 1024  # config.json, generation_config.json, zip headers


def _tokenizer_bytes(tokenizer) -> int:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:  # fast tokenizers: tokenizer.json (saved pretty-printed) dominates
        return len(backend.to_str(pretty=True).encode("utf-8"))
    with tempfile.TemporaryDirectory(prefix=".tokdist-tok-") as tmp:
        tokenizer.save_pretrained(tmp)
        return sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file())


def reproduce_snippet(model: str, words: list[str], method: str, config: dict, data: str | list[str] = "auto",
                      snippet_len: int = 50, snippets_per_token: int = 25, mid_sentence: bool = True,
                      output_policy: str = "ntp", snippet_edits: Sequence[Sequence] = (),
                      unapplied_edits: Sequence[Sequence] = (), heldout_per_token: int = 0,
                      contexts_seed: int | None = None) -> str:
    """Python code that redoes a run with the library: every setting that shapes the rows is written out.

    `data` is written as given (a list stays a list); `words` are the trained forms, and `mid_sentence`
    says whether they carry the leading space. `snippet_edits` (word, index or None, text) are the snippets
    a person wrote that the rows learned from; `unapplied_edits` the ones written after the rows were trained,
    named in a comment only, since the rows do not reflect them. `heldout_per_token` and `contexts_seed`
    are the mining's, written when they decide which snippets trained.
    """
    keys = ("epochs", "batch_size", "learning_rate", "target_layer", "losses", "ntp_weight", "init", "schedule",
            "warmup", "seed", "mixed_precision")
    # A tuple field may come back from JSON or a session as a list; it is written as the tuple the config holds.
    values = {k: tuple(config[k]) if isinstance(config[k], list) else config[k] for k in keys if k in config}
    args = ", ".join(f"{k}={v!r}" for k, v in values.items())
    edits = ""
    if snippet_edits:
        lines = "".join(f"    {(w, i, t)!r},\n" for w, i, t in snippet_edits)
        edits = ("# Snippets you wrote, in the order you wrote them: (word, training snippet replaced (0-based) or\n"
                 f"# None to add one, text).\nsnippet_edits = [\n{lines}]\n")
    if unapplied_edits:
        later = sorted({w.strip() for w, _, _ in unapplied_edits})
        edits += (f"# Not in these rows: {len(unapplied_edits)} snippet(s) of {', '.join(map(repr, later))} written "
                  "after it was last trained.\n")
    return (
        "from tokdist_core import DistillationConfig, TokenDistillation\n\n"
        f"{edits}"
        f"td = TokenDistillation(model={model!r})\n"
        "model, tokenizer = td.run(\n"
        f"    new_tokens={[w.strip() for w in words]!r},\n"
        f"    data={data!r},\n"
        f"    method={method!r}, mid_sentence={mid_sentence!r}, output_policy={output_policy!r},\n"
        f"    training=DistillationConfig({args}),\n"
        f"    snippet_len={snippet_len}, snippets_per_token={snippets_per_token},\n"
        + (f"    heldout_per_token={heldout_per_token!r},\n" if heldout_per_token else "")
        + (f"    contexts_seed={contexts_seed!r},\n" if contexts_seed not in (None, config.get("seed")) else "")
        + ("    snippet_edits=snippet_edits,\n" if snippet_edits else "") +
        "    out_path='tokdist-model', save=True,\n"
        ")\n"
        f"print(tokenizer.tokenize({words[0] if words else ' word'!r}))\n"
    )
