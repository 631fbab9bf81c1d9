"""Load test: 8 sessions at once through the whole flow on one app whose line holds 4 waiting jobs (loopback
only, bounded): sessions may be told the server is busy, and every one still gets through.

Every session learns its own word. The only errors allowed are the line's clear "server is busy"
answers (retried after a pause, a bounded number of times); no session may see another's words; the
shared base model is bit-identical afterwards. The figures are printed as JSON (README, reliability).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from tests.helpers import assert_base_unchanged, base_state, bundled_runtime, launched_app  # noqa: E402

# Words of the bundled corpus with enough occurrences, each split into several pieces by SmolLM2.
WORDS = ["Agassi", "Schopenhauer", "Andorra", "Tarkovsky", "Azerbaijani", "Qantas", "Kandahar", "Wimbledon"]
LINE = 4  # waiting heavy jobs the app accepts: half the sessions, so the line really fills
# A refused call tries again after a pause, for at most this long: the line is first come, first served, so an
# unlucky session can be refused many times in a row while the others' jobs run (each about a second).
RETRY_FOR_S = 300


def call(c: Client, stats: dict, *args, api_name: str):
    deadline = time.monotonic() + RETRY_FOR_S
    tries = 0
    while time.monotonic() < deadline:
        tries += 1
        start = time.monotonic()
        try:
            out = c.predict(*args, api_name=api_name)
        except AppError as exc:
            if "server is busy" not in str(exc):
                raise
            stats["busy"] += 1
            time.sleep(2.0)
            continue
        stats["calls"].append((api_name, time.monotonic() - start))
        return out
    raise AssertionError(f"{api_name}: the line stayed full for {RETRY_FOR_S} s ({tries} tries)")


def flow(url: str, word: str) -> dict:
    stats: dict = {"busy": 0, "calls": []}
    c = Client(url, verbose=False, download_files=False)
    start = time.monotonic()
    me = " " + word
    details = call(c, stats, word, "smollm2-135m", True, api_name="/split")[2]
    assert [w["word"] for w in details["words"]] == [me]
    details = call(c, stats, "bundled", [], "", 4, 2, 24, 0, api_name="/contexts")[2]
    assert list(details["words"]) == [me] and details["words"][me]["train"] == 4
    details = call(c, stats, ["subword_mean", "tokdist"], 1, 0.01, 8, -1, "ntp", 0, api_name="/distill")[3]
    assert details["finished"] == ["subword_mean", "tokdist"] and details["config"]["words"] == [me]
    details = call(c, stats, None, 3, api_name="/compare")[-1]
    assert details["word"] == me and set(details["metrics"]["tokdist"]) == {me}
    details = call(c, stats, me, 1, api_name="/lens")[-1]
    assert details["word"] == me
    details = call(c, stats, f"We talked about {word} all day", [], 3, 0, 0, api_name="/generate")[1]
    assert len(details["generations"]) == 3
    details = call(c, stats, "tokdist", False, api_name="/export")[3]
    assert details["words"] == [me]
    stats["flow_s"] = time.monotonic() - start
    return stats


def test_sessions_at_once_through_the_whole_flow_with_a_full_line(bundled_lm):
    rt = bundled_runtime(bundled_lm, max_waiting_jobs=LINE)
    before = base_state(rt)
    with launched_app(rt) as url:
        start = time.monotonic()
        with ThreadPoolExecutor(len(WORDS)) as pool:
            results = list(pool.map(lambda w: flow(url, w), WORDS))
        wall = time.monotonic() - start
    assert_base_unchanged(rt, before)
    waits = [waited for _, waited, _ in rt.jobs.finished]
    ran = [seconds for _, _, seconds in rt.jobs.finished]
    figures = {
        "sessions": len(WORDS), "wall_s": round(wall, 1),
        "flow_s_median": round(statistics.median(r["flow_s"] for r in results), 1),
        "flow_s_max": round(max(r["flow_s"] for r in results), 1),
        "heavy_jobs": len(waits), "line_wait_s_median": round(statistics.median(waits), 2),
        "line_wait_s_max": round(max(waits), 2), "job_s_median": round(statistics.median(ran), 2),
        "busy_answers": sum(r["busy"] for r in results), "refused_by_line": rt.jobs.refused,
    }
    print("LOAD " + json.dumps(figures))
    assert len(waits) == 6 * len(WORDS)  # contexts, distill, compare, lens, generate, export per session
    assert not rt.jobs.busy()
