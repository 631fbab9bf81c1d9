"""Scale: a word's row does not depend on the words beside it, so chunked, resumed and sharded runs agree."""

from __future__ import annotations

import threading

import pytest
import torch

from tests.helpers import THREE_WORDS, three_words
from tokdist_core.api import TokenDistillation
from tokdist_core.foundations.cancel import Cancelled
from tokdist_core.pipelines.scale import GB, CheckpointStore, ScaleError, plan_chunks, train_in_chunks
from tokdist_core.training import DistillationConfig

METHODS = ["random", "subword_mean", "tokdist", "ntp", "tokdist_antp"]
CONFIG = DistillationConfig(epochs=3, batch_size=2, learning_rate=5e-2)


def _rows(td, splits, snippets, methods=METHODS):
    return td.train(splits, snippets, methods, CONFIG).rows


def _assert_same_rows(a, b, words):
    for method in a:
        for w in words:
            torch.testing.assert_close(a[method].input_rows[a[method].index(w)], b[method].input_rows[b[method].index(w)],
                                       rtol=1e-4, atol=1e-5, msg=f"{method} {w}")
            if a[method].output_rows is not None:
                torch.testing.assert_close(a[method].output_rows[a[method].index(w)],
                                           b[method].output_rows[b[method].index(w)], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["tied", "untied"])
def test_a_words_rows_do_not_depend_on_the_words_beside_it(tokenizer, kind):
    from tests.helpers import make_tiny

    td = TokenDistillation(make_tiny(tokenizer, kind))
    splits, snippets = three_words(tokenizer)
    counts = {w: sum(s.word == w for s in snippets) for w in THREE_WORDS}
    assert sorted(counts.values()) == [3, 3, 5]  # different counts: different numbers of steps per word
    together = _rows(td, splits, snippets)
    for split in splits:
        alone = _rows(td, [split], [s for s in snippets if s.word == split.word])
        _assert_same_rows(alone, together, [split.word])
    # and training really moved the rows (the comparison is not between two copies of the start)
    mean = together["subword_mean"].input_rows
    assert (together["tokdist"].input_rows - mean).abs().max() > 1e-3


def test_chunked_and_resumed_runs_give_the_rows_of_one_run(tiny, tokenizer, tmp_path):
    td = TokenDistillation(tiny)
    splits, snippets = three_words(tokenizer)
    methods = ["subword_mean", "tokdist"]
    whole = _rows(td, splits, snippets, methods)
    # A budget that holds one word's teacher cache at a time: three chunks.
    from tokdist_core.estimate import teacher_cache_bytes

    # The caches hold what training reads of each snippet.
    read = CONFIG.trained_part(snippets)
    largest = max(teacher_cache_bytes(tiny, [s for s in read if s.word == w], False) for w in THREE_WORDS)
    assert len(plan_chunks(tiny, splits, read, largest, False)) == 3
    chunked = train_in_chunks(td, splits, snippets, methods, CONFIG, budget_bytes=largest)
    _assert_same_rows(whole, chunked, THREE_WORDS)

    # Interrupted after the first chunk: its rows are on disk; the resumed run trains only the rest.
    fingerprint = {"model": tiny.name, "config": CONFIG.to_dict(), "methods": methods}
    cancel = threading.Event()
    seen = []

    def stop_after_first(done, total):
        seen.append(done)
        if done > 1:  # the first step of the second chunk
            cancel.set()

    store = CheckpointStore(tmp_path / "checkpoints", fingerprint, resume=False)
    with pytest.raises(Cancelled, match="chunk 2 of 3"):
        train_in_chunks(td, splits, snippets, methods, CONFIG, budget_bytes=largest, store=store,
                        progress=stop_after_first, cancel=cancel)
    assert seen[0] == 0 and 1 in seen and seen == sorted(seen)
    assert len(list((tmp_path / "checkpoints").glob("chunk-*.safetensors"))) == 1
    assert not list((tmp_path / "checkpoints").glob(".*partial"))
    resumed_progress = []
    resumed = train_in_chunks(td, splits, snippets, methods, CONFIG, budget_bytes=largest,
                              store=CheckpointStore(tmp_path / "checkpoints", fingerprint, resume=True),
                              progress=lambda d, t: resumed_progress.append(d))
    # The first word came from its checkpoint; then every step moves the bar (a fraction of its chunk's word).
    assert resumed_progress[0] == 1 and resumed_progress[-1] == 3 and resumed_progress == sorted(resumed_progress)
    assert {2, 3} <= set(resumed_progress) and any(1 < d < 2 for d in resumed_progress)
    _assert_same_rows(whole, resumed, THREE_WORDS)
    assert [resumed[m].words for m in methods] == [THREE_WORDS, THREE_WORDS]

    with pytest.raises(ScaleError, match="other settings .*config"):
        CheckpointStore(tmp_path / "checkpoints", {**fingerprint, "config": {**CONFIG.to_dict(), "epochs": 9}}, resume=True)


def test_a_budget_too_small_for_one_snippet_is_refused_before_work(tiny, tokenizer):
    splits, snippets = three_words(tokenizer)
    with pytest.raises(ScaleError, match="too small for one snippet"):
        plan_chunks(tiny, splits, snippets, 1000, False)
    with pytest.raises(ScaleError, match="positive"):
        plan_chunks(tiny, splits, snippets, 0, False)
    assert len(plan_chunks(tiny, splits, snippets, GB, False)) == 1
