"""The app as a public server: hostile paths, a full line, Stop, time limits, cancelled requests, sessions.

Each test launches the real app in-process on the bundled model (loopback only) and drives it with
gradio_client, as a remote user would.
"""

from __future__ import annotations

import os
import time

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # hub lookups fail at once instead of retrying for ~25 s

psutil = pytest.importorskip("psutil")
gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from tests.helpers import assert_base_unchanged, base_state, bundled_runtime, launched_app  # noqa: E402
from tokdist_core import estimate  # noqa: E402

TINY_CONTEXTS = ("bundled", [], "", 4, 2, 24, 0)  # source, files, hf name, train, held-out, length, seed
SECRET = "tokdist-planted-secret-7f3a9c"


def client(url: str) -> Client:
    return Client(url, verbose=False, download_files=False)


def split(c: Client, words: str):
    return c.predict(words, "smollm2-135m", True, api_name="/split")


def ready(c: Client, words: str) -> None:
    """Split the words and collect tiny contexts: the session can train."""
    split(c, words)
    c.predict(*TINY_CONTEXTS, api_name="/contexts")


def distill(c: Client, methods, epochs: int, batch: int = 8):
    return c.predict(list(methods), epochs, 0.01, batch, -1, "ntp", 0, api_name="/distill")


def wait_for_steps(job, minimum: int = 1, timeout: float = 120.0) -> None:
    """Until the streamed /distill progress shows at least `minimum` training steps."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        outputs = job.outputs()
        if outputs and sum(outputs[-1][3]["steps"].values()) >= minimum:
            return
        time.sleep(0.2)
    pytest.fail(f"training produced fewer than {minimum} steps within {timeout:.0f} s")


def assert_no_snippets(c: Client) -> None:
    """The session holds no contexts: nothing was collected (or a change of words discarded them)."""
    with pytest.raises(AppError, match="No snippets yet"):
        distill(c, ["subword_mean"], 1)


def raw_call(url: str, api_name: str, data: list) -> str:
    """One call through Gradio's REST API, with exactly the payload given; the event stream as text."""
    import httpx

    event = httpx.post(f"{url}gradio_api/call/{api_name}", json={"data": data}, timeout=30).json()["event_id"]
    with httpx.stream("GET", f"{url}gradio_api/call/{api_name}/{event}", timeout=60) as stream:
        return "".join(stream.iter_text())


@pytest.fixture(scope="module")
def server(bundled_lm):
    """One app with a short line (2 waiting jobs) for the queue tests."""
    rt = bundled_runtime(bundled_lm, max_waiting_jobs=2, max_job_seconds=600)
    before = base_state(rt)
    with launched_app(rt) as url:
        yield url, rt
    assert_base_unchanged(rt, before)


def test_a_planted_secret_is_never_returned_through_any_source(server, tmp_path):
    url, _ = server
    folder = tmp_path / "private"
    folder.mkdir()
    for name in ("notes.txt", "train.jsonl"):
        (folder / name).write_text(f"Schopenhauer wrote {SECRET} in his diary, said the Andorra file.\n" * 50)
    relative = os.path.relpath(folder, os.getcwd())
    c = client(url)
    split(c, "Schopenhauer")
    attempts = [str(folder), relative, str(folder / "notes.txt"), relative + "/train.jsonl", f"hf:{folder}",
                f"{relative}:default:train", "json", "text", "./" + relative, "~/" + relative]
    for name in attempts:
        with pytest.raises(AppError) as err:
            c.predict("hf", [], name, 4, 2, 24, 0, api_name="/contexts")
        assert SECRET not in str(err.value) and str(tmp_path) not in str(err.value), name
    # A file input naming a server path instead of an upload (sent raw: gradio_client would upload its own
    # copy of a local file) is refused by Gradio before our code runs.
    forged = {"path": str(folder / "notes.txt"), "meta": {"_type": "gradio.FileData"}, "orig_name": "notes.txt"}
    answer = raw_call(url, "contexts", ["files", [forged], "", 4, 2, 24, 0])
    assert "event: error" in answer and SECRET not in answer
    # Nothing was collected from any of it: the session has no snippets.
    assert_no_snippets(c)


def test_stop_answers_at_once_with_a_full_line_and_the_run_ends_at_its_next_step(server):
    url, rt = server
    runner = client(url)
    ready(runner, "Schopenhauer")
    job = runner.submit(["tokdist"], 50, 0.01, 1, -1, "ntp", 0, api_name="/distill")  # ~200 steps
    wait_for_steps(job, 2)

    # Fill the line (2 places) and one more: the third newcomer is refused with a clear message.
    others = [client(url) for _ in range(3)]
    for c in others:
        split(c, "Andorra")
    waiting = [c.submit(*TINY_CONTEXTS, api_name="/contexts") for c in others[:2]]
    deadline = time.monotonic() + 30
    while rt.jobs.waiting() < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert rt.jobs.waiting() == 2
    with pytest.raises(AppError, match="server is busy"):
        others[2].predict(*TINY_CONTEXTS, api_name="/contexts")
    # The tokenizer never waits either.
    start = time.monotonic()
    assert split(others[2], "Tarkovsky")[2]["words"][0]["word"] == " Tarkovsky"
    assert time.monotonic() - start < 5

    start = time.monotonic()
    answer = runner.predict(api_name="/stop")
    assert time.monotonic() - start < 5 and "Stopping" in answer
    status, _, _, details = job.result(timeout=60)
    assert "stopped by you" in details["cancelled"] and details["steps"]["tokdist"] < 200
    assert "Stopped" in status
    # The waiting jobs then run in turn.
    for w in waiting:
        assert w.result(timeout=120)[2]["words"][" Andorra"]["train"] == 4


