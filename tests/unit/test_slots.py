"""--reuse-slots: new tokens on reserved special tokens or on rows no text reaches; no tensor grows."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

from tests.helpers import TEXTS, ZUGSPITZE_TEXTS, cli_probe, error_line, make_tiny, run_cli
from tokdist_core.api import TokenDistillation
from tokdist_core.foundations.slots import PADDING, SlotError, free_slots, take_slots, tokenizer_on_slots

RESERVED = [f"<|reserved_special_token_{i}|>" for i in range(4)]
CAPITAL = {"<|capital|>": "the capital city of France"}
WITHOUT_THE_WORDS = [t for t in TEXTS + ZUGSPITZE_TEXTS if "Krankenwagen" not in t and "Zugspitze" not in t] + [
    "Ünïcödé ✓ 漢字 🙂 and ÿ or À, <|reserved_special_token_3|> and the capital city of France."]


@pytest.fixture(scope="module")
def reserved_tokenizer(tokenizer):
    """The bundled tokenizer with Llama 3's reserved special tokens appended (ids 49152-49155)."""
    tok = copy.deepcopy(tokenizer)
    tok.add_special_tokens({"additional_special_tokens": RESERVED})
    return tok


def _rows(td, words, describe=None):
    splits, skipped = td.prepare_words(words, describe=describe)
    assert not skipped
    return td.train(splits, [], ["subword_mean"]).rows["subword_mean"]


def test_reserved_slots_take_the_new_tokens_and_no_tensor_grows(reserved_tokenizer, tmp_path):
    lm = make_tiny(reserved_tokenizer, "untied")
    td = TokenDistillation(lm)
    base_shapes = {k: v.shape for k, v in lm.model.state_dict().items()}
    rows = _rows(td, ["Krankenwagen"], CAPITAL)
    out = td.save(rows, tmp_path / "out", formats="hf,peft", reuse_slots="reserved")

    tok = AutoTokenizer.from_pretrained(out)
    assert len(tok) == len(reserved_tokenizer)
    ids = tok("A Krankenwagen drove to <|capital|> at night", add_special_tokens=False).input_ids
    assert ids[1] == 49152 and ids[4] == 49153 and tok.convert_ids_to_tokens(49152) == " Krankenwagen"
    # The reused names are gone; the other reserved tokens stay special tokens.
    assert "<|reserved_special_token_0|>" not in tok.get_vocab()
    assert set(RESERVED[2:]) <= set(tok.all_special_tokens) and RESERVED[0] not in tok.all_special_tokens
    (capital,) = [t for t in tok.added_tokens_decoder.values() if t.content == "<|capital|>"]
    assert capital.special and capital.lstrip
    # Text without the new words tokenizes exactly as before.
    for text in WITHOUT_THE_WORDS:
        assert tok(text).input_ids == reserved_tokenizer(text).input_ids

    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.vocab_size == lm.model.config.vocab_size
    assert {k: v.shape for k, v in model.state_dict().items()} == base_shapes
    assert torch.equal(model.get_input_embeddings().weight[[49152, 49153]], rows.input_rows)
    assert torch.equal(model.get_output_embeddings().weight[[49152, 49153]], rows.output_rows)
    meta = json.loads((out / "new_rows.json").read_text())
    assert meta["slots"] == {" Krankenwagen": {"id": 49152, "was": RESERVED[0]},
                             "<|capital|>": {"id": 49153, "was": RESERVED[1]}}
    assert "## Reused slots" in (out / "README.md").read_text()
    # The peft adapter trains exactly those ids, on the base as it is (nothing to resize).
    adapter = json.loads((out / "peft" / "adapter_config.json").read_text())
    assert adapter["token_indices"] == [49152, 49153]
    saved = load_file(str(out / "peft" / "adapter_model.safetensors"))
    assert all(t.shape[0] == 2 for t in saved.values())
    # The shared base is untouched.
    assert len(td.lm.tokenizer) == len(reserved_tokenizer) and RESERVED[0] in td.lm.tokenizer.get_vocab()
    assert {k: v.shape for k, v in td.lm.model.state_dict().items()} == base_shapes


