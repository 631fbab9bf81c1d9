"""adapt's harm check: what each word costs on a validation slice of the training documents, never the held-out ones;
and a resumed run that adds words."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from safetensors import safe_open

from tests.helpers import TEXTS, ZUGSPITZE_TEXTS, make_tiny
from tokdist_core.api import TokenDistillation
from tokdist_core.contexts.documents import DocumentSplit, iter_split_documents
from tokdist_core.contexts.mining import count_occurrences, documents_with_words
from tokdist_core.evaluation.word_costs import word_costs
from tokdist_core.pipelines.adapt import AdaptSettings, adapt, validation_budget
from tokdist_core.pipelines.scale import ScaleError
from tokdist_core.training import DistillationConfig

WORDS = [" Krankenwagen", " Schadenfreude", " Zugspitze"]
CONFIG = DistillationConfig(epochs=1, batch_size=2)


def _heldout_doc(split: DocumentSplit) -> str:
    """A document the split holds out, with the first word many times (more than the slice ever takes)."""
    for n in range(100):
        text = f"Report {n}: " + " ".join(["the Krankenwagen came back"] * 10) + "."
        if split.is_heldout(text):
            return text
    raise AssertionError("no held-out text found")


@pytest.fixture
def corpus(tmp_path):
    split = DocumentSplit(0.3)
    # Plain documents too: the slice skips them, and the rows' pull elsewhere is weighed over them as well.
    plain = [f"Plain note {n}: the weather was mild and the trains ran on time all week." for n in range(6)]
    docs = [*TEXTS, *ZUGSPITZE_TEXTS, *plain, _heldout_doc(split)]
    path = tmp_path / "corpus.txt"
    path.write_text("\n\n".join(docs), encoding="utf-8")
    return path, split


def test_the_slice_takes_documents_until_each_word_has_enough():
    docs = [("a", "One Krankenwagen."), ("b", "Nothing here."), ("c", "A Krankenwagen and Schadenfreude."),
            ("d", "More Krankenwagen."), ("e", "Then Schadenfreude.")]
    picked = documents_with_words(docs, WORDS[:2], 2, 10**6)
    assert picked.texts == ["One Krankenwagen.", "A Krankenwagen and Schadenfreude.", "Then Schadenfreude."]
    # Every document read counts, the skipped ones too: the text the slice was picked from.
    assert picked.scanned_bytes == sum(len(t) for _, t in docs) and picked.scanned_occurrences == [3, 2]
    assert documents_with_words(docs, WORDS[:2], 2, 10).texts == ["One Krankenwagen."]  # the byte cap
    assert documents_with_words(docs, [], 2, 10**6).texts == []


def test_harm_check_reads_only_training_documents(tokenizer, corpus, tmp_path):
    path, split = corpus
    td = TokenDistillation(make_tiny(tokenizer, "tied"))
    settings = AdaptSettings(data=[str(path)], methods=("subword_mean", "tokdist"), snippets_per_token=2,
                             snippet_len=16, heldout_fraction=split.fraction, export=False, keep_harmful=True)
    result = adapt(td, WORDS, settings, CONFIG, tmp_path / "out", show_progress=False)
    check = result.harm_check
    assert check["method"] == "tokdist" and check["kept"] and [c["word"] for c in check["costs"]] == WORDS
    train = [t for _, t in iter_split_documents([str(path)], split, "train")]
    everything = [t for _, t in iter_split_documents([str(path)], split, "train")] + \
                 [t for _, t in iter_split_documents([str(path)], split, "heldout")]
    in_train = count_occurrences((("", t) for t in train), WORDS)
    # Each word has at most 4 occurrences in the training part, so the slice holds all of them and none of
    # the held-out document's ten.
    assert max(in_train) <= 4 and count_occurrences((("", t) for t in everything), WORDS)[0] >= in_train[0] + 10
    assert [c["occurrences"] for c in check["costs"]] == in_train
    # The costs are word_costs' on those documents with the tokdist rows; keep_harmful kept every word.
    assert settings.validation_bytes is None and check["budget_bytes"] == validation_budget(len(WORDS)) == 150_000
    picked = documents_with_words((("", t) for t in train), WORDS, 4, check["budget_bytes"])
    # No word reaches 4 occurrences, so the slice was picked from all the training text: gains and what the
    # rows take elsewhere are weighed over all of it.
    assert check["scanned_bytes"] == picked.scanned_bytes == sum(len(t.encode("utf-8")) for t in train)
    assert picked.scanned_bytes > check["bytes"] > 0 and picked.scanned_occurrences == in_train
    direct = word_costs(td.lm, picked.texts, result.rows["tokdist"], represents_bytes=picked.scanned_bytes,
                        represents_occurrences=picked.scanned_occurrences)
    assert [round(c.bits_total, 3) for c in direct] == [c["bits_total"] for c in check["costs"]]
    assert [round(c.bits_change, 3) for c in direct] == [c["bits_change"] for c in check["costs"]]
    assert [round(c.bits_elsewhere, 3) for c in direct] == [c["bits_elsewhere"] for c in check["costs"]]
    assert check["harmful"] == [c.word for c in direct if c.harmful]
    assert all(r.words == WORDS for r in result.rows.values())


def test_words_that_help_are_all_kept(tokenizer, corpus, tmp_path):
    path, split = corpus
    td = TokenDistillation(make_tiny(tokenizer, "untied"))
    # On a tiny random model one new token costs fewer bits than its three or four pieces: every word helps.
    settings = AdaptSettings(data=[str(path)], methods=("subword_mean", "tokdist"), snippets_per_token=2,
                             snippet_len=16, heldout_fraction=split.fraction, export=False)
    result = adapt(td, WORDS, settings, CONFIG, tmp_path / "out", show_progress=False)
    costs = result.harm_check["costs"]
    assert all(c["occurrences"] and c["bits_change"] < 0 for c in costs) and result.harm_check["harmful"] == []
    assert all(r.words == WORDS for r in result.rows.values()) and not result.harm_check["kept"]


def test_the_validation_budget_grows_with_the_words():
    # A fixed 150 kB judged 93 of 200 discovered words and kept the other 107 unjudged (docs/method.md).
    assert validation_budget(1) == validation_budget(75) == 150_000
    assert validation_budget(200) == 400_000 and validation_budget(500) == 1_000_000


def test_a_resumed_run_with_more_words_trains_only_the_new_ones(tokenizer, corpus, tmp_path):
    path, split = corpus
    td = TokenDistillation(make_tiny(tokenizer, "tied"))
    settings = AdaptSettings(data=[str(path)], methods=("subword_mean", "tokdist"), snippets_per_token=2,
                             snippet_len=16, heldout_fraction=split.fraction, export=False, keep_harmful=True,
                             prior_correction=False)
    out = tmp_path / "out"
    first = adapt(td, WORDS[:2], settings, CONFIG, out, show_progress=False)
    chunks = sorted((out / "checkpoints").glob("chunk-*.safetensors"))
    more = adapt(td, WORDS, settings, CONFIG, out, resume=True, show_progress=False)
    added = sorted(set((out / "checkpoints").glob("chunk-*.safetensors")) - set(chunks))
    # The first two words' rows come from the checkpoints, bit for bit; one new chunk holds only the third.
    assert more.rows["tokdist"].words == WORDS
    for word in WORDS[:2]:
        assert torch.equal(more.rows["tokdist"].input_rows[WORDS.index(word)],
                           first.rows["tokdist"].input_rows[first.rows["tokdist"].index(word)])
    assert len(added) == 1 and json.loads(safe_open(str(added[0]), "pt").metadata()["words"]) == WORDS[2:]
    # Other settings still refuse to resume.
    with pytest.raises(ScaleError, match="snippet_len"):
        adapt(td, WORDS, replace(settings, snippet_len=20), CONFIG, out, resume=True, show_progress=False)


def test_when_every_word_does_harm_adapt_stops_and_names_the_least_harmful(tokenizer, corpus, tmp_path):
    path, split = corpus
    td = TokenDistillation(make_tiny(tokenizer, "tied"))
    # Steps of 10 per coordinate make rows that take probability everywhere; no prior correction to rein them in.
    settings = AdaptSettings(data=[str(path)], methods=("subword_mean", "tokdist"), snippets_per_token=2,
                             snippet_len=16, heldout_fraction=split.fraction, export=False, prior_correction=False)
    config = DistillationConfig(optimizer="adam", epochs=2, batch_size=2, learning_rate=10.0)
    with pytest.raises(ValueError, match="every word makes the validation text worse") as err:
        adapt(td, WORDS, settings, config, tmp_path / "out", show_progress=False)
    message = str(err.value)
    assert "the least harmful: " in message and "--keep-harmful" in message
    named = [w for w in WORDS if repr(w) in message]
    assert len(named) == len(WORDS) and message.count(" bits (") == len(WORDS)
    assert not (tmp_path / "out" / "adapt.json").exists()  # nothing written as if it had finished
