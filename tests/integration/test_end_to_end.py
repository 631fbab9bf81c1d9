"""The embedded SmolLM2 model on the bundled corpus: the paper's ordering on held-out snippets, run() end to end."""

from __future__ import annotations

import pytest
import torch

from tokdist_core.api import TokenDistillation
from tokdist_core.foundations.forward import cpu_has_fast_bf16
from tokdist_core.training import DistillationConfig

WORDS = ["Agassi", "Schopenhauer", "Andorra", "anarchism", "Tarkovsky"]


@pytest.fixture
def td(bundled_lm) -> TokenDistillation:
    return TokenDistillation(bundled_lm)


def test_tokdist_beats_baselines_on_heldout_snippets(td):
    # Measured at these settings: hidden MSE tokdist 0.221 < ntp 0.277 < subword_mean 0.421 < random 0.484.
    before = td.lm.model.get_input_embeddings().weight.clone()
    comparison = td.compare(WORDS, data="bundled", methods=["random", "subword_mean", "ntp", "tokdist"],
                            snippets_per_token=8, heldout_per_token=4, snippet_len=32,
                            training=DistillationConfig(epochs=4, learning_rate=1e-2))
    report = comparison.to_json()
    assert not report["skipped"]
    assert [w["word"] for w in report["words"]] == [" " + w for w in WORDS]
    for word in report["words"]:
        assert word["train_snippets"] == 8 and word["heldout_snippets"] == 4
        assert set(word["sources"]) <= {"bundled:lee_background", "bundled:lee", "bundled:enwiki"}
    mse = {m: v["hidden_mse"] for m, v in report["summary"].items()}
    assert mse["tokdist"] < mse["subword_mean"] < mse["random"], mse
    assert mse["tokdist"] < mse["ntp"], mse
    assert report["summary"]["tokdist"]["hidden_cos"] > report["summary"]["subword_mean"]["hidden_cos"]
    assert torch.equal(td.lm.model.get_input_embeddings().weight, before)  # shared model untouched


def test_run_returns_model_that_encodes_word_as_one_token(td, tmp_path):
    model, tokenizer = td.run(["Schopenhauer"], data="bundled", snippets_per_token=6, snippet_len=30,
                              training=DistillationConfig(epochs=1), out_path=tmp_path / "out", save=True)
    ids = tokenizer.encode(" Schopenhauer", add_special_tokens=False)
    assert ids == [len(td.lm.tokenizer)]
    assert (tmp_path / "out" / "model.safetensors").is_file()
    assert model is not td.lm.model


# bf16 where this CPU computes it natively, so the CLI flag reaches training; fp32 elsewhere.
PRECISION = "bf16" if cpu_has_fast_bf16() else "no"





