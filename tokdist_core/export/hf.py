"""The `hf` format: a save_pretrained folder of the model and tokenizer with the words added, or its zip."""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from pathlib import Path

from ..foundations.files import atomic_path

UNZIPPED_PREFIX = ".unzipped-"  # the temporary model folder export_model_zip zips and removes


def save_model(model, tokenizer, out_path: str | Path) -> Path:
    """save_pretrained for both, loadable with AutoModelForCausalLM / AutoTokenizer."""
    out = Path(out_path)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


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


def export_model_zip(model, tokenizer, zip_path: str | Path, compresslevel: int = 1, card: str | None = None) -> Path:
    """save_pretrained model + tokenizer (and `card` as README.md) into a temporary folder next to `zip_path`,
    zip it, remove the folder.

    The folder (UNZIPPED_PREFIX...) is removed in `finally`, the zip appears under its name only when complete;
    a process killed meanwhile leaves only dot-named temporaries (the app's start-up clean-up removes them).
    """
    zip_path = Path(zip_path)
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=UNZIPPED_PREFIX, dir=zip_path.parent))
    try:
        save_model(model, tokenizer, folder)
        if card is not None:
            (folder / "README.md").write_text(card, encoding="utf-8")
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
    return total + tokenizer_bytes(tokenizer) + 64 * 1024  # config.json, generation_config.json, zip headers


def tokenizer_bytes(tokenizer) -> int:
    """About the size of the tokenizer's tokenizer.json as save_pretrained writes it (its largest file)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:  # fast tokenizers: tokenizer.json (saved pretty-printed) dominates
        return len(backend.to_str(pretty=True).encode("utf-8"))
    with tempfile.TemporaryDirectory(prefix=".tokdist-tok-") as tmp:
        tokenizer.save_pretrained(tmp)
        return sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file())
