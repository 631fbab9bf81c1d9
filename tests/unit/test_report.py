"""The domain report (tokens saved, bits per byte on held-out text) and the held-out document split."""

from __future__ import annotations

import copy
import json
import math
import random
import threading

import pytest
import torch
from transformers import AddedToken, AutoTokenizer

from tests.helpers import TEXTS, make_tiny, method_rows
from tokdist_core.contexts.documents import DocumentSplit, iter_documents, iter_split_documents
from tokdist_core.evaluation.parts import PARTS
from tokdist_core.evaluation.report import (
    SUMMARY_ABSENT_SHOWN,
    domain_report,
    report_figure,
    rolling_windows,
)
from tokdist_core.evaluation.word_costs import WordCost, word_costs
from tokdist_core.foundations import models
from tokdist_core.foundations.cancel import Cancelled
from tokdist_core.foundations.files import PARTIAL_SUFFIX
from tokdist_core.foundations.rows import NewTokenRows
from tokdist_core.foundations.vocab import add_tokens_to_model, check_new_word
from tokdist_core.methods import REGISTRY
from tokdist_core.training.prior import mean_final_state

WORDS = [" Krankenwagen", " Schadenfreude"]
LN2 = math.log(2)


def full_forward_nats(model, ids: list[int], start: int) -> torch.Tensor:
    """The definition: one HF forward on [start] + ids, -log p of every token given all before it."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([[start, *ids]])).logits[0, :-1].float()
    return -torch.log_softmax(logits, -1)[torch.arange(len(ids)), torch.tensor(ids)]


def exported(lm, rows: NewTokenRows):
    """What a user would save: copies of the model and tokenizer with the words really added."""
    model, tokenizer = copy.deepcopy(lm.model), copy.deepcopy(lm.tokenizer)
    add_tokens_to_model(model, tokenizer, rows.words, rows.input_rows, rows.output_rows)
    return model, tokenizer


# ---------------------------------------------------------------------------------------------------------
# Rolling windows and exactness against full forwards (tiny models over the real tokenizer)
# ---------------------------------------------------------------------------------------------------------


def test_rolling_windows_follow_lm_eval():
    # lm-eval's loglikelihood_rolling for tokens 0..9, max length 4: each token predicted once.
    assert rolling_windows(list(range(10)), -1, 4) == [([-1, 0, 1, 2], 0, 4), ([3, 4, 5, 6], 4, 4),
                                                      ([5, 6, 7, 8], 8, 2)]
    assert rolling_windows([7, 8], -1, 4) == [([-1, 7], 0, 2)]
    assert rolling_windows([], -1, 4) == []


@pytest.mark.parametrize("kind", ["tied", "untied", "padded", "gemma"])
def test_bits_per_byte_equal_full_forward_definitions(tokenizer, kind):
    lm = make_tiny(tokenizer, kind)
    rows = method_rows(lm, "subword_mean")
    before = lm.model.get_input_embeddings().weight.clone()
    docs = TEXTS[:4]
    report = domain_report(lm, docs, [rows])
    start = tokenizer.bos_token_id
    n_bytes = sum(len(d.encode("utf-8")) for d in docs)
    assert report.bytes == n_bytes and report.documents == 4
    # Original: the plain model on the original tokenization, one window per (short) document.
    nats = [full_forward_nats(lm.model, tokenizer.encode(d, add_special_tokens=False), start) for d in docs]
    expected = float(sum(n.sum() for n in nats)) / LN2 / n_bytes
    assert report.original["bits_per_byte"] == pytest.approx(expected, rel=1e-5)
    # Adapted: the same number as the exported model (words added, rows written) reading the extended tokens.
    model, ext = exported(lm, rows)
    ext_nats = [full_forward_nats(model, ext.encode(d, add_special_tokens=False), start) for d in docs]
    adapted = float(sum(n.sum() for n in ext_nats)) / LN2 / n_bytes
    assert report.methods["subword_mean"]["bits_per_byte"] == pytest.approx(adapted, rel=1e-5)
    # Per word: the new token's bits vs its original pieces' bits (one occurrence in each of documents 0-2).
    split, new_id = check_new_word(tokenizer, WORDS[0]), ext.convert_tokens_to_ids(WORDS[0])
    bits_pieces = bits_new = 0.0
    for d in range(3):
        i = _find(tokenizer.encode(docs[d], add_special_tokens=False), list(split.ids))
        bits_pieces += float(nats[d][i : i + split.n_subwords].sum()) / LN2
        bits_new += float(ext_nats[d][ext.encode(docs[d], add_special_tokens=False).index(new_id)]) / LN2
    word = report.words[0]
    assert (word["word"], word["count"], word["aligned"]) == (WORDS[0], 3, 3)
    assert word["tokens_saved"] == 3 * (split.n_subwords - 1) and word["subwords"] == split.n_subwords
    assert word["bits_original"] == pytest.approx(bits_pieces / 3, rel=1e-5)
    assert word["methods"]["subword_mean"]["bits"] == pytest.approx(bits_new / 3, rel=1e-5)
    assert torch.equal(before, lm.model.get_input_embeddings().weight) and len(lm.tokenizer) == len(tokenizer)


def _find(ids: list[int], pattern: list[int]) -> int:
    return next(i for i in range(len(ids)) if ids[i : i + len(pattern)] == pattern)


def test_windowed_scoring_equals_per_window_forwards_and_batching_changes_nothing(tokenizer):
    lm = make_tiny(tokenizer, "tied")
    rows = method_rows(lm, "subword_mean")
    long_doc = " ".join(TEXTS)
    docs = [long_doc, TEXTS[0], TEXTS[3][:40]]
    ids = tokenizer.encode(long_doc, add_special_tokens=False)
    assert len(ids) > 3 * 16  # several windows
    one = domain_report(lm, [long_doc], [rows], max_length=16)
    start = tokenizer.bos_token_id
    nats = 0.0
    for inputs, first, count in rolling_windows(ids, start, 16):
        assert len(inputs) <= 16
        with torch.no_grad():
            logp = torch.log_softmax(lm.model(input_ids=torch.tensor([inputs])).logits[0].float(), -1)
        targets = torch.tensor(ids[first : first + count])
        nats -= float(logp[torch.arange(len(inputs) - count, len(inputs)), targets].sum())
    assert one.original["nll_nats"] == pytest.approx(nats, rel=1e-5)
    # Short windows see less context than one full window, so the number must differ from the single pass.
    whole = domain_report(lm, [long_doc], [rows], max_length=256)
    assert whole.original["nll_nats"] != pytest.approx(nats, rel=1e-4)
    # Padding, masks and positions: many windows per batch == one window per batch.
    batched = domain_report(lm, docs, [rows], max_length=16, token_budget=4096)
    alone = domain_report(lm, docs, [rows], max_length=16, token_budget=16)
    for key in ("original", "methods"):
        a, b = batched.to_json()[key], alone.to_json()[key]
        if key == "methods":
            a, b = a["subword_mean"], b["subword_mean"]
        assert a["nll_nats"] == pytest.approx(b["nll_nats"], rel=1e-5)


def window_nats(model, ids: list[int], start: int, max_length: int) -> list[tuple[float, int]]:
    """Per token: (its NLL in nats, the doc index of its window's first input), by one forward per window."""
    out = [None] * len(ids)
    for inputs, first, count in rolling_windows(ids, start, max_length):
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=torch.tensor([inputs])).logits[0].float(), -1)
        for k, j in enumerate(range(first, first + count)):
            position = len(inputs) - count + k
            out[j] = (-float(logp[position, ids[j]]), j - position)  # input 0 holds doc token j - position
    return out


