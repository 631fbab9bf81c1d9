"""The Replay tab's /trajectory endpoint, on the launched app (bundled model) through gradio_client.

One word, 4 training snippets of 24 tokens, 3 epochs = 3 L-BFGS steps (the default): well under a minute on 2 cores.
"""

from __future__ import annotations

import json
import os

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

torch = pytest.importorskip("torch")
pytest.importorskip("gradio_client")
from gradio_client import Client  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from tests.helpers import wait_for_steps  # noqa: E402

TINY_CONTEXTS = ("bundled", [], "", 4, 2, 24, 0)  # source, files, hf name, train, held-out, length, seed
STEPS = 3  # 3 epochs, each one L-BFGS step on all 4 snippets


@pytest.fixture(scope="module")
def url(shared_app):
    return shared_app[0]


def ready_session(url: str, methods: list[str]) -> Client:
    c = Client(url, verbose=False)
    c.predict("Schopenhauer", "smollm2-135m", True, api_name="/split")
    c.predict(*TINY_CONTEXTS, api_name="/contexts")
    details = c.predict(methods, 3, 0.01, 2, -1, "ntp", 0, api_name="/distill")[3]
    assert details["finished"] == methods and details["steps"].get("tokdist", STEPS) == STEPS, details
    return c


def plotly_json(plot) -> dict:
    """The figure as the page receives it (gradio_client hands a Plot over as {'type', 'plot': json})."""
    return json.loads(plot["plot"]) if isinstance(plot, dict) else json.loads(plot)


def test_trajectory_walks_from_the_subword_mean_to_the_final_row_on_compares_map(url):
    c = ready_session(url, ["subword_mean", "tokdist"])
    compare = c.predict(" Schopenhauer", 5, api_name="/compare")[-1]
    plot, summary, details = c.predict("Schopenhauer", api_name="/trajectory")

    assert details["word"] == " Schopenhauer"
    assert details["points"] == compare["pca"]  # the very same map as Compare
    star = {p["label"]: (p["x"], p["y"]) for p in compare["pca"] if p["kind"] == "new row"}
    assert set(details["paths"]) == {"tokdist"}  # the baseline does not train: only its star is drawn
    path = details["paths"]["tokdist"]
    assert path["steps"] == list(range(STEPS + 1))
    assert len(path["x"]) == len(path["y"]) == STEPS + 1
    assert (path["x"][-1], path["y"][-1]) == pytest.approx(star["tokdist"], rel=1e-5, abs=1e-6)
    assert (path["x"][0], path["y"][0]) == pytest.approx(star["subword_mean"], rel=1e-5, abs=1e-6)
    assert path["distance_from_start"][0] == 0 and path["path_length"] >= path["distance_from_start"][-1] > 0
    assert [s for s, _ in details["losses"]["tokdist"]] == list(range(1, STEPS + 1))
    assert "Token Distillation" in summary and f"after {STEPS} steps" in summary and "Subword mean" in summary

    # The figure: one slider position per recorded step, opening at the last one (the final row).
    fig = plotly_json(plot)
    slider = fig["layout"]["sliders"][0]
    assert [s["label"] for s in slider["steps"]] == [str(s) for s in range(STEPS + 1)]
    assert slider["active"] == STEPS
    update, traces = slider["steps"][-1]["args"]
    marker = fig["data"][traces[0]]  # tokdist's moving marker on the map
    assert marker["x"] == update["x"][0] == [path["x"][-1]] and marker["y"] == [path["y"][-1]]
    first_update, _ = slider["steps"][0]["args"]
    assert first_update["x"][0] == [path["x"][0]] and first_update["x"][-1] == [0, 0]  # step line at 0


def test_trajectory_refuses_what_it_cannot_show_and_the_session_stays_usable(url):
    c = Client(url, verbose=False)
    with pytest.raises(AppError, match="Nothing trained yet"):
        c.predict(None, api_name="/trajectory")
    c.predict("Schopenhauer", "smollm2-135m", True, api_name="/split")
    c.predict(*TINY_CONTEXTS, api_name="/contexts")
    c.predict(["subword_mean"], 1, 0.01, 8, -1, "ntp", 0, api_name="/distill")
    with pytest.raises(AppError, match="no path to replay"):
        c.predict(None, api_name="/trajectory")
    c.predict(["tokdist"], 1, 0.01, 8, -1, "ntp", 0, api_name="/distill")
    with pytest.raises(AppError, match="is not one of this session's trained words"):
        c.predict("Andorra", api_name="/trajectory")
    plot, summary, details = c.predict(None, api_name="/trajectory")  # None: the first trained word
    assert details["word"] == " Schopenhauer" and details["paths"]["tokdist"]["steps"] == [0, 1]


def test_a_replay_asked_for_during_a_run_waits_for_it_and_shows_that_runs_path(url):
    c = ready_session(url, ["tokdist"])  # a first run: 3 steps
    run = c.submit(["tokdist"], 5, 0.01, 2, -1, "ntp", 0, api_name="/distill")  # a second one: 5 steps
    wait_for_steps(run, "tokdist", 1)
    # The session is busy with the run: a view waits behind it (it used to be refused), then shows the new run.
    plot, summary, details = c.predict(None, api_name="/trajectory")
    assert run.result(timeout=60)[3]["finished"] == ["tokdist"]
    assert details["paths"]["tokdist"]["steps"] == list(range(6)) and "after 5 steps" in summary
