"""Special tokens from a description: the original model reads the description where the new token stands."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import AutoTokenizer

from tests.helpers import cli_probe, error_line, make_tiny
from tokdist_core.contexts.mining import mine_snippets
from tokdist_core.export import load_rows, reproduce_snippet, save_rows
from tokdist_core.foundations.limits import MAX_DESCRIPTION_CHARS
from tokdist_core.foundations.rows import NewTokenRows
from tokdist_core.foundations.vocab import WordError, add_tokens_to_model, parse_descriptions, prepare_splits

CAPITAL = {"<|capital|>": "the capital city of France"}


def test_a_described_token_reads_as_its_description_and_is_one_special_token_after_save(tokenizer, tmp_path):
    (split,), rejected = prepare_splits(tokenizer, [], describe=["<|capital|>=the capital city of France"])
    assert rejected == [] and split.word == "<|capital|>"
    assert split.description == split.surface == " the capital city of France"  # read mid-sentence
    assert split.ids == tuple(tokenizer.encode(" the capital city of France", add_special_tokens=False))
    lm = make_tiny(tokenizer)
    model, tok = copy.deepcopy(lm.model), copy.deepcopy(tokenizer)
    row = torch.randn(1, lm.hidden_size)
    (new_id,) = add_tokens_to_model(model, tok, [split.word], row, descriptions={split.word: split.description})
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    (added,) = [t for t in reloaded.added_tokens_decoder.values() if t.content == "<|capital|>"]
    assert added.special and added.lstrip and not added.normalized
    for t in (tok, reloaded):
        ids = t("I visited <|capital|> last week", add_special_tokens=False).input_ids
        # The token takes the space before it, as the description was read with its leading space.
        assert t.convert_ids_to_tokens(ids) == ["I", "Ġvisited", t.convert_ids_to_tokens(new_id), "Ġlast", "Ġweek"]
        assert ids[2] == new_id and t.decode(ids, skip_special_tokens=True) == "I visited last week"
        assert t("x<|capital|>y", add_special_tokens=False).input_ids[1] == new_id  # never split
    assert torch.equal(model.get_input_embeddings().weight[new_id], row[0])
    # The base tokenizer (and its vocabulary) is not touched.
    assert "<|capital|>" not in tokenizer.get_vocab()


@pytest.mark.parametrize(("entries", "message"), [
    (["<|cite|>="], "description of '<|cite|>' is empty"),
    (["<|cite|>=   "], "description of '<|cite|>' is empty"),
    ([f"<|cite|>={'a' * (MAX_DESCRIPTION_CHARS + 1)}"], f"the limit is {MAX_DESCRIPTION_CHARS}"),
    (["<|cite|>=a line\nbreak"], "control or invisible characters"),
    (["=a citation"], "Empty special token"),
    (["<|my cite|>=a citation"], "contains whitespace"),
    (["<|ci\u200bte|>=a citation"], "U\\+200B"),
    (["<|cite|> a citation"], "TOKEN=TEXT"),
    (["<|cite|>=a citation", "<|cite|>=another"], "described twice"),
    (["<|endoftext|>=the end of a text"], "already exists in this tokenizer \\(id 0\\)"),
    (["hello=a greeting"], "already exists in this tokenizer"),
])
def test_bad_descriptions_are_refused_with_a_reason(tokenizer, entries, message):
    with pytest.raises(WordError, match=message):
        prepare_splits(tokenizer, ["Krankenwagen"], describe=entries)


def test_a_token_given_as_word_and_as_described_token_is_refused(tokenizer):
    with pytest.raises(WordError, match="both a word and a described special token"):
        prepare_splits(tokenizer, ["Foo"], mid_sentence=False, describe={"Foo": "a placeholder name"})
    assert parse_descriptions([("<|a=b|>", "x = y")]) == {"<|a=b|>": "x = y"}  # pairs keep '=' in both


def test_mining_finds_the_description_and_labels_the_snippet_with_the_token(tokenizer):
    (split,), _ = prepare_splits(tokenizer, [], describe=CAPITAL)
    docs = [("a", "Last spring we took the train to the capital city of France and stayed a week."),
            ("b", "Paris is the capital city of Frances neighbours envy."),  # no word boundary: not counted
            ("c", "They said the capital city of France was crowded in August, as it is every year.")]
    snippets = mine_snippets(docs, tokenizer, [split], snippet_len=16)["<|capital|>"]
    assert sorted(s.source for s in snippets) == ["a", "c"]
    for s in snippets:
        assert s.word == "<|capital|>" and s.word_ids == split.ids


def test_rows_and_the_reproducing_code_keep_the_descriptions(tokenizer, tmp_path):
    lm = make_tiny(tokenizer)
    rows = NewTokenRows("tokdist", [" Krankenwagen", "<|capital|>"], torch.randn(2, lm.hidden_size),
                        descriptions={"<|capital|>": " the capital city of France"})
    assert load_rows(save_rows(rows, lm, tmp_path)).descriptions == rows.descriptions
    assert rows.select(["<|capital|>"]).descriptions == rows.descriptions
    assert rows.select([" Krankenwagen"]).descriptions == {}
    code = reproduce_snippet("smollm2-135m", rows.words, "tokdist", {"seed": 0}, descriptions=rows.descriptions)
    assert "new_tokens=['Krankenwagen']," in code
    assert "describe={'<|capital|>': 'the capital city of France'}," in code
    compile(code, "reproduce.py", "exec")


def test_cli_refuses_a_bad_description_before_loading_the_model(tmp_path):
    for args, message in [
        (["--describe", "<|cite|>="], "description of '<|cite|>' is empty"),
        (["--describe", "<|cite|>"], "TOKEN=TEXT"),
        (["--describe", str(tmp_path / "missing.json")], "not a readable UTF-8 JSON file"),
    ]:
        proc = cli_probe("distill", *args, "--out", str(tmp_path / "o"))
        assert message in error_line(proc)
    listed = tmp_path / "tokens.json"
    listed.write_text('["<|cite|>"]', encoding="utf-8")
    assert "one JSON object" in error_line(cli_probe("compare", "--describe", str(listed)))
    assert not (tmp_path / "o").exists()