@pytest.mark.parametrize("kind", ["tied", "untied"])
def test_parts_add_up_and_match_a_direct_per_position_split(tokenizer, kind):
    lm = make_tiny(tokenizer, kind)
    rows = method_rows(lm, "subword_mean")
    docs = [" ".join(TEXTS[:3]), TEXTS[3], TEXTS[4][:16]]  # several windows, and a document with no new word
    report = domain_report(lm, docs, [rows], max_length=12)
    start = tokenizer.bos_token_id
    original, method = report.original["parts"], report.methods["subword_mean"]["parts"]
    for parts, scores in ((original, report.original), (method, report.methods["subword_mean"])):
        assert set(parts) == set(PARTS)
        assert sum(p["bytes"] for p in parts.values()) == report.bytes
        assert sum(p["bits"] for p in parts.values()) == pytest.approx(scores["nll_nats"] / LN2, rel=1e-6)
    assert {k: v["bytes"] for k, v in original.items()} == {k: v["bytes"] for k, v in method.items()}
    # The new words' bytes: each occurrence's characters (3 x " Krankenwagen", 1 x " Schadenfreude").
    assert method["new_words"]["bytes"] == 3 * len(WORDS[0]) + len(WORDS[1])
    # The adapted model, token by token: a new token, a token with a new token earlier in its window, the rest.
    model, ext = exported(lm, rows)
    new_ids = set(ext.convert_tokens_to_ids(WORDS))
    direct = dict.fromkeys(PARTS, 0.0)
    for doc in docs:
        ids = ext.encode(doc, add_special_tokens=False)
        for j, (nats, first_input) in enumerate(window_nats(model, ids, start, 12)):
            seen = any(ids[k] in new_ids for k in range(max(first_input, 0), j))
            part = "new_words" if ids[j] in new_ids else "after_new" if seen else "elsewhere"
            direct[part] += nats / LN2
    assert direct["after_new"] > 0 and direct["elsewhere"] > 0
    for part in PARTS:
        assert method[part]["bits"] == pytest.approx(direct[part], rel=1e-5), part
    # The original model's new_words part: the bits of the pieces that tile each occurrence.
    pieces = sum(w["bits_original"] * w["aligned"] for w in report.words if w["aligned"])
    assert original["new_words"]["bits"] == pytest.approx(pieces, rel=1e-5)
    assert "Where the bits go" in report.summary() and "after_new" in report.summary()


