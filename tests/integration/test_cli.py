"""The `tokdist` command end to end on the bundled model: each test runs the command as a user does (a fresh
`python -m tokdist_core.cli` process) and checks what it printed and wrote."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import DISCOVERY_DOCS, TEXTS, ZUGSPITZE_TEXTS, run_cli
from tokdist_core.foundations.forward import cpu_has_fast_bf16

# bf16 where this CPU computes it natively, so the CLI flag reaches training; fp32 elsewhere.
PRECISION = "bf16" if cpu_has_fast_bf16() else "no"


@pytest.fixture
def corpus(tmp_path) -> Path:
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in DISCOVERY_DOCS), encoding="utf-8")
    return path


def test_cli_split_reads_utf8_bom_file_and_comma_separated_words(tmp_path):
    path = tmp_path / "words.txt"
    path.write_bytes("\ufeffAndorra\n".encode())
    proc = run_cli("split", "--words-file", str(path), "--words", "Agassi,", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert "'␣Andorra': 3 subwords [' And', 'or', 'ra']" in proc.stdout
    assert "Agassi" in proc.stdout and "\ufeff" not in proc.stdout


@pytest.mark.parametrize("flags, expected", [
    (["--target-layer", "99"], "error: target_layer 99 is out of range"),  # needs the model's layer count
    (["--snippet-len", "4"], "error: snippet_len=4 is too short for ' Andorra'"),  # needs its subwords
])
def test_cli_distill_errors_found_after_loading_are_one_line(tmp_path, flags, expected):
    proc = run_cli("distill", "--words", "Andorra", *flags, "--out", str(tmp_path / "out"), "--device", "cpu")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    assert expected in proc.stderr
    assert not (tmp_path / "out").exists()


def test_cli_discover_end_to_end(tmp_path, corpus):
    words_out, freq = tmp_path / "words.txt", tmp_path / "freq.tsv"
    proc = subprocess.run([sys.executable, "-m", "tokdist_core.cli", "discover", "--data", str(corpus),
                           "--phrases", "2", "--min-count", "1", "--top", "4", "--json", "--words-out",
                           str(words_out), "--device", "cpu"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert list(report)[:4] == ["model", "data", "corpus_tokens", "candidates"]
    assert report["model"] == "smollm2-135m" and report["data"] == str(corpus) and len(report["candidates"]) == 4
    assert report["candidates"][0]["token"] == " Krankenwagen"
    assert words_out.read_text(encoding="utf-8").splitlines() == [c["token"][1:] for c in report["candidates"]]
    freq.write_text("Krankenwagen\t120\nthe\t9\n", encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "tokdist_core.cli", "discover", "--frequency-list", str(freq),
                           "--device", "cpu"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "␣Krankenwagen" in proc.stdout and "480" in proc.stdout
    assert "rejected line 2: ' the': already one token" in proc.stdout


def test_cli_compare_with_losses_and_init_records_both(tmp_path):
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, "-m", "tokdist_core.cli", "compare", "--words", "Schopenhauer", "--data", "bundled",
         "--methods", "subword_mean,tokdist", "--losses", "hidden_mse,logit_kl", "--init", "random",
         "--optimizer", "adam", "--schedule", "linear", "--snippets-per-token", "4", "--heldout-per-token", "2", "--snippet-len", "24",
         "--epochs", "1", "--batch-size", "4", "--device", "cpu", "--json", str(report)],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(report.read_text())
    config = data["config"]
    assert config["losses"] == ["hidden_mse", "logit_kl"] and config["init"] == "random"
    assert config["schedule"] == "linear" and config["optimizer"] == "adam"
    assert config["method_losses"] == {"tokdist": ["hidden_mse", "logit_kl"]}
    assert set(data["summary"]) == {"subword_mean", "tokdist"} and data["words"][0]["word"] == " Schopenhauer"


def test_cli_compare_writes_report_and_lists_skipped_words(tmp_path):
    words_file = tmp_path / "words.txt"
    words_file.write_text("Andorra\nthe\nzzqxqzzqxq\n", encoding="utf-8")
    out = tmp_path / "report.json"
    proc = run_cli("compare", "--words-file", str(words_file), "--data", "bundled", "--methods",
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
    assert "collecting contexts…" in proc.stderr  # the stages show while snippets are collected
    # Every word skipped: nothing compared is a failure, as in distill and adapt.
    none = run_cli("compare", "--words", "zzqxqzzqxq", "--data", "bundled", "--methods", "subword_mean")
    assert none.returncode == 1 and "no word could be compared" in none.stderr and "zzqxqzzqxq" in none.stdout


def test_cli_compare_a_special_token_from_its_description(tmp_path):
    """Issue 20's acceptance: Token Distillation of a description is well ahead of its mean (desc_init)."""
    out = tmp_path / "report.json"
    proc = run_cli("compare", "--describe", "<|capital|>=the capital city of France", "--methods",
                   "subword_mean,tokdist", "--data", "generated", "--snippets-per-token", "12",
                   "--heldout-per-token", "6", "--epochs", "4", "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    (word,) = report["words"]
    assert word["word"] == "<|capital|>" and word["description"] == " the capital city of France"
    assert word["subwords"] == [" the", " capital", " city", " of", " France"]
    assert report["config"]["descriptions"] == {"<|capital|>": " the capital city of France"}
    mean, tokdist = word["methods"]["subword_mean"], word["methods"]["tokdist"]
    # Measured: hidden MSE 0.57 -> 0.28, next-token KL 0.59 -> 0.31 (6 held-out snippets the model wrote).
    assert tokdist["hidden_mse"] < 0.7 * mean["hidden_mse"]
    assert tokdist["next_token_kl"] < 0.8 * mean["next_token_kl"]


def test_ctrl_c_while_distill_replaces_an_export_leaves_the_earlier_one_whole(tmp_path):
    import signal
    import time

    from transformers import AutoConfig, AutoTokenizer

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(TEXTS + ZUGSPITZE_TEXTS), encoding="utf-8")
    out = tmp_path / "o"
    common = ["--method", "subword_mean", "--data", str(corpus), "--snippets-per-token", "1", "--device", "cpu"]
    first = run_cli("distill", "--words", "Krankenwagen", *common, "--out", str(out), "--formats", "hf,peft")
    assert first.returncode == 0, first.stderr
    adapter = out / "peft"  # the peft format: a TrainableTokens adapter of the one new row, with its tokenizer
    assert json.loads((adapter / "adapter_config.json").read_text())["token_indices"] == [49152]
    assert (adapter / "adapter_model.safetensors").stat().st_size < 20_000
    from huggingface_hub import ModelCard

    card = ModelCard.load(out / "README.md")  # the model card: Hub metadata, the word, how to reproduce it
    assert (card.data.base_model, card.data.license) == ("HuggingFaceTB/SmolLM2-135M-Instruct", "apache-2.0")
    assert f"tokdist distill --words Krankenwagen --method subword_mean --data {corpus}" in card.text
    assert "--formats hf,peft" in card.text
    assert "<code>' Krankenwagen'</code>" in card.text
    second = subprocess.Popen([sys.executable, "-m", "tokdist_core.cli", "distill", "--words",
                               "Schadenfreude,Zugspitze", *common, "--out", str(out)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 300
        # The replacement is being written: its weights are landing in the hidden partial folder.
        while second.poll() is None and time.time() < deadline and \
                not any(p.name == "model.safetensors" for d in tmp_path.glob(".o.*.partial") for p in d.iterdir()):
            time.sleep(0.002)
        assert second.poll() is None, "distill finished before it could be interrupted"
        second.send_signal(signal.SIGINT)
        second.communicate(timeout=120)
    finally:
        if second.poll() is None:
            second.kill()
    assert second.returncode != 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.txt", "o"]  # no partial or old folder left
    assert (out / "peft" / "adapter_config.json").is_file()  # the earlier export, all of it
    assert json.loads((out / "new_rows.json").read_text())["words"] == [" Krankenwagen"]
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.convert_tokens_to_ids(" Krankenwagen") == len(tokenizer) - 1
    assert AutoConfig.from_pretrained(out).vocab_size == len(tokenizer)


def test_cli_rejects_bad_hyperparameters():
    proc = run_cli("compare", "--words", "Andorra", "--lr", "-1")
    assert proc.returncode != 0 and "learning_rate" in proc.stderr
    proc = run_cli("compare", "--words", "Andorra", "--mixed-precision", "fp16")
    assert proc.returncode != 0 and "invalid choice: 'fp16'" in proc.stderr
    proc = run_cli("split", "--words", "Andorra", "the")
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
    proc = run_cli("distill", "--no-space", "--words", "Krankenwagen", "--data", "a.txt,b.txt", "--method", "tokdist",
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
