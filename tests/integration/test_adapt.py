"""`tokdist adapt` end to end on the embedded model: outputs, resume, bad input, and 2 gloo processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import REPO, TEXTS
from tests.helpers import ZUGSPITZE_TEXTS as MORE

WORDS = "Krankenwagen,Schadenfreude,Zugspitze"
FAST = ["--snippets-per-token", "2", "--snippet-len", "24", "--epochs", "1", "--batch-size", "2",
        "--methods", "subword_mean,tokdist"]


def _corpus(tmp_path: Path) -> tuple[Path, Path]:
    train = tmp_path / "train.txt"
    train.write_text("\n\n".join(TEXTS + MORE), encoding="utf-8")
    heldout = tmp_path / "heldout.txt"
    heldout.write_text("\n\n".join([
        "The Krankenwagen stopped at the corner, and the driver asked for directions to the hospital.",
        "Climbers on the Zugspitze waited for the fog to lift before the last part of the climb.",
        "A touch of Schadenfreude is only human, the columnist wrote, but it should not last long.",
    ]), encoding="utf-8")
    return train, heldout


def _adapt(*args: str, torchrun: int = 0, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1" if torchrun else os.environ.get(
        "OMP_NUM_THREADS", "2")}
    cli = [sys.executable, "-m", "tokdist_core.cli", "adapt", *args]
    if torchrun:
        cli = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={torchrun}",
               "-m", "tokdist_core.cli", "adapt", *args]
    return subprocess.run(cli, capture_output=True, text=True, timeout=600, env=env, cwd=cwd)


def _rows(folder: Path, method: str) -> dict[str, torch.Tensor]:
    from tokdist_core.export import load_rows

    rows = load_rows(folder / "rows" / method)
    return {w: rows.input_rows[i] for i, w in enumerate(rows.words)}


def test_adapt_writes_models_rows_report_and_resumes(tmp_path):
    train, heldout = _corpus(tmp_path)
    out = tmp_path / "out"
    proc = _adapt("--words", WORDS, "--data", str(train), "--heldout-data", str(heldout), *FAST, "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "adapt.json").read_text())
    assert summary["trained"] == {"subword_mean": 3, "tokdist": 3} and summary["skipped"] == []
    # The harm check read the training text (--data) with tokdist's rows: these words help there and stay.
    check = summary["harm_check"]
    assert check["method"] == "tokdist" and check["harmful"] == [] and check["documents"] > 0
    assert [(c["word"], c["occurrences"]) for c in check["costs"]] == [
        (" Krankenwagen", 3), (" Schadenfreude", 3), (" Zugspitze", 4)]
    assert all(c["bits_change"] < 0 < c["bits_original"] for c in check["costs"])
    assert summary["added"] == summary["trained"]
    report = json.loads((out / "report.json").read_text())
    assert report["tokens_adapted"] < report["tokens_original"] and report["tokens_saved_pct"] > 0
    assert set(report["methods"]) == {"subword_mean", "tokdist"}
    assert all((out / name).is_file() for name in ("report.txt", "report.html"))
    assert not [p for p in out.rglob("*") if p.name.startswith(".") or p.name.endswith(".partial")]

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(out / "models" / "tokdist")
    card = (out / "models" / "tokdist" / "README.md").read_text()  # the model card holds the report's figures
    assert f"| original tokenization | {report['original']['bits_per_byte']:.4f} |" in card
    assert f"| <code>tokdist</code> | {report['methods']['tokdist']['bits_per_byte']:.4f} |" in card
    assert "tokdist adapt --words" in card and "<code>keep_harmful</code>: <code>False</code>" in card
    ids = tokenizer("An old Krankenwagen", add_special_tokens=False).input_ids
    assert tokenizer.convert_tokens_to_ids(" Krankenwagen") in ids

    # A second run into the same folder needs --resume; with it, every word comes from the checkpoints.
    again = _adapt("--words", WORDS, "--data", str(train), "--heldout-data", str(heldout), *FAST, "--out", str(out))
    assert again.returncode == 2 and "add --resume" in again.stderr
    resumed = _adapt("--words", WORDS, "--data", str(train), "--heldout-data", str(heldout), *FAST, "--out",
                     str(out), "--resume", "--no-export")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    before = _rows(out, "tokdist")
    changed = _adapt("--words", WORDS, "--data", str(train), "--heldout-data", str(heldout), *FAST[:-2],
                     "--methods", "tokdist", "--out", str(out), "--resume")
    assert changed.returncode == 1 and "other settings" in changed.stderr and "methods" in changed.stderr
    assert _rows(out, "tokdist").keys() == before.keys()


def test_adapt_adds_a_described_special_token_beside_the_words(tmp_path):
    train = tmp_path / "train.txt"
    train.write_text("\n\n".join(TEXTS + [
        "In May we took the night train to the capital city of France and walked along the river at dawn.",
        "Friends who live in the capital city of France say the museums are quietest on Wednesday mornings."]),
        encoding="utf-8")
    out = tmp_path / "out"
    proc = _adapt("--words", "Krankenwagen", "--describe", "<|capital|>=the capital city of France", "--data",
                  str(train), *FAST, "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "adapt.json").read_text())
    assert summary["words"] == [" Krankenwagen", "<|capital|>"] and summary["added"] == {"subword_mean": 2, "tokdist": 2}
    assert summary["settings"]["descriptions"] == {"<|capital|>": "the capital city of France"}
    from transformers import AutoTokenizer

    from tokdist_core.export import load_rows

    assert load_rows(out / "rows" / "tokdist").descriptions == {"<|capital|>": " the capital city of France"}
    tokenizer = AutoTokenizer.from_pretrained(out / "models" / "tokdist")
    ids = tokenizer("We flew to <|capital|> in May", add_special_tokens=False).input_ids
    assert tokenizer.convert_tokens_to_ids("<|capital|>") == ids[3] and len(ids) == 6


def test_two_gloo_processes_give_the_rows_of_one(tmp_path):
    train, heldout = _corpus(tmp_path)
    one, two = tmp_path / "one", tmp_path / "two"
    # fp32: the promise is the same rows to the last bits of the matmuls (bf16, adapt's default where it is
    # native, keeps them to bf16 rounding only, since a pass's shapes depend on the words beside a word)
    common = ["--words", WORDS, "--data", str(train), "--heldout-data", str(heldout), *FAST, "--no-export",
              "--mixed-precision", "no"]
    proc = _adapt(*common, "--out", str(one))
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = _adapt(*common, "--out", str(two), torchrun=2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # both ranks trained: rank 1 wrote its own chunk file
    assert {p.name.split("-")[1] for p in (two / "checkpoints").glob("chunk-*")} == {"000", "001"}
    for method in ("subword_mean", "tokdist"):
        a, b = _rows(one, method), _rows(two, method)
        assert list(a) == list(b) == [" Krankenwagen", " Schadenfreude", " Zugspitze"]
        for word in a:
            torch.testing.assert_close(a[word], b[word], rtol=1e-4, atol=1e-5)
    assert json.loads((two / "report.json").read_text())["tokens_original"] == \
        json.loads((one / "report.json").read_text())["tokens_original"]


@pytest.mark.parametrize("args,message", [
    (["--top", "0"], "--top"),
    (["--top", "10000000"], "--top"),
    (["--words", "a", "--top", "3"], "every word given is added"),
    (["--words", "a", "--from-tokenizer", "x"], "one source of words"),
    (["--words", "a", "--phrases", "2"], "--phrases"),
    ([], "one source of words"),
    (["--words", "a", "--memory-budget-gb", "0"], "positive"),
    (["--words", "a", "--heldout-fraction", "1.5"], "between 0 and 1"),
    (["--frequency-list", "/nonexistent/list.tsv"], "no such file"),
])
def test_bad_adapt_arguments_fail_before_any_work(tmp_path, args, message):
    proc = _adapt(*args, "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()


def test_bad_candidate_sources_fail_before_the_model_loads(tmp_path):
    binary = tmp_path / "corpus.txt"
    binary.write_bytes(bytes(range(256)) * 8)
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    junk = tmp_path / "list.tsv"
    junk.write_bytes(b"foo\t3\n\x00\x01\x02junk")
    for args, message in ((["--top", "5", "--data", str(binary)], "binary"),
                          (["--top", "5", "--data", str(empty)], "empty"),
                          (["--frequency-list", str(junk)], "binary"),
                          (["--from-tokenizer", str(tmp_path / "no-such-tokenizer")], "does not exist")):
        proc = _adapt(*args, "--out", str(tmp_path / "out"))
        assert proc.returncode == 2 and message in proc.stderr, (args, proc.stderr)
        assert not (tmp_path / "out").exists()