def test_word_costs_charge_each_word_its_parts_and_match_the_report(tokenizer):
    lm = make_tiny(tokenizer, "tied")
    rows = method_rows(lm, "subword_mean")
    # Byte-level tokens of one character share its span (the emoji, the CJK characters): charged once each.
    docs = [" ".join(TEXTS[:3]), TEXTS[3], TEXTS[4][:16], "A Krankenwagen 🙂 漢字 came."]
    report = domain_report(lm, docs, [rows], max_length=12)
    costs = word_costs(lm, docs, rows, max_length=12)
    assert [c.word for c in costs] == list(rows.words)
    assert [c.occurrences for c in costs] == [w["count"] for w in report.words]
    original, method = report.original["parts"], report.methods["subword_mean"]["parts"]
    charged = ("new_words", "after_new")
    # Every byte of the two parts is charged to exactly one word; elsewhere to none.
    assert sum(c.bits_original for c in costs) == pytest.approx(sum(original[p]["bits"] for p in charged), rel=1e-6)
    assert sum(c.bits_change for c in costs) == pytest.approx(
        sum(method[p]["bits"] - original[p]["bits"] for p in charged), rel=1e-6)
    assert all(c.bits_original > 0 for c in costs)
    # One word alone in a document: its cost is the whole difference on the text from its occurrence on.
    alone = TEXTS[3]
    (single,) = [c for c in word_costs(lm, [alone], rows, max_length=12) if c.occurrences]
    part = domain_report(lm, [alone], [rows], max_length=12)
    assert single.bits_change == pytest.approx(sum(
        part.methods["subword_mean"]["parts"][p]["bits"] - part.original["parts"][p]["bits"] for p in charged), rel=1e-6)


