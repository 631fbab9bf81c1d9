"""The Find-words tab (/discover, /send_words) on the launched app, driven through gradio_client as a remote user.

One app with a short job line (1 waiting job) on the bundled model; the searches count the bundled corpus
(a few seconds each) or small uploaded files.
"""

from __future__ import annotations

import os
import time

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # hub lookups fail at once instead of retrying

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from tests.helpers import bundled_runtime, launched_app  # noqa: E402

BUNDLED = ("bundled", [], "", 30, 2, 3, "smollm2-135m")  # source, files, hf name, top, phrases, min count, model
FILLER = ("The committee met on Monday and the report was read aloud to everyone in the hall before lunch. "
          "People asked questions about the budget, the roads and the new school near the river. ")


@pytest.fixture(scope="module")
def server(bundled_lm):
    rt = bundled_runtime(bundled_lm, max_waiting_jobs=1, max_job_seconds=120)
    with launched_app(rt) as url:
        yield url, rt


@pytest.fixture(scope="module")
def expected(server):
    """The library's own answer for BUNDLED's settings, on the app's shared model."""
    return server[1].engine().discover("bundled", top=30, min_count=3, max_words=2)


def client(url: str) -> Client:
    return Client(url, verbose=False, download_files=False)


def discover(c: Client, *args):
    """-> (summary, table html, figure, caption, ticked, command, details)."""
    return c.predict(*args, api_name="/discover")


def wait_until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached in time")
        time.sleep(0.1)


