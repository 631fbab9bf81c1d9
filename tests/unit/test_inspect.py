"""The context inspector's core: per-snippet losses that add up, user-written snippets, one word re-trained alone."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import TEXTS, ZUGSPITZE_TEXTS, make_tiny, snippets_for
from tokdist_core.api import TokenDistillation
from tokdist_core.contexts import WordContexts
from tokdist_core.evaluation.inspection import MAX_USER_SNIPPET_CHARS, apply_snippet_edits, with_word_history
from tokdist_core.evaluation.metrics import heldout_metrics, heldout_snippet_losses
from tokdist_core.foundations.rows import NewTokenRows
from tokdist_core.foundations.vocab import check_new_word
from tokdist_core.training import DistillationConfig

MORE = ZUGSPITZE_TEXTS[:4]
WORDS = [" Krankenwagen", " Schadenfreude", " Zugspitze"]
METHODS = ["subword_mean", "tokdist", "tokdist_antp"]
CONFIG = DistillationConfig(optimizer="adam", epochs=2, batch_size=2, learning_rate=5e-2)


def _split_sets(tokenizer, words=WORDS):
    """Per word: all but the last snippet train, the last is held out."""
    splits = [check_new_word(tokenizer, w) for w in words]
    train, heldout = [], []
    for w in words:
        mine = snippets_for(tokenizer, w, TEXTS + MORE)
        train += mine[:-1]
        heldout.append(mine[-1])
    return splits, train, heldout


@pytest.mark.parametrize("kind", ["tied", "untied", "gemma"])
def test_per_snippet_losses_average_to_the_trainers_and_heldout_metrics(tokenizer, kind):
    lm = make_tiny(tokenizer, kind)
    td = TokenDistillation(lm)
    splits, train, heldout = _split_sets(tokenizer)
    # One step holding every training snippet of a word: its loss is the loss over all of them under the
    # starting rows, which are exactly the subword-mean method's rows.
    config = DistillationConfig(optimizer="adam", epochs=1, batch_size=16, learning_rate=5e-2)
    out = td.train(splits, train, METHODS, config, heldout=heldout)
    first = out.histories["tokdist"][0].word_losses
    metrics = heldout_metrics(lm, list(out.rows.values()), heldout)
    for split in splits:
        w = split.word
        mine_train = [s for s in train if s.word == w]
        mine_held = [s for s in heldout if s.word == w]
        report = td.snippet_losses(list(out.rows.values()), w, mine_train, mine_held, config)
        assert report.methods == METHODS
        assert [s.label for s in report.part("train")] == [f"train {i + 1}" for i in range(len(mine_train))]
        assert report.mean("subword_mean", "train") == pytest.approx(first[w], rel=1e-5)
        for method in METHODS:
            assert report.mean(method, "heldout") == pytest.approx(metrics[method][w]["hidden_mse"], rel=1e-5)
            assert sum(s.positions for s in report.part("heldout")) == metrics[method][w]["positions"]
        # Each training snippet's cached loss is the full-forward loss of what training read of it (the
        # definition), snippet by snippet; its positions are those.
        read = config.trained_part(mine_train)
        assert [s.positions for s in report.part("train")] == [len(s.suffix) + 1 for s in read]
        assert [s.snippet for s in report.part("train")] == mine_train  # shown whole
        full = heldout_snippet_losses(lm, list(out.rows.values()), read)
        for method in METHODS:
            cached = [s.losses[method] for s in report.part("train")]
            assert cached == pytest.approx([v for v, _ in full[method]], rel=1e-4, abs=1e-7)
            assert [s.positions for s in report.part("train")] == [n for _, n in full[method]]


def test_worst_first_sorts_by_the_chosen_method_and_labels_both_sets(tiny, tokenizer):
    td = TokenDistillation(tiny)
    splits, train, heldout = _split_sets(tokenizer, [" Zugspitze"])
    rows = td.train(splits, train, ["subword_mean", "tokdist"], CONFIG).rows
    report = td.snippet_losses(list(rows.values()), " Zugspitze", train, heldout, CONFIG)
    worst = report.worst_first("tokdist")
    values = [s.losses["tokdist"] for s in worst]
    assert values == sorted(values, reverse=True) and len(worst) == len(train) + len(heldout)
    assert {s.label for s in worst} == {"train 1", "train 2", "train 3", "held-out 1"}
    assert report.to_json()["means"]["tokdist"]["heldout"] == report.part("heldout")[0].losses["tokdist"]
    with pytest.raises(ValueError, match="was not inspected"):
        report.worst_first("ntp")
    with pytest.raises(ValueError, match="other words"):
        td.snippet_losses(list(rows.values()), " Zugspitze", train + snippets_for(tokenizer, " Krankenwagen"), [])
    with pytest.raises(ValueError, match="train the word first"):
        td.snippet_losses(list(rows.values()), " Krankenwagen", snippets_for(tokenizer, " Krankenwagen"), [])


def test_a_user_snippet_becomes_a_snippet_of_the_word(tiny, tokenizer):
    td = TokenDistillation(tiny)
    split = check_new_word(tokenizer, " Krankenwagen")
    text = "After the storm, a Krankenwagen, two fire engines and the police came to the village."
    snip = td.snippet_from_text(" Krankenwagen", text)
    assert snip.word == " Krankenwagen" and snip.word_ids == split.ids and snip.source == "user"
    assert tokenizer.decode(list(snip.token_ids)) == text
    assert tokenizer.decode(list(snip.prefix)) == "After the storm, a"
    # The first whole-word occurrence is the word; one inside a longer word is skipped.
    twice = "Two Krankenwagens waited; then the Krankenwagen left and another Krankenwagen came."
    first = td.snippet_from_text(split, twice)
    assert tokenizer.decode(list(first.prefix)) == "Two Krankenwagens waited; then the"
    # Line breaks are ordinary text; decomposed umlauts are composed first (NFC), as words are.
    assert td.snippet_from_text(split, "Sirens.\nThe Krankenwagen arrived.").start > 0
    umlaut = check_new_word(tokenizer, " Krankenwägen")
    assert td.snippet_from_text(umlaut, "Zwei Krankenwa\u0308gen standen da.").word_ids == umlaut.ids
    # The word-initial form goes at the start of the text (or after punctuation).
    initial = check_new_word(tokenizer, "Krankenwagen")
    assert td.snippet_from_text(initial, "Krankenwagen is German for ambulance.").start == 0


@pytest.mark.parametrize(("text", "message"), [
    ("", "empty"),
    ("   \n ", "empty"),
    ("The ambulance came at once and took him to the hospital.", "does not contain the word"),
    ("The krankenwagen came at once.", "another capitalisation"),
    ("Two Krankenwagens came at once.", "inside a longer word or not after a space"),
    ("Krankenwagen came at once.", "after a space in mid-sentence"),
    ("A Krankenwagen\u200b came at once.", r"invisible characters \(U\+200B\)"),
    ("A Krankenwagen came\x07 at once.", r"U\+0007"),
    ("A Krankenwagen", "too short"),
    ("A Krankenwagen came. " + "Then more came. " * 400, "characters long"),
])
def test_a_user_snippet_without_the_word_is_refused_with_a_reason(tiny, text, message):
    with pytest.raises(ValueError, match=message):
        TokenDistillation(tiny).snippet_from_text(" Krankenwagen", text)


def test_user_snippet_limits(tiny):
    td = TokenDistillation(tiny)
    long_text = "A Krankenwagen came. " + "Then more came. " * 100
    assert len(long_text) < MAX_USER_SNIPPET_CHARS
    with pytest.raises(ValueError, match="tokens long; the limit is 64"):
        td.snippet_from_text(" Krankenwagen", long_text, max_tokens=64)
    with pytest.raises(ValueError, match="must be text"):
        td.snippet_from_text(" Krankenwagen", None)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["tied", "untied"])
def test_retraining_one_word_alone_gives_the_row_it_gets_beside_others(tokenizer, kind):
    td = TokenDistillation(make_tiny(tokenizer, kind))
    splits, train, heldout = _split_sets(tokenizer)
    together = td.train(splits, train, METHODS, CONFIG).rows
    target = splits[1]
    alone = td.retrain_word(target, [s for s in train if s.word == target.word], METHODS, CONFIG,
                            heldout=[s for s in heldout if s.word == target.word])
    assert alone.metrics is not None and set(alone.metrics["tokdist"]) == {target.word}
    for method in METHODS:
        assert alone.rows[method].words == [target.word]
        merged = together[method].with_word_rows(alone.rows[method])
        assert merged is not together[method] and merged.words == WORDS
        torch.testing.assert_close(merged.input_rows, together[method].input_rows, rtol=1e-4, atol=1e-5)
        if kind == "untied":
            torch.testing.assert_close(merged.output_rows, together[method].output_rows, rtol=1e-4, atol=1e-5)
    assert (together["tokdist"].input_rows - together["subword_mean"].input_rows).abs().max() > 1e-3
    with pytest.raises(ValueError, match="other words"):
        td.retrain_word(target, train, METHODS, CONFIG)
    with pytest.raises(ValueError, match="no training snippets"):
        td.retrain_word(target, [], METHODS, CONFIG)


def test_adding_a_snippet_and_retraining_changes_only_that_words_rows(tiny, tokenizer):
    td = TokenDistillation(tiny)
    before_weights = tiny.model.get_input_embeddings().weight.detach().clone()
    splits, train, heldout = _split_sets(tokenizer)
    rows = td.train(splits, train, METHODS, CONFIG).rows
    word = " Schadenfreude"
    mine = [s for s in train if s.word == word]
    added = td.snippet_from_text(word, "Some Schadenfreude is natural, the psychologist said, but it fades fast.")
    grown = mine + [added]
    assert len(grown) == len(mine) + 1
    report = td.snippet_losses([rows["tokdist"]], word, grown, [], CONFIG)
    assert report.part("train")[-1].snippet is added  # shown whole; scored over what training reads of it
    assert report.part("train")[-1].positions == min(len(added.suffix), CONFIG.tokens_after) + 1

    new = td.retrain_word(splits[1], grown, METHODS, CONFIG).rows
    for method in METHODS:
        merged = rows[method].with_word_rows(new[method])
        i = merged.index(word)
        for other in (w for w in WORDS if w != word):
            j = merged.index(other)
            assert torch.equal(merged.input_rows[j], rows[method].input_rows[j])  # bit-identical
        if method == "subword_mean":
            assert torch.equal(merged.input_rows[i], rows[method].input_rows[i])  # a baseline reads no snippets
        else:
            assert (merged.input_rows[i] - rows[method].input_rows[i]).abs().max() > 1e-4, method
        assert merged.input_rows.data_ptr() != rows[method].input_rows.data_ptr()
    assert torch.equal(tiny.model.get_input_embeddings().weight, before_weights)


def test_a_retrained_words_loss_curve_replaces_its_curve_in_the_runs_history(tiny, tokenizer):
    td = TokenDistillation(tiny)
    splits, train, _ = _split_sets(tokenizer)
    together = td.train(splits, train, ["tokdist"], CONFIG).histories["tokdist"]
    word = " Zugspitze"  # 3 training snippets (2 batches per epoch) where the others have 2 (1 batch)
    mine = [s for s in train if s.word == word]

    def curve(history, w):
        return {r.step: r.word_losses[w] for r in history if w in r.word_losses}

    # Re-trained alone on the same snippets, the word has the same loss at the same steps (words are independent).
    same = td.retrain_word(splits[2], mine, ["tokdist"], CONFIG).histories["tokdist"]
    merged = with_word_history(together, same, word)
    assert [r.step for r in merged] == [r.step for r in together]
    for w in WORDS:
        assert curve(merged, w) == pytest.approx(curve(together, w), rel=1e-4, abs=1e-6), w
    # With two snippets more it trains for more steps: its curve is the new one, the others' stay bit-identical.
    grown = mine + [td.snippet_from_text(word, text) for text in (
        "We took the train to the Zugspitze and walked down in the rain.",
        "Her first climb of the Zugspitze took eleven hours and a lot of chocolate.")]
    longer = td.retrain_word(splits[2], grown, ["tokdist"], CONFIG).histories["tokdist"]
    merged = with_word_history(together, longer, word)
    assert curve(merged, word) == curve(longer, word) and max(curve(longer, word)) > max(curve(together, word))
    for w in WORDS[:2]:
        assert curve(merged, w) == curve(together, w)
    for record in merged:
        assert record.loss == pytest.approx(sum(record.word_losses.values()) / len(record.word_losses))
    assert [r.step for r in merged] == sorted({r.step for r in together} | {r.step for r in longer})


def test_with_word_rows_refuses_rows_that_do_not_fit():
    rows = NewTokenRows("tokdist", [" a", " b"], torch.zeros(2, 4))
    with pytest.raises(ValueError, match="cannot replace rows of"):
        rows.with_word_rows(NewTokenRows("ntp", [" a"], torch.ones(1, 4)))
    with pytest.raises(ValueError, match="not among"):
        rows.with_word_rows(NewTokenRows("tokdist", [" c"], torch.ones(1, 4)))
    with pytest.raises(ValueError, match="tied vs untied"):
        rows.with_word_rows(NewTokenRows("tokdist", [" a"], torch.ones(1, 4), torch.ones(1, 4)))
    with pytest.raises(ValueError, match="row width"):
        rows.with_word_rows(NewTokenRows("tokdist", [" a"], torch.ones(1, 5)))
    merged = rows.with_word_rows(NewTokenRows("tokdist", [" b"], torch.ones(1, 4)))
    assert merged.input_rows.tolist() == [[0.0] * 4, [1.0] * 4] and rows.input_rows.sum() == 0


def test_snippet_edits_are_replayed_in_order_and_bad_ones_are_refused(tiny, tokenizer):
    td = TokenDistillation(tiny)
    splits, train, heldout = _split_sets(tokenizer)
    word = " Zugspitze"
    mine = [s for s in train if s.word == word]
    contexts = {s.word: WordContexts(s.word, [t for t in train if t.word == s.word],
                                     [h for h in heldout if h.word == s.word], {"test": 4 if s.word == word else 3})
                for s in splits}
    added = "We took the train to the Zugspitze and walked down in the rain."
    replaced = "Her first climb of the Zugspitze took eleven hours and a lot of chocolate."
    out = apply_snippet_edits(tokenizer, contexts, splits, [("Zugspitze", None, added), (word, 0, replaced)])
    got = out[word].train
    assert [td.lm.tokenizer.decode(s.token_ids) for s in (got[0], got[-1])] == [replaced, added]
    assert got[1:-1] == mine[1:] and out[word].heldout == contexts[word].heldout
    assert out[word].sources == {"test": 3, "user": 2}
    assert contexts[word].train == mine and out[" Krankenwagen"] is contexts[" Krankenwagen"]  # nothing else changed
    for edits, message in (([("Kant", None, added)], "not one of the new words"),
                           ([(word, 3, added)], "has 3 training snippets"),
                           ([(word, True, added)], "does not name one"),
                           ([(word, None, "No mountain here at all, just a sentence.")], "snippet edit 1"),
                           ([(word, None)], "expected \\(word, index or None, text\\)")):
        with pytest.raises(ValueError, match=message):
            apply_snippet_edits(tokenizer, contexts, splits, edits)