def test_word_costs_charge_each_row_what_it_takes_elsewhere(tokenizer):
    lm = make_tiny(tokenizer, "tied")
    mean = method_rows(lm, "subword_mean")
    # Rows moved along the mean final state take a visible share of the probability (tied: read and predicted).
    state = mean_final_state(lm, [lm.tokenizer(t, add_special_tokens=False).input_ids for t in TEXTS])
    rows = NewTokenRows("subword_mean", list(mean.words), mean.input_rows + torch.tensor([[8.0], [6.0]]) * state)
    # Each document fits one window: a token before a document's first new word is read as the original reads
    # it, and the new rows only take probability there. No new word at all in the last document.
    docs = [TEXTS[0], TEXTS[4], "Nothing new here, only words the tokenizer already knows well."]
    costs = word_costs(lm, docs, rows, max_length=64)
    model, extended = exported(lm, rows)
    new_ids = extended.convert_tokens_to_ids(list(rows.words))
    direct = torch.zeros(len(new_ids), dtype=torch.float64)
    for text in docs:
        ids = extended(text, add_special_tokens=False).input_ids
        first_new = next((j for j, t in enumerate(ids) if t in new_ids), len(ids))
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([[lm.tokenizer.bos_token_id, *ids]])).logits[0, :first_new]
        p = torch.softmax(logits.double(), -1)[:, new_ids]
        total = p.sum(1, keepdim=True)
        direct += (p * -torch.log1p(-total) / total).sum(0) / LN2
    assert [c.bits_elsewhere for c in costs] == pytest.approx(direct.tolist(), rel=1e-4)
    assert all(c.bits_elsewhere > 0.1 for c in costs), costs
    assert [c.bits_total for c in costs] == pytest.approx([c.bits_change + c.bits_elsewhere for c in costs])
    # The verdict weighs both: a word that saves where it occurs can still cost more everywhere else.
    saves_but_takes = WordCost(" x", 3, bits_change=-1.0, bits_original=10.0, bits_elsewhere=2.0)
    assert saves_but_takes.harmful and not WordCost(" x", 3, -3.0, 10.0, 2.0).harmful
    assert not WordCost(" x", 0, 0.0, 0.0, 2.0).harmful  # absent: nothing shows what it would save
    # Judged on a slice that stands for more text, its gain counts once per occurrence there.
    assert WordCost(" x", 3, -1.0, 10.0, 2.0, occurrences_represented=9).bits_total == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="represents_occurrences"):
        word_costs(lm, docs, rows, max_length=64, represents_occurrences=[1])
    # On the text with no new word the charges add up to the whole difference the report measures there.
    plain = docs[2:]
    report = domain_report(lm, plain, [rows], max_length=64)
    difference = report.methods["subword_mean"]["nll_nats"] - report.original["nll_nats"]
    plain_costs = word_costs(lm, plain, rows, max_length=64)
    assert sum(c.bits_elsewhere for c in plain_costs) == pytest.approx(difference / LN2, rel=1e-4)
    # Standing for three times as much text (a slice picked from it), every byte elsewhere costs the same.
    size = len(plain[0].encode("utf-8"))
    tripled = word_costs(lm, plain, rows, max_length=64, represents_bytes=3 * size)
    assert [c.bits_elsewhere for c in tripled] == pytest.approx([3 * c.bits_elsewhere for c in plain_costs])
    assert [c.bits_change for c in tripled] == [c.bits_change for c in plain_costs]


def test_bf16_autocast_path_stays_close_to_fp32(tokenizer):
    lm = make_tiny(tokenizer, "untied")
    rows = [method_rows(lm, "subword_mean")]
    fp32 = domain_report(lm, TEXTS[:3], rows, mixed_precision="no")
    bf16 = domain_report(lm, TEXTS[:3], rows, mixed_precision="bf16")
    for a, b in ((fp32.original, bf16.original), (fp32.methods["subword_mean"], bf16.methods["subword_mean"])):
        assert b["bits_per_byte"] == pytest.approx(a["bits_per_byte"], rel=0.02)