def test_discover_returns_the_library_ranking_and_sending_fills_the_words_box(server, expected):
    url, _ = server
    c = client(url)
    # The new endpoints join the others, whose names stay as they were.
    endpoints = set(c.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert endpoints == {"/discover", "/send_words", "/split", "/contexts", "/distill", "/stop", "/compare",
                         "/trajectory", "/generate", "/lens", "/inspect", "/add_snippet", "/retrain_word", "/export"}
    summary, table, figure, caption, ticked, command, details = discover(c, *BUNDLED)
    rows = details["candidates"]
    assert len(rows) == 30 and [r["rank"] for r in rows] == list(range(1, 31))
    # Exactly the library's candidates, counts and savings, ranked by tokens saved.
    assert [(r["token"], r["count"], r["tokens_saved"]) for r in rows] == [
        (cand.token, cand.count, cand.tokens_saved) for cand in expected.candidates]
    saved = [r["tokens_saved"] for r in rows]
    assert saved == sorted(saved, reverse=True) and saved[0] > 0
    assert details["corpus_tokens"] == expected.corpus_tokens and details["documents"] == expected.documents
    shares = [r["cumulative_saved_pct"] for r in rows]
    assert shares == sorted(shares) and shares[-1] == pytest.approx(100 * sum(saved) / expected.corpus_tokens,
                                                                     abs=1e-3)
    assert any(" " in r["token"].strip() for r in rows)  # phrases of 2 words were counted ("United States")
    assert all(r["pieces"] == len(r["subwords"]) >= 2 and r["display"].startswith("␣") for r in rows)
    # The page: the table with ␣ tokens and chips, a curve with one point per candidate, a caption, the CLI.
    assert f"<b>{rows[0]['display']}</b>" in table and "td-chip" in table and "cumulative % saved" in table
    assert len(figure["plot"]) > 0 and f"{shares[-1]:.2f} %" in caption and "upper bound" in caption
    assert "tokdist adapt --data bundled --top 30 --phrases 2 --methods subword_mean,tokdist --out adapted/" in command
    assert "tokdist discover --data bundled --top 30 --phrases 2 --min-count 3" in command
    assert details["command"] == command and "30 candidate words and phrases" in summary
    # Every candidate becomes a choice to tick (its label shows the ␣ form), and the top 10 come ticked.
    assert [value for _label, value in ticked["choices"]] == [r["token"] for r in rows]
    assert ticked["choices"][0][0].startswith(rows[0]["display"])
    assert ticked["value"] == [r["token"] for r in rows[:10]]

    # Sending the ticked words fills the Words box (mid-sentence form, as counted), and they split.
    single = [r["token"] for r in rows if " " not in r["token"].strip()]
    chosen = [single[0], single[2], next(r["token"] for r in rows if " " in r["token"].strip())]
    text, mid, note = c.predict(chosen, api_name="/send_words")
    assert text == ", ".join(t.strip() for t in chosen) and mid is True and "Sent 3 words" in note
    split = c.predict(text, "smollm2-135m", mid, api_name="/split")[2]
    assert [w["word"] for w in split["words"]] == chosen

    # The app's word cap points to the command line; nothing is sent.
    too_many = [r["token"] for r in rows[:21]]
    with pytest.raises(AppError, match=r"ticked 21 words; this app learns up to 20 .*tokdist adapt"):
        c.predict(too_many, api_name="/send_words")
    with pytest.raises(AppError, match="Tick at least one candidate"):
        c.predict([], api_name="/send_words")
    with pytest.raises(AppError, match="unknown choice"):  # only this session's candidates can be sent
        c.predict([" Zorblax"], api_name="/send_words")
    with pytest.raises(AppError, match="unknown choice"):  # a fresh session has none yet
        client(url).predict([rows[0]["token"]], api_name="/send_words")


def test_an_uploaded_file_is_counted_and_named_by_its_own_name(server, tmp_path):
    url, _ = server
    c = client(url)
    notes = tmp_path / "field notes.txt"
    notes.write_text("\n\n".join(f"{FILLER}Dr. Okonkwo-Zorblax studied the Quetzalcoatlus fossil number {i}."
                                 for i in range(7)), encoding="utf-8")
    summary, table, _fig, _cap, ticked, command, details = discover(c, "files", [handle_file(str(notes))], "", 10, 1,
                                                                   5, "smollm2-135m")
    counts = {r["token"]: r["count"] for r in details["candidates"]}
    # Counted as the extended tokenizer would use them: after a space, up to a word boundary ("-" ends one).
    assert counts[" Quetzalcoatlus"] == 7 and counts[" Okonkwo"] == 7 and " Zorblax" not in counts
    assert all(r["count"] >= 5 for r in details["candidates"]) and details["documents"] == 7
    assert details["source"] == "field notes.txt" and "field notes.txt" in summary
    assert "your own copy" in command and "--data 'field notes.txt' --top 10 " in command
    assert "--phrases" not in command  # single words
    assert str(tmp_path) not in str(details) and "/tmp" not in str(details) + command


def test_bad_inputs_give_clear_messages_without_server_paths(server, tmp_path):
    url, _ = server
    c = client(url)

    def fails(match: str, *args) -> str:
        with pytest.raises(AppError, match=match) as err:
            discover(c, *args)
        message = str(err.value)
        assert "/tmp" not in message and str(tmp_path) not in message, message
        return message

    def upload(name: str, content: bytes):
        path = tmp_path / name
        path.write_bytes(content)
        return [handle_file(str(path))]

    fails("no file was uploaded", "files", [], "", 10, 1, 2, "smollm2-135m")
    fails("binary", "files", upload("notes.txt", bytes(range(256)) * 8), "", 10, 1, 2, "smollm2-135m")
    fails("'empty.txt' is empty", "files", upload("empty.txt", b""), "", 10, 1, 2, "smollm2-135m")
    fails("not UTF-8", "files", upload("latin1.txt", "Schopenhauer ärgerlich".encode("latin-1")), "", 10, 1, 2,
          "smollm2-135m")
    message = fails("corpus is empty", "files", upload("blank.txt", b" \n\n \t\n"), "", 10, 1, 2, "smollm2-135m")
    assert "blank.txt" in message
    message = fails("No candidates in plain.txt", "files", upload("plain.txt", (FILLER * 20).encode()), "", 10, 1, 2,
                    "smollm2-135m")
    assert "already one token" in message and "Lower the minimum count" in message
    fails("Type a Hugging Face dataset name", "hf", [], " ", 10, 1, 2, "smollm2-135m")
    fails("not a Hugging Face dataset id", "hf", [], str(tmp_path), 10, 1, 2, "smollm2-135m")
    fails("file-format builder", "hf", [], "text", 10, 1, 2, "smollm2-135m")
    fails(r"Candidates to list must be between 1 and 200, got 5000", *BUNDLED[:3], 5000, 1, 2, "smollm2-135m")
    fails("Minimum count must be a number, got 'many'", *BUNDLED[:3], 10, 1, "many", "smollm2-135m")
    fails("not in the list of choices", *BUNDLED[:3], 10, 4, 2, "smollm2-135m")  # phrases of 4 words
    fails("not in the list of choices", "generated", [], "", 10, 1, 2, "smollm2-135m")
    fails("only serves its bundled models|not in the list of choices", *BUNDLED[:6], "gpt2")


def test_searches_wait_in_the_job_line_are_refused_when_it_is_full_and_can_be_cancelled(server):
    url, rt = server
    a, b, late = client(url), client(url), client(url)
    first = a.submit(*BUNDLED, api_name="/discover")
    wait_until(rt.jobs.busy)
    with pytest.raises(AppError, match="still busy with finding candidates"):  # one job per session
        discover(a, *BUNDLED)
    second = b.submit(*BUNDLED, api_name="/discover")
    wait_until(lambda: rt.jobs.waiting() == 1)
    with pytest.raises(AppError, match="server is busy"):  # the line (1 place) is full
        discover(late, *BUNDLED)
    tokens = [r["token"] for r in first.result(timeout=180)[-1]["candidates"]]
    assert [r["token"] for r in second.result(timeout=180)[-1]["candidates"]] == tokens
    waited = [w for label, w, _ran in rt.jobs.finished if label == "finding candidates"]
    assert len(waited) >= 2 and max(waited) > 0.5  # the second one waited for the first

    # A cancelled request frees the worker within seconds.
    job = late.submit(*BUNDLED, api_name="/discover")
    wait_until(rt.jobs.busy)
    time.sleep(0.5)
    job.cancel()
    wait_until(lambda: not rt.jobs.busy(), timeout=15)

    # The time limit stops a search with a message saying so.
    rt.jobs.max_seconds = 0.5
    try:
        with pytest.raises(AppError, match=r"Stopped \(the server's time limit of .* per job\) before the count"):
            discover(late, *BUNDLED)
    finally:
        rt.jobs.max_seconds = 120
