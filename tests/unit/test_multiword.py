"""Multi-word tokens (" New York", " Prime Minister"): valid words, mined with word boundaries, added so that
they fire in running text, kept through save/reload; and no word cap in the library."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import AddedToken, AutoModelForCausalLM, AutoTokenizer

from tests.helpers import RUNNING_TEXT, make_tiny
from tokdist_core.contexts.mining import count_occurrences, mine_snippets
from tokdist_core.foundations.vocab import (
    WordError,
    add_tokens_to_model,
    check_new_word,
    normalize_word,
    parse_word_list,
    split_words,
)

# -- 1. the word rules ------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, expected", [
    ("New York", " New York"), ("  Prime Minister ", " Prime Minister"), ("Osama bin Laden", " Osama bin Laden"),
])
def test_phrases_of_two_or_three_words_are_valid_tokens(raw, expected):
    assert normalize_word(raw) == expected
    assert normalize_word(raw, mid_sentence=False) == expected[1:]


@pytest.mark.parametrize("raw, match", [
    ("New\tYork", "whitespace other than single spaces"), ("New\nYork", "whitespace other than single spaces"),
    ("New\u00a0York", "U\\+00A0"), ("New  York", "two spaces in a row"),
    ("one two three four", "has 4 words; .* at most 3"), ("New ĠYork", "whitespace marker"),
    ("▁New York", "whitespace marker"),
])
def test_phrases_with_other_whitespace_or_too_many_words_are_refused(raw, match):
    with pytest.raises(WordError, match=match):
        normalize_word(raw)


def test_word_list_splits_phrases_on_commas_and_lines_and_reports_bad_ones():
    words, rejected = parse_word_list("New York, Prime Minister\nLos  Angeles,New York")
    assert words == [" New York", " Prime Minister"]
    assert [reason.split(";")[0] for _raw, reason in rejected] == [
        "'Los  Angeles' has two spaces in a row", "duplicate of an earlier entry"]


# -- 2. no cap in the library; a caller's own limit is reported ------------------------------------

def test_word_list_has_no_cap_and_a_given_limit_reports_the_rest():
    entries = [f"Zorblax{i}" for i in range(3000)]
    words, rejected = parse_word_list(entries)
    assert len(words) == 3000 and rejected == []
    words, rejected = parse_word_list(entries, limit=20)
    assert words == [" " + e for e in entries[:20]]
    assert len(rejected) == 2980 and rejected[0] == (" Zorblax20", "over the limit of 20 words")
    with pytest.raises(ValueError, match="limit must be a positive integer"):
        parse_word_list(entries, limit=0)


def test_batched_splits_match_check_new_word(tokenizer):
    words = [" New York", " Krankenwagen", " the", " Schopenhauer", " <|endoftext|>"]
    batched = split_words(tokenizer, words)
    for word, got in zip(words, batched, strict=True):
        try:
            expected = check_new_word(tokenizer, word)
        except WordError as exc:
            assert isinstance(got, WordError) and str(got) == str(exc)
        else:
            assert got == expected


# -- 3. mining: word boundaries at both ends of a phrase -------------------------------------------

BOUNDARY_TEXTS = [
    ("ok", "He moved to New York last year and liked it."),
    ("ok", "The flight to New York, they said, was late."),
    ("ok", "Many visitors love New York's museums in the winter."),
    ("longer word", "She writes for a New Yorker column every week."),
    ("double space", "They flew to New  York on Monday morning."),
    ("glued to a word", "The sign said ANew York in big letters."),
    ("after a bracket", "A city (New York) was named in the report."),
]


def test_mining_a_phrase_keeps_only_whole_phrase_occurrences(tokenizer):
    split = check_new_word(tokenizer, " New York")
    docs = [(kind, text) for kind, text in BOUNDARY_TEXTS]
    snippets = mine_snippets(docs, tokenizer, [split], snippet_len=8)[" New York"]
    assert sorted(s.source for s in snippets) == ["ok", "ok", "ok"]
    for s in snippets:
        assert s.word_ids == split.ids
    assert count_occurrences(docs, [" New York", "New York"]) == [3, 1]  # the bracket: word-initial form


# -- 4. adding: the token fires in running text, and why it is not single_word ---------------------

def _encode(tok, text: str) -> list[str]:
    return tok.convert_ids_to_tokens(tok(text, add_special_tokens=False).input_ids)


def test_single_word_added_tokens_never_fire_mid_sentence_so_we_do_not_use_them(tokenizer):
    # HF tokenizers refuse a single_word match whose preceding character is a word character; for a
    # leading-space token that is the last letter of the previous word, so " New York" would never be used.
    strict = copy.deepcopy(tokenizer)
    strict.add_tokens([AddedToken(" New York", normalized=False, special=False, single_word=True)])
    assert " New York" not in _encode(strict, RUNNING_TEXT)


def test_added_phrase_is_one_token_in_running_text_after_save_and_reload(tokenizer, tmp_path):
    lm = make_tiny(tokenizer)
    model, tok = copy.deepcopy(lm.model), copy.deepcopy(tokenizer)
    rows = torch.randn(2, lm.hidden_size)
    ids = add_tokens_to_model(model, tok, [" New York", " Prime Minister"], rows)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    for t in (tok, reloaded):
        assert _encode(t, RUNNING_TEXT) == ["He", "Ġmoved", "Ġto", " New York", "Ġlast", "Ġyear"]
        assert t(" Prime Minister said", add_special_tokens=False).input_ids[0] == ids[1]
        assert t.decode(t(RUNNING_TEXT, add_special_tokens=False).input_ids) == RUNNING_TEXT
        # The known price of not using single_word: the token also fires inside a longer word (mining and
        # discovery never count those occurrences).
        assert _encode(t, "a New Yorker")[1:] == [" New York", "er"]
        # At the start of a text there is no leading space: the pieces are used, as for any added word.
        assert " New York" not in _encode(t, "New York is big")
    assert not any(t.single_word for t in reloaded.added_tokens_decoder.values() if t.content == " New York")
    again = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert torch.equal(again.get_input_embeddings().weight[ids], rows)


# -- 5. end to end on the embedded model ------------------------------------------------------------

