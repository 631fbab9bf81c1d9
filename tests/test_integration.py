"""The embedded SmolLM2 model on the bundled corpus: the paper's ordering on held-out snippets, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from tokdist_core.api import TokenDistillation
from tokdist_core.foundations.forward import cpu_has_fast_bf16
from tokdist_core.training import DistillationConfig

pytestmark = pytest.mark.integration

WORDS = ["Agassi", "Schopenhauer", "Andorra", "anarchism", "Tarkovsky"]


@pytest.fixture(scope="module")
def td() -> TokenDistillation:
    return TokenDistillation("smollm2-135m", device="cpu")


def test_tokdist_beats_baselines_on_heldout_snippets(td):
    before = td.lm.model.get_input_embeddings().weight.clone()
    comparison = td.compare(WORDS, data="bundled", methods=["random", "subword_mean", "ntp", "tokdist"],
                            snippets_per_token=12, heldout_per_token=6, snippet_len=36,
                            training=DistillationConfig(epochs=6, learning_rate=1e-2))
    report = comparison.to_json()
    assert not report["skipped"]
    assert [w["word"] for w in report["words"]] == [" " + w for w in WORDS]
    for word in report["words"]:
        assert word["train_snippets"] == 12 and word["heldout_snippets"] == 6
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


def _cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tokdist_core.cli", *args], capture_output=True, text=True,
                          timeout=600, cwd=cwd)


def test_cli_compare_writes_report_and_lists_skipped_words(tmp_path):
    words_file = tmp_path / "words.txt"
    words_file.write_text("Andorra\nthe\nzzqxqzzqxq\n", encoding="utf-8")
    out = tmp_path / "report.json"
    proc = _cli("compare", "--words-file", str(words_file), "--data", "bundled", "--methods",
                "subword_mean,tokdist", "--snippets-per-token", "4", "--heldout-per-token", "2",
                "--snippet-len", "24", "--epochs", "1", "--mixed-precision", PRECISION, "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert set(report) >= {"model", "config", "words", "summary", "skipped"}
    assert report["config"]["mixed_precision"] == PRECISION
    (word,) = report["words"]
    assert word["word"] == " Andorra" and word["subwords"] == [" And", "or", "ra"]
    assert set(word["methods"]) == {"subword_mean", "tokdist"}
    assert set(word["methods"]["tokdist"]) >= {"hidden_mse", "hidden_cos", "next_token_kl", "norm_percentile", "seconds"}
    reasons = {s["word"]: s["reason"] for s in report["skipped"]}
    assert "already a single token" in reasons[" the"]
    assert " zzqxqzzqxq" in reasons
    assert "tokdist" in proc.stdout


def test_cli_rejects_bad_hyperparameters():
    proc = _cli("compare", "--words", "Andorra", "--lr", "-1")
    assert proc.returncode != 0 and "learning_rate" in proc.stderr
    proc = _cli("compare", "--words", "Andorra", "--mixed-precision", "fp16")
    assert proc.returncode != 0 and "invalid choice: 'fp16'" in proc.stderr
    proc = _cli("split", "--words", "Andorra", "the")
    assert proc.returncode == 0 and "' And', 'or', 'ra'" in proc.stdout and "already a single token" in proc.stdout


def test_cli_distill_writes_a_reproduce_script_that_gives_the_same_row(tmp_path):
    """Word-initial form, two data files, an output policy and a precision: reproduce.py redoes exactly that."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    for name, town in (("a.txt", "Berlin"), ("b.txt", "Hamburg")):
        (tmp_path / name).write_text("\n\n".join(
            f"Krankenwagen number {i} drove through {town} at night, and the people of the town waved at it."
            for i in range(6)), encoding="utf-8")
    out = tmp_path / "D"
    proc = _cli("distill", "--no-space", "--words", "Krankenwagen", "--data", "a.txt,b.txt", "--method", "tokdist",
                "--snippets-per-token", "4", "--snippet-len", "24", "--epochs", "2", "--output-policy", "zero",
                "--mixed-precision", PRECISION, "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    script = (out / "reproduce.py").read_text()
    assert "mid_sentence=False" in script and "output_policy='zero'" in script
    assert f"mixed_precision={PRECISION!r}" in script and str(tmp_path / "b.txt") in script

    again = tmp_path / "again"
    again.mkdir()
    proc = subprocess.run([sys.executable, str(out / "reproduce.py")], cwd=again, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "'Krankenwagen'" in proc.stdout  # the word-initial form is one token
    new_id = AutoTokenizer.from_pretrained(out).convert_tokens_to_ids("Krankenwagen")
    first = load_file(str(out / "model.safetensors"))["model.embed_tokens.weight"][new_id]
    second = load_file(str(again / "tokdist-model" / "model.safetensors"))["model.embed_tokens.weight"][new_id]
    assert torch.allclose(first, second, atol=1e-6)
