"""New tokens on slots the vocabulary already has, so no tensor grows (`reuse_slots`, `--reuse-slots`).

* ``reserved``: the tokenizer's reserved special tokens (Llama 3's ``<|reserved_special_token_N|>``, Gemma's
  ``<unusedN>``, ``<|reserved_N|>``, BERT's ``[unusedN]``), in id order.
* ``untrained``: rows that text never reaches, so training never moved them: padding rows past the tokenizer's
  last id, then byte-level tokens of bytes that never occur in UTF-8 (0xC0, 0xC1, 0xF5-0xFF), then vocabulary
  entries the tokenizer does not produce for their own text (the Magikarp paper's "unreachable" tokens). We
  do not use the paper's embedding indicators: they also flag rare tokens that text does reach, and
  overwriting one of those would change how the model reads every text holding it.

A reused slot keeps its id: the word becomes the slot's token (a reserved token renamed; a vocabulary entry
replaced, with the merges that could only build the old entry) and the vocabulary size and every tensor shape
stay as they are, so quantized files and serving setups sized to the base keep working.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

REUSE_SLOTS = ("none", "reserved", "untrained")
RESERVED = re.compile(r"<\|reserved_special_token_\d+\|>|<unused\d+>|<\|reserved_\d+\|>|\[unused\d+\]")
NEVER_IN_UTF8 = (0xC0, 0xC1, *range(0xF5, 0x100))
PADDING = "padding row"


class SlotError(ValueError):
    """No (or too few) slots of the asked kind; the message says how many there are and why."""


@dataclass(frozen=True)
class Slot:
    id: int
    was: str  # what held it: the reserved token, the unreachable entry's text, "byte 0xFF" or "padding row"


def check_reuse_slots(kind: object) -> str:
    if kind not in REUSE_SLOTS:
        raise ValueError(f"reuse_slots must be one of {', '.join(REUSE_SLOTS)}, got {kind!r}")
    return str(kind)


def free_slots(tokenizer: PreTrainedTokenizerBase, matrix_rows: int, kind: str) -> list[Slot]:
    """The slots of `kind` this tokenizer and an embedding matrix of `matrix_rows` rows have, in the order
    new words take them ([] for "none")."""
    if check_reuse_slots(kind) == "none":
        return []
    if kind == "reserved":
        # A reserved token the tokenizer uses (Llama 3 fine-tunes pad with one) is not free.
        named = {tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.unk_token_id}
        return [Slot(i, t.content) for i, t in sorted(tokenizer.added_tokens_decoder.items())
                if RESERVED.fullmatch(t.content) and i not in named]
    return [Slot(i, PADDING) for i in range(len(tokenizer), matrix_rows)] + _unreachable(tokenizer)


def _unreachable(tokenizer: PreTrainedTokenizerBase) -> list[Slot]:
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    data = json.loads(tokenizer.backend_tokenizer.to_str())
    if data["model"]["type"] != "BPE":
        return []
    vocab: dict[str, int] = data["model"]["vocab"]
    special = set(tokenizer.all_special_ids) | set(tokenizer.added_tokens_decoder)
    slots: list[Slot] = []
    if "ByteLevel" in json.dumps(data.get("pre_tokenizer")):
        chars = bytes_to_unicode()
        slots += [Slot(vocab[chars[b]], f"byte 0x{b:02X}") for b in NEVER_IN_UTF8 if chars[b] in vocab]
    taken = {s.id for s in slots}
    ids = sorted(i for i in vocab.values() if i not in special and i not in taken)
    texts = tokenizer.batch_decode([[i] for i in ids], clean_up_tokenization_spaces=False)
    encoded = tokenizer(texts, add_special_tokens=False, return_attention_mask=False)["input_ids"]
    # Partial UTF-8 bytes decode to U+FFFD alone but are reached inside longer characters.
    slots += [Slot(i, text) for i, text, enc in zip(ids, texts, encoded, strict=True)
              if enc != [i] and "\ufffd" not in text]
    return slots


def take_slots(tokenizer: PreTrainedTokenizerBase, matrix_rows: int, kind: str, n_words: int) -> list[Slot]:
    """The first `n_words` free slots, or SlotError saying how many there are."""
    slots = free_slots(tokenizer, matrix_rows, kind)
    if not slots:
        what = ("no reserved special tokens (such as Llama 3's <|reserved_special_token_N|> or Gemma's <unusedN>)"
                if kind == "reserved" else
                "no untrained slots (no padding rows, no tokens of bytes that never occur in UTF-8, no "
                "unreachable vocabulary entries)")
        raise SlotError(f"--reuse-slots {kind}: this model has {what}; use --reuse-slots none to grow the "
                        "vocabulary instead")
    if n_words > len(slots):
        raise SlotError(f"--reuse-slots {kind}: {n_words} new tokens but only {len(slots)} free {kind} slots; "
                        "add fewer words or use --reuse-slots none")
    return slots[:n_words]


def tokenizer_on_slots(tokenizer: PreTrainedTokenizerBase, words: Sequence[str], slots: Sequence[Slot],
                       descriptions: Mapping[str, str] | None = None) -> PreTrainedTokenizerBase:
    """A new tokenizer in which each word is the token of its slot's id; `tokenizer` is not changed.

    Edits the saved files (tokenizer.json and tokenizer_config.json) and loads them again: transformers has no
    call that renames a token. Words in `descriptions` become special tokens, as added_tokens makes them."""
    from transformers import AutoTokenizer

    descriptions = descriptions or {}
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        files = Path(tmp) / "tokenizer.json", Path(tmp) / "tokenizer_config.json"
        data, config = (json.loads(f.read_text(encoding="utf-8")) for f in files)
        added = {entry["id"]: entry for entry in data["added_tokens"]}
        vocab: dict[str, int] = data["model"]["vocab"]
        by_id = {i: text for text, i in vocab.items()}
        renamed, replaced = set(), set()
        for word, slot in zip(words, slots, strict=True):
            description = descriptions.get(word)
            entry = {"id": slot.id, "content": word, "single_word": False, "normalized": False, "rstrip": False,
                     "lstrip": bool(description and description.startswith(" ")), "special": description is not None}
            if slot.id in added:  # a reserved token: renamed
                renamed.add(added[slot.id]["content"])
                added[slot.id].update(entry)
                continue
            if slot.id in by_id:  # an entry text never reaches: replaced
                replaced.add(by_id[slot.id])
                del vocab[by_id[slot.id]]
            vocab[word] = slot.id  # the added token below resolves to this id; BPE itself never builds it
            data["added_tokens"].append(entry)
        # Merges that use or build a replaced entry never fire (text never reaches it), and must not name it.
        data["model"]["merges"] = [m for m in data["model"]["merges"]
                                   if not replaced & set(m if isinstance(m, list) else m.split(" "))]
        for key in ("extra_special_tokens", "additional_special_tokens"):
            if isinstance(config.get(key), list):
                config[key] = [t for t in config[key] if (t if isinstance(t, str) else t.get("content")) not in renamed]
        for f, content in zip(files, (data, config), strict=True):
            f.write_text(json.dumps(content, ensure_ascii=False), encoding="utf-8")
        return AutoTokenizer.from_pretrained(tmp)


def add_tokens_on_slots(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, words: list[str],
                        input_rows: torch.Tensor, output_rows: torch.Tensor | None, kind: str,
                        descriptions: Mapping[str, str] | None = None) -> tuple[PreTrainedTokenizerBase, list[Slot]]:
    """Put `words` on free slots of `kind` in a (copied) model: its rows written there, no tensor resized.
    -> (the new tokenizer, the slot each word took)."""
    from .vocab import write_new_rows

    slots = take_slots(tokenizer, model.get_input_embeddings().weight.shape[0], kind, len(words))
    new_tokenizer = tokenizer_on_slots(tokenizer, words, slots, descriptions)
    write_new_rows(model, [s.id for s in slots], input_rows, output_rows)
    return new_tokenizer, slots
