"""Export formats, written together into one folder that is whole or absent (foundations.files.atomic_folder).

- `rows`: the new rows alone (new_rows.safetensors + new_rows.json), always written: the folder's marker;
- `hf`: the save_pretrained model and tokenizer at the folder's root (the default);
- `peft`: `peft/`, a TrainableTokens adapter holding only the new rows (kilobytes), its tokenizer and a card;
- `gguf`: `model.gguf`, the base's GGUF file with the new tokens and rows, for llama.cpp (export.gguf_file).

Every folder (and `peft/`) gets a model card, README.md (export.card).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..foundations.files import atomic_folder
from ..foundations.limits import parse_export_formats
from ..foundations.models import LoadedModel
from ..foundations.rows import NewTokenRows
from ..foundations.slots import PADDING
from .card import model_card
from .gguf_file import base_gguf, save_gguf
from .hf import estimate_model_bytes, save_model, tokenizer_bytes
from .rows import save_rows

PEFT_DIR = "peft"
GGUF_FILE = "model.gguf"
SMALL_FILES_BYTES = 1024**2  # model cards, new_rows.*, reproduce.py, configs: kilobytes each


def check_formats(formats: str | Sequence[str]) -> tuple[str, ...]:
    """('hf', 'peft') from "hf,peft" or a list; an unknown or empty list is a ValueError naming EXPORT_FORMATS."""
    return parse_export_formats(tuple(formats) if not isinstance(formats, str) else formats)


def estimate_export_bytes(lm: LoadedModel, rows: NewTokenRows, formats: str | Sequence[str] = ("hf",)) -> int:
    """An upper bound on the bytes save_formats writes for `formats`: what a server reserves before it starts.

    Refuses what save_formats refuses (an unknown format, gguf for a model without a GGUF base) with the same
    ValueError, before any work. hf: estimate_model_bytes. gguf: the base's GGUF file plus the new rows at 4 bytes
    a value (no tensor type is wider) and their vocabulary entries. peft: the new rows plus the tokenizer's files,
    bounded by twice its tokenizer.json (the other files repeat at most its added tokens)."""
    formats = check_formats(formats)
    gguf_base = base_gguf(lm) if "gguf" in formats else None
    words = len(rows.words)
    row_bytes = words * lm.hidden_size * 4 * (1 if lm.tied else 2)
    text_bytes = sum(len(w.encode("utf-8")) for w in rows.words)
    # What the words add to one saved tokenizer: an added-token entry in tokenizer.json and another in
    # tokenizer_config.json, their text JSON-escaped (at most 6 characters a byte).
    vocab_bytes = 512 * words + 12 * text_bytes
    total = row_bytes + 8 * text_bytes + SMALL_FILES_BYTES  # the rows, new_rows.json, the card, reproduce.py
    if "hf" in formats:
        total += estimate_model_bytes(lm.model, lm.tokenizer, new_rows=words) + vocab_bytes
    if gguf_base is not None:
        total += gguf_base.stat().st_size + row_bytes + text_bytes + 16 * words + 64 * 1024
    if "peft" in formats:
        total += row_bytes + 2 * tokenizer_bytes(lm.tokenizer) + vocab_bytes + SMALL_FILES_BYTES
    return total


def save_formats(lm: LoadedModel, rows: NewTokenRows, out_path: str | Path, model_and_tokenizer: tuple,
                 formats: Sequence[str] = ("hf",), reproduce: str | None = None,
                 card: dict[str, Any] | None = None) -> Path:
    """Write `formats` of one method's rows into `out_path`, replacing an earlier export whole.

    `model_and_tokenizer`: a private copy of the model with the words added (the peft adapter wraps it)."""
    formats = check_formats(formats)
    model, tokenizer = model_and_tokenizer
    slots = slot_table(lm, tokenizer, rows.words)
    if slots and "gguf" in formats:
        raise ValueError("the gguf format appends the new tokens to the base's GGUF vocabulary; new tokens on "
                         "reused slots go to the hf and peft formats")
    if "gguf" in formats:
        base_gguf(lm)  # a model without a supported GGUF base is refused before anything is written
    card = {**(card or {}), "slots": slots}
    with atomic_folder(out_path) as tmp:
        save_rows(rows, lm, tmp, extra={"slots": slots} if slots else None)
        card_kind = "hf" if "hf" in formats else "rows"
        (tmp / "README.md").write_text(model_card(lm, rows, **card, kind=card_kind, formats=formats),
                                       encoding="utf-8")
        if reproduce is not None:
            (tmp / "reproduce.py").write_text(reproduce, encoding="utf-8")
        if "hf" in formats:
            save_model(model, tokenizer, tmp)
        if "gguf" in formats:
            save_gguf(lm, rows, tmp / GGUF_FILE)
        if "peft" in formats:  # last: it wraps the model's embedding modules
            save_peft_adapter(lm, rows, model, tokenizer, tmp / PEFT_DIR, card)
    return Path(out_path)


def save_peft_adapter(lm: LoadedModel, rows: NewTokenRows, model, tokenizer, folder: Path,
                      card: dict[str, Any] | None = None) -> Path:
    """A peft TrainableTokens adapter of the new ids: the distilled input rows (and output rows, untied).

    Load it on the original base resized to the tokenizer: PeftModel.from_pretrained(base, folder). Built on
    `model` (the words already written), so init_weights=True copies exactly the distilled rows."""
    from peft import TrainableTokensConfig, get_peft_model

    new_ids = [int(i) for i in tokenizer.convert_tokens_to_ids(rows.words)]
    modules = [_module_name(model, model.get_input_embeddings())]
    if not lm.tied:
        modules.append(_module_name(model, model.get_output_embeddings()))
    adapter = get_peft_model(model, TrainableTokensConfig(token_indices=new_ids, target_modules=modules))
    # Only the new rows: the resized matrices themselves are the base's (peft would save them whole).
    adapter.save_pretrained(folder, save_embedding_layers=False)
    tokenizer.save_pretrained(folder)
    (folder / "README.md").write_text(model_card(lm, rows, **(card or {}), kind="peft"), encoding="utf-8")
    return folder


def slot_table(lm: LoadedModel, tokenizer, words: Sequence[str]) -> dict[str, dict[str, Any]]:
    """{word: {"id", "was"}} for the words whose ids lie inside the base's embedding matrix: a reused slot (a
    reserved or unreachable token, or a padding row); words that grew the matrix are not listed."""
    base_rows = lm.model.get_input_embeddings().weight.shape[0]
    ids = [int(i) for i in tokenizer.convert_tokens_to_ids(list(words))]
    return {w: {"id": i, "was": lm.tokenizer.convert_ids_to_tokens(i) if i < len(lm.tokenizer) else PADDING}
            for w, i in zip(words, ids, strict=True) if i < base_rows}


def _module_name(model, module) -> str:
    return next(name for name, m in model.named_modules() if m is module).rsplit(".", 1)[-1]