def test_token_counts_equal_an_independent_recount(tokenizer):
    lm = make_tiny(tokenizer, "tied")
    docs = [*TEXTS, "Nothing to see here, just words the tokenizer knows."]
    report = domain_report(lm, docs, [method_rows(lm, "subword_mean")])
    folder = models.dequantized_copy(models.BUNDLED_MODELS["smollm2-135m"])
    plain, extended = AutoTokenizer.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    extended.add_tokens([AddedToken(w, normalized=False, special=False) for w in WORDS])
    original = [plain.encode(d, add_special_tokens=False) for d in docs]
    adapted = [extended.encode(d, add_special_tokens=False) for d in docs]
    assert report.tokens_original == sum(map(len, original))
    assert report.tokens_adapted == sum(map(len, adapted)) < report.tokens_original
    assert report.tokens_saved_pct == pytest.approx(100 * (1 - report.tokens_adapted / report.tokens_original))
    for entry, word in zip(report.words, WORDS):
        new_id = extended.convert_tokens_to_ids(word)
        assert entry["count"] == sum(ids.count(new_id) for ids in adapted) == 3


def test_bad_inputs_are_rejected_before_any_work(tokenizer):
    lm = make_tiny(tokenizer, "untied")
    rows = method_rows(lm, "subword_mean")
    for documents, match in (([], "No documents"), ("one text", "not one string"), ([TEXTS[0], 3], "not text"),
                             ([TEXTS[0], ""], "empty"), (None, "list of texts")):
        with pytest.raises(ValueError, match=match):
            domain_report(lm, documents, [rows])
    tied_rows = NewTokenRows("subword_mean", WORDS, rows.input_rows)
    other_words = NewTokenRows("random", [" Zeitgeist", WORDS[1]], rows.input_rows, rows.output_rows)
    narrow = NewTokenRows("random", WORDS, rows.input_rows[:, :8], rows.output_rows[:, :8])
    nan = NewTokenRows("random", WORDS, rows.input_rows * float("nan"), rows.output_rows)
    for bad, match in (([], "No rows"), ([tied_rows], "untied LM head"), ([rows, other_words], "same words"),
                       ([rows, rows], "once"), ([narrow], "hidden size"), ([nan], "NaN"), (["rows"], "NewTokenRows")):
        with pytest.raises(ValueError, match=match):
            domain_report(lm, TEXTS[:1], bad)
    for kwargs, match in (({"max_length": 1}, "max_length"), ({"max_length": 10_000}, "positions"),
                          ({"token_budget": 4}, "token_budget"), ({"mixed_precision": "fp8"}, "mixed_precision")):
        with pytest.raises(ValueError, match=match):
            domain_report(lm, TEXTS[:1], [rows], **kwargs)
    assert len(lm.tokenizer) == len(tokenizer)


def test_cancel_progress_save_and_figure(tokenizer, tmp_path):
    lm = make_tiny(tokenizer, "tied")
    rows = [method_rows(lm, "random"), method_rows(lm, "subword_mean")]
    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled, match="stopped"):
        domain_report(lm, TEXTS, rows, cancel=stop)
    seen: list[tuple[float, str]] = []
    report = domain_report(lm, TEXTS, {r.method: r for r in rows}, max_length=16, token_budget=32,
                           progress=lambda f, m: seen.append((f, m)))
    assert seen[-1][0] == pytest.approx(1.0) and [f for f, _ in seen] == sorted(f for f, _ in seen)
    assert {m.split(":")[0] for _, m in seen} == {"original", "random", "subword_mean"}
    fig = report_figure(report)
    assert [t.name for t in fig.data] == ["original", REGISTRY["random"].label, REGISTRY["subword_mean"].label]
    assert list(fig.data[0].x) == [0.0] and fig.data[2].marker.color == REGISTRY["subword_mean"].colour
    assert list(fig.data[1].x) == [pytest.approx(report.tokens_saved_pct)]
    out = report.save(tmp_path / "report")
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.json", "report.txt"]
    assert not list(tmp_path.rglob(f"*{PARTIAL_SUFFIX}"))
    saved = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert saved["tokens_saved_pct"] == pytest.approx(report.tokens_saved_pct)
    assert set(saved["methods"]["random"]) >= {"bits_per_byte", "bits_per_byte_change_pct", "label", "colour"}
    assert {"tokens_original", "tokens_adapted", "original", "words", "documents", "bytes"} <= set(saved)
    page = (out / "report.html").read_text(encoding="utf-8")
    # plotly.js itself is inside the page (no <script src=...>), so it opens offline.
    assert "Plotly.newPlot" in page and "<script src" not in page and len(page) > 1_000_000 and "bits per byte" in page
    assert "Krankenwagen" in (out / "report.txt").read_text(encoding="utf-8")


