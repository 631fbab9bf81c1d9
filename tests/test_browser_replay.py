"""The Replay tab in headless Chromium: after a quick run, the path, the slider and ▶ Play move the markers.

Saves screenshots into $TOKDIST_SHOTS/replay (default /tmp/shots/replay): replay-final, replay-paused, replay-step0,
replay-whole-map.
"""

from __future__ import annotations

import os
import time

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

pytestmark = pytest.mark.browser

from conftest import app_page, open_tab, shot_on_failure  # noqa: E402
from conftest import shot as save_shot  # noqa: E402
from test_browser import STEP_TIMEOUT_MS  # noqa: E402

PLOT = "#replay-plot .js-plotly-plot"
# The figure's state in the page: the slider position, and tokdist's moving marker vs its path's ends.
STATE_JS = """() => {
  const gd = document.querySelector('#replay-plot .js-plotly-plot');
  const slider = gd._fullLayout.sliders[0];
  const [update, traces] = gd.layout.sliders[0].steps[0].args;
  const path = gd.data.find(t => t.name === 'path of Token Distillation');
  return {active: slider.active, count: gd.layout.sliders[0].steps.length,
          marker: [gd.data[traces[0]].x[0], gd.data[traces[0]].y[0]],
          start: [path.x[0], path.y[0]], end: [path.x[path.x.length - 1], path.y[path.y.length - 1]]};
}"""


@pytest.fixture(scope="module")
def page():
    with app_page() as pg:
        yield pg


def shot(page, name: str) -> None:
    save_shot(page, f"replay/{name}")


def state(page) -> dict:
    return page.evaluate(STATE_JS)


def test_replay_tab_shows_the_path_and_the_slider_and_play_move_it(page):
    with shot_on_failure(page, "replay/replay-99-failure"):
        replay_after_a_quick_run(page)


def replay_after_a_quick_run(page) -> None:
    open_tab(page, "1 · Words")
    page.get_by_text("Schopenhauer, Andorra · quick demo").first.click()
    page.wait_for_timeout(300)
    page.locator("#split-btn").click()
    page.get_by_text("can become new tokens").wait_for()
    open_tab(page, "2 · Contexts")
    page.locator("#contexts-btn").click()
    page.get_by_text("Snippets ready for 2 of 2").wait_for(timeout=STEP_TIMEOUT_MS)
    open_tab(page, "3 · Distill")
    page.locator("#train-btn").click()
    page.get_by_text("Open the Compare tab").wait_for(timeout=STEP_TIMEOUT_MS)
    open_tab(page, "4 · Compare")  # it fills itself after training; the session is busy until then
    page.locator("#metrics-table .td-best").first.wait_for(timeout=STEP_TIMEOUT_MS)

    open_tab(page, "5 · Replay")
    page.locator("#replay-btn").click()
    page.locator("#replay-summary").get_by_text("Token Distillation").wait_for(timeout=STEP_TIMEOUT_MS)
    page.locator(f"{PLOT} .slider-rail-touch-rect").wait_for()
    final = state(page)
    assert final["count"] == 7  # the start + 6 epochs x 1 step (8 snippets, batch 8)
    assert final["active"] == final["count"] - 1 and final["marker"] == final["end"]  # opens on the final row
    assert final["start"] != final["end"]
    page.locator("#replay-plot").scroll_into_view_if_needed()
    shot(page, "replay-final")

    # ▶ Play starts over from step 0 and walks the marker along the path to the end.
    page.locator("#replay-play").click()
    page.wait_for_timeout(1500)
    page.locator("#replay-pause").click()
    paused = state(page)
    assert 0 < paused["active"] < final["count"] - 1, paused
    assert paused["start"] != paused["marker"] != paused["end"]  # somewhere along the path
    page.wait_for_timeout(1000)
    assert state(page) == paused  # ❚❚ Pause holds it there
    shot(page, "replay-paused")
    page.locator("#replay-play").click()  # ▶ goes on from where it was paused
    page.wait_for_timeout(200)
    assert state(page)["active"] > paused["active"]
    deadline = time.monotonic() + 20
    while state(page)["active"] != final["count"] - 1 and time.monotonic() < deadline:
        page.wait_for_timeout(250)
    assert state(page)["marker"] == final["end"]

    # The slider: a click at its left end shows step 0, the start (the subword mean).
    rail = page.locator(f"{PLOT} .slider-rail-touch-rect").bounding_box()
    page.mouse.click(rail["x"] + 2, rail["y"] + rail["height"] / 2)
    page.wait_for_timeout(400)
    start = state(page)
    assert start["active"] == 0 and start["marker"] == start["start"], start
    shot(page, "replay-step0")

    # The map's two views: up close on the paths (how it opens) and the whole of Compare's map.
    width = "() => { const r = document.querySelector('#replay-plot .js-plotly-plot').layout.xaxis.range;" \
            " return r[1] - r[0]; }"
    close = page.evaluate(width)
    page.locator(f"{PLOT} .updatemenu-button").nth(1).click()
    page.wait_for_timeout(400)
    assert page.evaluate(width) > 5 * close
    shot(page, "replay-whole-map")