def _byte_level_bpe() -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on a little text: its alphabet holds every byte, even those UTF-8 never uses."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=700, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<|endoftext|>"])
    bpe.train_from_iterator(TEXTS + ZUGSPITZE_TEXTS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


def test_untrained_slots_are_padding_rows_then_bytes_utf8_never_uses(tmp_path):
    tok = _byte_level_bpe()
    lm = make_tiny(tok, "padded")  # 64 padding rows past the tokenizer
    slots = free_slots(tok, lm.model.get_input_embeddings().weight.shape[0], "untrained")
    assert [s.was for s in slots[:64]] == [PADDING] * 64 and slots[0].id == len(tok)
    assert [s.was for s in slots[64:77]] == ["byte 0xC0", "byte 0xC1", *[f"byte 0x{b:02X}" for b in range(0xF5, 0x100)]]
    # Words on byte slots: the ids of bytes no text holds; everything else tokenizes as before.
    on_bytes = tokenizer_on_slots(tok, [" Weltanschauung", " Fernweh"], slots[64:66])
    assert len(on_bytes) == len(tok)
    ids = on_bytes("Their Weltanschauung was pure Fernweh.").input_ids
    assert slots[64].id in ids and slots[65].id in ids
    assert on_bytes.decode(ids) == "Their Weltanschauung was pure Fernweh."
    for text in WITHOUT_THE_WORDS:
        assert on_bytes(text).input_ids == tok(text).input_ids
    # Through the API the padding rows come first: the matrix keeps its shape.
    td = TokenDistillation(lm)
    out = td.save(_rows(td, ["Weltanschauung", "Fernweh"]), tmp_path / "out", reuse_slots="untrained")
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.get_input_embeddings().weight.shape == lm.model.get_input_embeddings().weight.shape
    assert json.loads((out / "new_rows.json").read_text())["slots"] == {
        " Weltanschauung": {"id": len(tok), "was": PADDING}, " Fernweh": {"id": len(tok) + 1, "was": PADDING}}


def test_too_few_or_no_slots_are_refused_before_any_work(tokenizer, reserved_tokenizer, tmp_path):
    with pytest.raises(SlotError, match="no reserved special tokens"):
        take_slots(tokenizer, len(tokenizer), "reserved", 1)
    with pytest.raises(SlotError, match="no untrained slots"):  # the embedded SmolLM2 has none
        take_slots(tokenizer, len(tokenizer), "untrained", 1)
    with pytest.raises(SlotError, match="5 new tokens but only 4 free reserved slots"):
        take_slots(reserved_tokenizer, len(reserved_tokenizer), "reserved", 5)
    padded_with_one = copy.deepcopy(reserved_tokenizer)
    padded_with_one.pad_token = RESERVED[1]  # as Llama 3 fine-tunes do: that slot is in use
    assert [s.was for s in free_slots(padded_with_one, len(padded_with_one), "reserved")] == [
        RESERVED[0], RESERVED[2], RESERVED[3]]
    td = TokenDistillation(make_tiny(reserved_tokenizer))
    rows = _rows(td, ["Krankenwagen"])
    with pytest.raises(ValueError, match="gguf format appends"):
        td.save(rows, tmp_path / "out", formats="hf,gguf", reuse_slots="reserved")
    with pytest.raises(ValueError, match="reuse_slots must be one of none, reserved, untrained"):
        td.save(rows, tmp_path / "out", reuse_slots="spare")
    assert list(tmp_path.iterdir()) == []


def test_cli_refuses_reuse_slots_it_cannot_honour(tmp_path):
    line = error_line(cli_probe("distill", "--words", "Krankenwagen", "--reuse-slots", "reserved", "--formats",
                                "hf,gguf", "--out", str(tmp_path / "o")))
    assert "--formats hf or peft with --reuse-slots" in line
    proc = run_cli("distill", "--words", "Krankenwagen", "--reuse-slots", "reserved", "--data", "generated",
                   "--out", str(tmp_path / "o"))
    assert proc.returncode == 1 and "this model has no reserved special tokens" in proc.stderr
    assert "Traceback" not in proc.stderr and "snippets" not in proc.stderr  # refused before collecting
    assert not (tmp_path / "o").exists()