def test_summary_lists_words_by_tokens_saved_and_names_absent_ones_once(tokenizer):
    lm = make_tiny(tokenizer, "tied")
    # Made-up words with several pieces each that no text holds, more than the summary names one by one.
    absent = [f" Zqx{chr(97 + i)}vorlump" for i in range(SUMMARY_ABSENT_SHOWN + 3)]
    words = absent[:2] + [" Schadenfreude", " Krankenwagen"] + absent[2:]
    report = domain_report(lm, TEXTS, [method_rows(lm, "subword_mean", words)], max_length=16, token_budget=32)
    counts = {w["word"]: (w["count"], w["tokens_saved"]) for w in report.words}
    assert list(counts) == words  # report.json keeps every word, in the given order
    present = [w for w in words if counts[w][0]]
    assert present and not set(present) & set(absent)
    lines = report.summary().splitlines()
    listed = [line.split("'")[1] for line in lines if line.startswith("  ' ")]
    assert listed == sorted(present, key=lambda w: (-counts[w][1], -counts[w][0]))
    last = lines[-1]
    assert last.startswith(f"Not in the held-out text ({len(absent)} new tokens): ") and "and 3 more" in last
    assert all(repr(w) in last for w in absent[:SUMMARY_ABSENT_SHOWN]) and repr(absent[-1]) not in last


# ---------------------------------------------------------------------------------------------------------
# On the embedded pretrained model
# ---------------------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------------------
# The held-out document split
# ---------------------------------------------------------------------------------------------------------


def test_document_split_is_deterministic_order_independent_and_complete():
    texts = [f"Document number {i} talks about topic {i % 17}." for i in range(2000)]
    split = DocumentSplit(0.2, seed=3)
    held = list(split.select(texts, "heldout"))
    train = list(split.select(texts, "train"))
    assert 0.17 * len(texts) < len(held) < 0.23 * len(texts)
    assert not set(held) & set(train) and sorted(held + train) == sorted(texts)
    shuffled = texts[::-1]
    random.Random(0).shuffle(shuffled)
    assert set(DocumentSplit(0.2, seed=3).select(shuffled[:500], "heldout")) == set(held) & set(shuffled[:500])
    assert [split.is_heldout(t) for t in texts] == [DocumentSplit(0.2, 3).is_heldout(t) for t in texts]
    assert set(DocumentSplit(0.2, seed=4).select(texts, "heldout")) != set(held)
    pairs = [("a", t) for t in texts[:50]]
    assert [t for _, t in split.select(pairs, "heldout")] == [t for t in texts[:50] if t in set(held)]


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5, float("nan"), True, "0.1", None])
def test_document_split_rejects_bad_fractions(fraction):
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        DocumentSplit(fraction)


def test_iter_split_documents_partitions_a_file_source(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("\n\n".join(f"Paragraph {i} of the corpus." for i in range(300)), encoding="utf-8")
    split = DocumentSplit(0.3, seed=0)
    everything = list(iter_documents(str(path)))
    held = list(iter_split_documents(str(path), split, "heldout"))
    train = list(iter_split_documents(str(path), split, "train"))
    assert sorted(held + train) == sorted(everything) and not set(held) & set(train)
    assert list(iter_split_documents(str(path), split, "heldout", max_documents=5)) == held[:5]
    with pytest.raises(ValueError, match="part must be"):
        iter_split_documents(str(path), split, "test")
    with pytest.raises(TypeError, match="DocumentSplit"):
        iter_split_documents(str(path), 0.3, "train")
