"""Contexts that need the embedded model: snippets it writes (generation), and collect_contexts mixing mined
and generated snippets, with their checks and cancellation."""

from __future__ import annotations

import json
import re
import threading
import time

import pytest

from tests.helpers import check_snippet
from tokdist_core import contexts
from tokdist_core.contexts import CorpusError, WordContexts
from tokdist_core.foundations.cancel import Cancelled
from tokdist_core.foundations.vocab import check_new_word, split_word

WORD = " Krankenwagen"


@pytest.fixture
def lm(bundled_lm):
    return bundled_lm




def test_generate_snippets_deterministic_and_start_with_word(lm):
    split = check_new_word(lm.tokenizer, WORD)
    a = contexts.generate_snippets(lm, split, n=3, snippet_len=16, seed=0)
    b = contexts.generate_snippets(lm, split, n=3, snippet_len=16, seed=0)
    c = contexts.generate_snippets(lm, split, n=3, snippet_len=16, seed=1)
    assert a == b and a != c and len(a) == 3
    bos = lm.tokenizer.bos_token_id
    for snip in a:
        check_snippet(snip, split, 16)
        assert snip.source == "generated" and snip.start == 1 and snip.token_ids[0] == bos
        assert lm.tokenizer.eos_token_id not in snip.token_ids
        nxt = lm.tokenizer.decode(
            snip.token_ids[snip.start + split.n_subwords : snip.start + split.n_subwords + 1]
        )
        assert nxt and not nxt[0].isalnum()  # the word stays a whole word


def test_collect_contexts_bundled_split_problem_and_determinism(lm):
    splits = [split_word(lm.tokenizer, " Afghanistan"), check_new_word(lm.tokenizer, WORD)]
    events = []
    kwargs = dict(data="bundled", snippets_per_token=6, heldout_per_token=3, snippet_len=40)
    a = contexts.collect_contexts(lm, splits, seed=0, progress=lambda f, m: events.append((f, m)), **kwargs)
    b = contexts.collect_contexts(lm, splits, seed=0, **kwargs)
    c = contexts.collect_contexts(lm, splits, seed=5, **kwargs)
    afg = a[" Afghanistan"]
    assert isinstance(afg, WordContexts) and afg.problem is None and afg.note is None
    assert (len(afg.train), len(afg.heldout)) == (6, 3)
    assert not {s.token_ids for s in afg.train} & {s.token_ids for s in afg.heldout}
    assert sum(afg.sources.values()) == 9 and all(k.startswith("bundled:") for k in afg.sources)
    assert a == b
    assert {s.token_ids for s in c[" Afghanistan"].heldout} != {s.token_ids for s in afg.heldout}
    missing = a[WORD]
    assert missing.train == [] and missing.heldout == [] and missing.sources == {}
    assert missing.problem and "no occurrences" in missing.problem
    assert events and events[-1][0] == 1.0 and all(0.0 <= f <= 1.0 for f, _ in events)


def test_collect_contexts_auto_tops_up_with_generation(lm, tokenizer, bundled_docs):
    # A word the corpus has only once or twice: auto mixes corpus and generated snippets.
    text = " ".join(t for _, t in bundled_docs)
    rare = next(
        w
        for w in ("Wollongong", "Goulburn", "Shellharbour", "Cessnock")
        if 1 <= len(re.findall(rf"(?<= ){w}(?![A-Za-z0-9])", text)) <= 2
    )
    splits = [check_new_word(lm.tokenizer, " " + rare), check_new_word(lm.tokenizer, WORD)]
    out = contexts.collect_contexts(
        lm, splits, data="auto", snippets_per_token=3, heldout_per_token=1, snippet_len=16
    )
    absent = out[WORD]
    assert absent.problem is None and absent.sources == {"generated": 4}
    assert (len(absent.train), len(absent.heldout)) == (3, 1)
    mixed = out[" " + rare]
    assert mixed.problem is None and sum(mixed.sources.values()) == 4
    assert mixed.sources.get("generated", 0) >= 2 and any(k.startswith("bundled:") for k in mixed.sources)
    for ctx, split in zip(out.values(), splits, strict=True):
        for snip in ctx.train + ctx.heldout:
            check_snippet(snip, split, 16)


def test_collect_contexts_from_file_and_shortfall_note(lm, tmp_path):
    path = tmp_path / "few.jsonl"
    lines = [f"Report {i}: a Krankenwagen drove past house number {i} at noon." for i in range(4)]
    path.write_text("\n".join(json.dumps({"text": t}) for t in lines), encoding="utf-8")
    split = check_new_word(lm.tokenizer, WORD)
    out = contexts.collect_contexts(lm, [split], data=str(path), snippets_per_token=10, heldout_per_token=5)
    ctx = out[WORD]
    assert ctx.problem is None and ctx.note and "only 4 of 15" in ctx.note
    assert (len(ctx.train), len(ctx.heldout)) == (3, 1)
    assert ctx.sources == {"file:few.jsonl": 4}


def test_collect_contexts_validation(lm):
    split = check_new_word(lm.tokenizer, WORD)  # 5 subwords
    with pytest.raises(ValueError, match="too short"):
        contexts.collect_contexts(lm, [split], data="bundled", snippet_len=6)
    with pytest.raises(ValueError, match="limit of 1024"):
        contexts.collect_contexts(lm, [split], data="bundled", snippet_len=2048)
    with pytest.raises(ValueError, match="snippets_per_token"):
        contexts.collect_contexts(lm, [split], data="bundled", snippets_per_token=0)
    with pytest.raises(ValueError, match="heldout_per_token"):
        contexts.collect_contexts(lm, [split], data="bundled", heldout_per_token=1001)
    with pytest.raises(ValueError, match="twice"):
        contexts.collect_contexts(lm, [split, split], data="bundled")
    with pytest.raises(ValueError, match="No words"):
        contexts.collect_contexts(lm, [], data="bundled")
    with pytest.raises(CorpusError, match="nope.txt"):
        contexts.collect_contexts(lm, [split], data="nope.txt")


def test_cancelled_generation_stops_and_collect_contexts_keeps_finished_words(lm, tokenizer):


    cancel = threading.Event()
    cancel.set()
    split = check_new_word(tokenizer, WORD)
    start = time.perf_counter()
    with pytest.raises(Cancelled, match="generating"):
        contexts.generate_snippets(lm, split, 32, 64, 0, cancel=cancel)
    assert time.perf_counter() - start < 2.0

    # Stopped mid-way: the first word is done, the next one is marked instead of silently missing.
    splits = [check_new_word(tokenizer, w) for w in (" Zorblaxian", " Quuxotic")]

    def progress(fraction, message):
        if "Quuxotic" in message:  # the second word starts: stop it
            cancel.set()

    cancel.clear()
    found = contexts.collect_contexts(lm, splits, data="generated", snippets_per_token=2, heldout_per_token=1,
                                    snippet_len=16, progress=progress, cancel=cancel)
    first, second = (found[s.word] for s in splits)
    assert len(first.train) == 2 and first.problem is None
    assert not second.train and second.problem.startswith("not collected: stopped while generating")
