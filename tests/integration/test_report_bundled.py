"""The domain report on the embedded model and the bundled corpus."""

from __future__ import annotations

import math

from tests.helpers import REPORT_DOCS, REPORT_WORDS, method_rows
from tokdist_core.api import TokenDistillation
from tokdist_core.foundations.rows import NewTokenRows
from tokdist_core.methods import REGISTRY


def test_embedded_model_report_on_words_it_knows(bundled_lm):
    td = TokenDistillation(bundled_lm)
    mean = method_rows(td.lm, "subword_mean", REPORT_WORDS)
    broken = NewTokenRows("broken", REPORT_WORDS, method_rows(td.lm, "random", REPORT_WORDS).input_rows * 30)
    report = td.domain_report(REPORT_DOCS, [mean, broken])
    assert report.tokens_saved_pct > 10
    bpb = {m: v["bits_per_byte"] for m, v in report.methods.items()}
    assert all(math.isfinite(v) and v > 0 for v in bpb.values())
    # Untrained rows cost quality on words the model reads well in pieces; rows far off the embedding
    # distribution (norms 30x too large) cost far more: the rows really drive the forward and the logits.
    assert report.original["bits_per_byte"] < bpb["subword_mean"] < bpb["broken"] / 1.5
    assert report.methods["subword_mean"]["bits_per_byte_change_pct"] > 0
    assert report.methods["broken"]["label"] == "broken"  # not a registered method: its own name, a grey point
    schopenhauer = report.words[2]
    # " Schopenhauer" inside " Schopenhauers" is counted but not compared: the original cuts it elsewhere.
    assert (schopenhauer["count"], schopenhauer["aligned"]) == (4, 3)
    # per word, a random far-off row can land either side of the subword mean: only its bits are checked
    assert all(math.isfinite(schopenhauer["methods"][m]["bits"]) for m in ("subword_mean", "broken"))
    text = report.summary()
    assert "fewer" in text and REGISTRY["subword_mean"].label in text and "' Wittgenstein': 2 occurrences" in text
