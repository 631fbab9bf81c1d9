"""The Replay tab in headless Chromium: the path a new row took, with a slider and Play/Pause that move it.

Screenshots go to $TOKDIST_SHOTS/replay (default /tmp/shots/replay) for a person to look at.
"""

from __future__ import annotations

import pytest

from tests.helpers import (
    JOB_TIMEOUT_MS,
    browser_page,
    open_tab,
    set_number,
    shot_on_failure,
    skip_without_chromium,
)
from tests.helpers import shot as save_shot

skip_without_chromium()
from playwright.sync_api import expect  # noqa: E402

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
ACTIVE_JS = "document.querySelector('#replay-plot .js-plotly-plot')._fullLayout.sliders[0].active"
WIDTH_JS = "(() => { const r = document.querySelector('#replay-plot .js-plotly-plot').layout.xaxis.range; " \
           "return r[1] - r[0]; })()"
EPOCHS = 3  # one L-BFGS step an epoch, so the slider has the start and 3 steps


@pytest.fixture(scope="module")
def page(shared_app):
    with browser_page(shared_app[0]) as pg:
        yield pg


def shot(page, name: str) -> None:
    save_shot(page, f"replay/{name}")


def state(page) -> dict:
    return page.evaluate(STATE_JS)


def wait_until(page, condition: str, timeout: int | None = None) -> None:
    """Wait for a change the page makes over time (the animation, a redraw) instead of sleeping."""
    page.wait_for_function(condition, timeout=timeout)


def wait_for_marker_at(page, end: str) -> None:
    """The marker's redraw follows the slider's `active` a moment later on a busy machine: wait for it to
    reach the path's `end` ("start" or "end"); a marker that never gets there fails the wait."""
    wait_until(page, f"(() => {{ const s = ({STATE_JS})(); "
                     f"return s.marker[0] === s.{end}[0] && s.marker[1] === s.{end}[1]; }})()")


def test_replay_tab_shows_the_path_and_the_slider_and_play_move_it(page):
    with shot_on_failure(page, "replay/replay-99-failure"):
        replay_after_a_quick_run(page)


def replay_after_a_quick_run(page) -> None:
    open_tab(page, "1 · Words")
    page.get_by_text("Schopenhauer, Andorra · quick demo").first.click()
    expect(page.locator("#words-input textarea")).to_have_value("Schopenhauer, Andorra")
    page.locator("#split-btn").click()
    expect(page.get_by_text("can become new tokens")).to_be_visible()
    open_tab(page, "2 · Contexts")
    page.locator("#contexts-btn").click()
    expect(page.get_by_text("Snippets ready for 2 of 2")).to_be_visible(timeout=JOB_TIMEOUT_MS)
    open_tab(page, "3 · Distill")
    set_number(page, "#epochs", str(EPOCHS))
    page.locator("#train-btn").click()
    expect(page.get_by_text("Open the Compare tab")).to_be_visible(timeout=JOB_TIMEOUT_MS)
    open_tab(page, "4 · Compare")  # it fills itself after training; the session is busy until then
    expect(page.locator("#metrics-table .td-best").first).to_be_visible(timeout=JOB_TIMEOUT_MS)

    open_tab(page, "5 · Replay")
    page.locator("#replay-btn").click()
    expect(page.locator("#replay-summary").get_by_text("Token Distillation")).to_be_visible(timeout=JOB_TIMEOUT_MS)
    expect(page.locator(f"{PLOT} .slider-rail-touch-rect")).to_be_attached()
    final = state(page)
    assert final["count"] == EPOCHS + 1  # the start + one step an epoch
    assert final["active"] == final["count"] - 1 and final["marker"] == final["end"]  # opens on the final row
    assert final["start"] != final["end"]
    page.locator("#replay-plot").scroll_into_view_if_needed()
    shot(page, "replay-final")

    # ▶ Play starts over from step 0 and walks the marker along the path: pause it on the way.
    page.locator("#replay-play").click()
    wait_until(page, f"{ACTIVE_JS} >= 1 && {ACTIVE_JS} < {final['count'] - 1}")
    page.locator("#replay-pause").click()
    paused = state(page)
    assert 0 < paused["active"] < final["count"] - 1, paused
    assert paused["start"] != paused["marker"] != paused["end"]  # somewhere along the path
    page.wait_for_timeout(800)  # the one deliberate wait: a paused marker must stay where it is
    assert state(page) == paused
    shot(page, "replay-paused")
    page.locator("#replay-play").click()  # ▶ goes on from where it was paused, to the end
    wait_until(page, f"{ACTIVE_JS} > {paused['active']}")
    wait_until(page, f"{ACTIVE_JS} == {final['count'] - 1}", timeout=20_000)
    wait_for_marker_at(page, "end")
    assert state(page)["marker"] == final["end"]

    # The slider: a click at its left end shows step 0, the start (the subword mean).
    rail = page.locator(f"{PLOT} .slider-rail-touch-rect").bounding_box()
    page.mouse.click(rail["x"] + 2, rail["y"] + rail["height"] / 2)
    wait_until(page, f"{ACTIVE_JS} == 0")
    wait_for_marker_at(page, "start")
    start = state(page)
    assert start["active"] == 0 and start["marker"] == start["start"], start
    shot(page, "replay-step0")

    # The map's two views: up close on the paths (how it opens) and the whole of Compare's map.
    close = page.evaluate(WIDTH_JS)
    page.locator(f"{PLOT} .updatemenu-button").nth(1).click()
    wait_until(page, f"{WIDTH_JS} > {5 * close}")
    shot(page, "replay-whole-map")
