"""The Inspect tab's endpoints (/inspect, /add_snippet, /retrain_word) driven through gradio_client on the bundled model.

Tiny settings (2 words, 4 train + 2 held-out snippets of 24 tokens, 1 epoch) so the file runs in about a minute.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

torch = pytest.importorskip("torch")
pytest.importorskip("gradio_client")
from gradio_client import Client  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from tests.helpers import wait_for_steps  # noqa: E402
from tokdist_core.export import load_rows  # noqa: E402

TINY_CONTEXTS = ("bundled", [], "", 4, 2, 24, 0)  # source, files, hf name, train, held-out, length, seed
WORD, OTHER = " Schopenhauer", " Andorra"
NEW_TEXT = "In the seminar we read Schopenhauer on will and representation, and argued about it for hours."


@pytest.fixture(scope="module")
def app(shared_app):
    return shared_app


def client(app) -> Client:
    return Client(app[0], verbose=False, download_files=True)


def exported_rows(c: Client, rt, tmp_path: Path, name: str):
    files = c.predict("tokdist", False, api_name="/export")[0]
    folder = tmp_path / name
    folder.mkdir()
    for f in files:
        shutil.copy(f, folder / Path(f).name)
    return load_rows(folder, rt.model())


def inspect(c: Client, word=WORD, method="tokdist"):
    return c.predict(word, method, api_name="/inspect")


def test_inspect_add_a_snippet_and_retrain_one_word(app, tmp_path):
    rt = app[1]
    c = client(app)
    c.predict("Schopenhauer, Andorra", "smollm2-135m", True, api_name="/split")
    c.predict(*TINY_CONTEXTS, api_name="/contexts")
    # One Adam epoch of batch 8 over 4 snippets is one step: its loss is the loss under the starting rows, which
    # are exactly the subword-mean rows.
    distill = c.predict(["subword_mean", "tokdist"], 1, 0.01, 8, -1, "ntp", 0, "auto", ["hidden_mse"], 1.0,
                        "subword_mean", "constant", 0.5, "adam", api_name="/distill")[3]
    assert distill["finished"] == ["subword_mean", "tokdist"]
    metrics = c.predict(None, 3, api_name="/compare")[-1]["metrics"]

    summary, plot, table, details = inspect(c)
    losses = [s["loss"] for s in details["shown"]]
    assert losses == sorted(losses, reverse=True)  # worst first
    assert sorted(s["id"] for s in details["shown"]) == ["held-out 1", "held-out 2", "train 1", "train 2", "train 3",
                                                         "train 4"]
    assert table["headers"][:4] == ["snippet", "set", "loss", "positions"]
    assert [row[0] for row in table["data"]] == [s["id"] for s in details["shown"]]
    assert all("<mark>" in row[4] for row in table["data"])
    # The position-weighted means are the numbers reported elsewhere.
    assert details["means"]["tokdist"]["heldout"] == pytest.approx(metrics["tokdist"][WORD]["hidden_mse"], rel=1e-5)
    assert details["compare_hidden_mse"] == metrics["tokdist"][WORD]["hidden_mse"]
    assert details["means"]["subword_mean"]["train"] == pytest.approx(distill["final_loss"]["tokdist"][WORD], rel=1e-5)
    assert "Average held-out loss" in summary and plot is not None
    by_subword_mean = inspect(c, "Schopenhauer", "subword_mean")[3]  # the word without its space works too
    assert by_subword_mean["method"] == "subword_mean" and by_subword_mean["word"] == WORD

    rows_before = exported_rows(c, rt, tmp_path, "before")
    status, added = c.predict(WORD, NEW_TEXT, "new", api_name="/add_snippet")
    assert added["train_snippets"] == 5 and added["snippet"] == "train 5" and "Added train 5" in status
    assert added["text"] == NEW_TEXT
    details = inspect(c)[3]
    assert details["stale"] and sum(s["set"] == "train" for s in details["shown"]) == 5
    assert "train 5" in {s["id"] for s in details["shown"]}

    status, retrained = c.predict(WORD, api_name="/retrain_word")
    assert "Re-trained" in status and retrained["train_snippets"] == 5
    assert retrained["row_change"]["tokdist"] > 1e-4 and retrained["row_change"]["subword_mean"] == 0.0
    assert retrained["hidden_mse_after"]["tokdist"] != retrained["hidden_mse_before"]["tokdist"]
    assert retrained["hidden_mse_after"]["subword_mean"] == pytest.approx(retrained["hidden_mse_before"]["subword_mean"],
                                                                          rel=1e-5)
    rows_after = exported_rows(c, rt, tmp_path, "after")
    code = c.predict("tokdist", False, api_name="/export")[2]
    assert repr((WORD, None, NEW_TEXT)) in code and "heldout_per_token=2" in code and "Not in these rows" not in code
    i, j = rows_after.index(WORD), rows_after.index(OTHER)
    assert (rows_after.input_rows[i] - rows_before.input_rows[i]).abs().max() > 1e-5
    assert torch.equal(rows_after.input_rows[j], rows_before.input_rows[j])  # the other word is untouched
    compare_after = c.predict(None, 3, api_name="/compare")[-1]
    new_metrics = compare_after["metrics"]
    # The Replay and the loss curves show the re-training the word's rows now come from: 5 snippets, 1 step.
    replay = c.predict(WORD, api_name="/trajectory")[2]
    star = next((p["x"], p["y"]) for p in compare_after["pca"] if p["kind"] == "new row" and p["label"] == "tokdist")
    path = replay["paths"]["tokdist"]
    assert (path["x"][-1], path["y"][-1]) == pytest.approx(star, rel=1e-5, abs=1e-6)
    assert replay["losses"]["tokdist"] == [[1, pytest.approx(retrained["final_loss"]["tokdist"])]]
    assert new_metrics["tokdist"][OTHER] == metrics["tokdist"][OTHER]
    assert new_metrics["tokdist"][WORD]["hidden_mse"] == retrained["hidden_mse_after"]["tokdist"]
    details = inspect(c)[3]
    assert not details["stale"] and details["retrained"]["train_snippets"] == 5
    assert details["means"]["tokdist"]["heldout"] == pytest.approx(new_metrics["tokdist"][WORD]["hidden_mse"], rel=1e-5)

    # Replacing a training snippet keeps the count.
    replaced = c.predict(WORD, "Students of Schopenhauer often start with his essays, which are short.", "train 2",
                         api_name="/add_snippet")[1]
    assert replaced["train_snippets"] == 5 and replaced["action"] == "replaced"

    code_later = c.predict("tokdist", False, api_name="/export")[2]
    assert "# Not in these rows: 1 snippet(s) of 'Schopenhauer' written after it was last trained." in code_later
    assert code_later.count(NEW_TEXT) == 1  # the trained edit is still replayed; the later one is only named

    # The exported script redoes this session: the same mining, the snippet written here, the same row.
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    (tmp_path / "again").mkdir()
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path / "again", capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    saved = tmp_path / "again" / "tokdist-model"
    new_id = AutoTokenizer.from_pretrained(saved).convert_tokens_to_ids(WORD)
    again = load_file(str(saved / "model.safetensors"))["model.embed_tokens.weight"][new_id]
    torch.testing.assert_close(again, rows_after.input_rows[i], rtol=1e-4, atol=1e-5)

    # Bad inputs: a clear message, and the snippets stay as they were.
    def fails(match: str, *args, api_name: str):
        with pytest.raises(AppError, match=match):
            c.predict(*args, api_name=api_name)

    fails("does not contain the word", WORD, "A sentence about something else entirely.", "new", api_name="/add_snippet")
    fails("empty", WORD, "   ", "new", api_name="/add_snippet")
    fails("inside a longer word", WORD, "The Schopenhauerian view is bleak.", "new", api_name="/add_snippet")
    fails("invisible characters", WORD, "We read Schopenhauer\u200b today at noon.", "new", api_name="/add_snippet")
    fails("already training snippet 5", WORD, NEW_TEXT, "new", api_name="/add_snippet")
    fails("Held-out snippets are kept aside", WORD, NEW_TEXT, "held-out 1", api_name="/add_snippet")
    fails("pick 'train 1' to 'train 5'", WORD, "We read Schopenhauer today at noon.", "train 9", api_name="/add_snippet")
    fails("limit is 5,000", WORD, "Schopenhauer " * 600, "new", api_name="/add_snippet")
    fails("not one of this session's trained words", "Kant", api_name="/retrain_word")
    fails("not one of this session's trained words", "Kant", "tokdist", api_name="/inspect")
    fails("was not trained for", WORD, "ntp", api_name="/inspect")
    assert sum(s["set"] == "train" for s in inspect(c)[3]["shown"]) == 5

    # A fresh session has nothing to inspect.
    fresh = client(app)
    with pytest.raises(AppError, match="Nothing trained yet"):
        inspect(fresh)
    with pytest.raises(AppError, match="Nothing trained yet"):
        fresh.predict(WORD, api_name="/retrain_word")
    with pytest.raises(AppError, match="Nothing trained yet"):
        fresh.predict(WORD, NEW_TEXT, "new", api_name="/add_snippet")


def test_snippets_cannot_change_while_the_session_trains(app):
    c = client(app)
    c.predict("Schopenhauer", "smollm2-135m", True, api_name="/split")
    c.predict(*TINY_CONTEXTS, api_name="/contexts")
    c.predict(["tokdist"], 1, 0.01, 8, -1, "ntp", 0, api_name="/distill")
    job = c.submit(["tokdist"], 50, 0.01, 1, -1, "ntp", 0, api_name="/distill")  # 50 steps: stopped below
    wait_for_steps(job, "tokdist", 1)
    try:
        with pytest.raises(AppError, match="Cannot re-train a word while a training run is running"):
            c.predict(WORD, api_name="/retrain_word")
        with pytest.raises(AppError, match="Cannot change this word's snippets while a training run is running"):
            c.predict(WORD, NEW_TEXT, "new", api_name="/add_snippet")
    finally:
        c.predict(api_name="/stop")
        job.result(timeout=120)