def test_a_session_cannot_change_its_words_mid_run_and_results_match_the_run(server):
    url, _ = server
    c = client(url)
    ready(c, "Schopenhauer, Andorra")
    job = c.submit(["subword_mean", "tokdist"], 6, 0.01, 2, -1, "ntp", 0, api_name="/distill")
    wait_for_steps(job, 1)
    with pytest.raises(AppError, match="while a training run is running"):
        split(c, "Tarkovsky")
    with pytest.raises(AppError, match="while a training run is running"):
        c.predict(*TINY_CONTEXTS, api_name="/contexts")
    details = job.result(timeout=180)[3]
    assert details["finished"] == ["subword_mean", "tokdist"] and details["config"]["words"] == [
        " Schopenhauer", " Andorra"]
    compare = c.predict(" Andorra", 3, api_name="/compare")[-1]
    assert set(compare["metrics"]["tokdist"]) == {" Schopenhauer", " Andorra"}
    _, _, code, export = c.predict("tokdist", False, api_name="/export")
    assert export["words"] == [" Schopenhauer", " Andorra"] and "'Schopenhauer', 'Andorra'" in code
    # Once the run is over the words can change, and the old results go with them.
    split(c, "Tarkovsky")
    assert_no_snippets(c)


def test_a_cancelled_generation_request_stops_using_the_cpu_within_seconds(server):
    url, rt = server
    c = client(url)
    split(c, "Krankenwagen")
    job = c.submit("generated", [], "", 60, 0, 128, 0, api_name="/contexts")  # ~20 s of sampling
    deadline = time.monotonic() + 60
    while not rt.jobs.busy() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(2.0)  # sampling is under way
    me = psutil.Process()
    busy = me.cpu_times()
    time.sleep(1.0)
    assert sum(me.cpu_times()[:2]) - sum(busy[:2]) > 0.5, "generation should be using the CPU"
    job.cancel()
    deadline = time.monotonic() + 10
    while rt.jobs.busy() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not rt.jobs.busy(), "the cancelled generation still holds the worker"
    quiet = me.cpu_times()
    time.sleep(1.0)
    assert sum(me.cpu_times()[:2]) - sum(quiet[:2]) < 0.3, "the cancelled generation is still computing"
    # The session is free and unchanged: it never got contexts.
    assert_no_snippets(c)


def test_the_time_limit_stops_a_run_keeps_what_finished_and_refuses_runs_that_cannot_fit(bundled_lm):
    rt = bundled_runtime(bundled_lm, max_job_seconds=6)
    with launched_app(rt) as url:
        c = client(url)
        ready(c, "Schopenhauer")
        # Honest estimates refuse a run that cannot finish in 6 s, saying both figures.
        with pytest.raises(AppError, match=r"would take about .* the limit is 6 s per job"):
            distill(c, ["tokdist"], 50, batch=1)
        # A machine slower than measured (a busy one): the estimate lets the run in, the limit stops it.
        speed = estimate.machine_speed(rt.model())
        speed.correction, real = 1e-3, speed.correction
        try:
            status, _, _, details = distill(c, ["subword_mean", "tokdist"], 50, batch=1)
        finally:
            speed.correction = real
        assert "time limit of 6 s" in details["cancelled"] and "time limit of 6 s" in status
        assert details["finished"] == ["subword_mean"] and 1 <= details["steps"]["tokdist"] < 200


def test_odd_api_values_get_messages_naming_the_field_and_no_server_paths(server, tmp_path):
    url, _ = server
    c = client(url)
    split(c, "Schopenhauer")

    def fails(match: str, *args, api_name: str) -> str:
        with pytest.raises(AppError, match=match) as err:
            c.predict(*args, api_name=api_name)
        return str(err.value)

    fails("Training snippets per word must be a number, got 'many'", "bundled", [], "", "many", 2, 24, 0,
          api_name="/contexts")
    fails("Random seed must be a finite number", "bundled", [], "", 4, 2, 24, "NaN", api_name="/contexts")
    fails("Random seed must be a whole number", "bundled", [], "", 4, 2, 24, 1.5, api_name="/contexts")
    fails("must be true or false, got 'no'", "Schopenhauer", "smollm2-135m", "no", api_name="/split")
    c.predict(*TINY_CONTEXTS, api_name="/contexts")
    fails("Tick at least one method", None, 1, 0.01, 8, -1, "ntp", 0, api_name="/distill")
    fails("0 is not in the list of choices", ["tokdist"], 1, 0.01, 8, 0, "ntp", 0, api_name="/distill")
    fails("Training seed must be a finite number", ["tokdist"], 1, 0.01, 8, -1, "ntp", "inf",
          api_name="/distill")
    fails(r"Batch size \(snippets per Adam step\) must be a number", ["tokdist"], 1, 0.01, "big", -1, "ntp", 0,
          api_name="/distill")
    # A broken upload: the message names the file, never the server folder it was stored in.
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1" + b"\x00garbage" * 64)
    from gradio_client import handle_file

    message = fails(".", "files", [handle_file(str(broken))], "", 4, 2, 24, 0, api_name="/contexts")
    assert "broken.parquet" in message and "/tmp" not in message and str(tmp_path) not in message
