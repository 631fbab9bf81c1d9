"""Click through the real page in headless Chromium (Debian's `chromium`, driven by Playwright).

Saves a screenshot of every tab into $TOKDIST_SHOTS/tour (default /tmp/shots/tour) for a person to look at.
"""

from __future__ import annotations

import os
import re

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from conftest import SHOTS, app_page, close_toasts, open_tab, shot_on_failure  # noqa: E402
from conftest import shot as save_shot  # noqa: E402

pytestmark = pytest.mark.browser

STEP_TIMEOUT_MS = 240_000  # one training step on a busy 2-core machine can take a while


@pytest.fixture(scope="module")
def page():
    with app_page() as pg:
        open_tab(pg, "1 · Words")  # the page opens on tab 0 (Find words)
        pg.locator("#split-btn").wait_for()
        yield pg


def shot(page, name: str) -> None:
    save_shot(page, f"tour/{name}")


def test_click_through_every_tab(page):
    with shot_on_failure(page, "tour/99-failure"):
        click_through(page)


def click_through(page) -> None:
    # Bad input first: an empty word box shows a visible error and the page stays usable.
    page.locator("#words-input textarea").fill("")
    page.locator("#split-btn").click()
    page.get_by_text("Type at least one word").first.wait_for()
    shot(page, "00-empty-words-error")
    close_toasts(page)

    # Words: the first quick demo fills every tab's settings.
    page.get_by_text("Schopenhauer, Andorra · quick demo").first.click()
    page.wait_for_timeout(300)
    assert page.locator("#words-input textarea").input_value() == "Schopenhauer, Andorra"
    page.locator("#split-btn").click()
    page.get_by_text("can become new tokens").wait_for()
    assert page.locator(".td-chip").count() >= 6  # 3 pieces per word
    shot(page, "01-words")

    open_tab(page, "2 · Contexts")
    page.locator("#contexts-btn").click()
    page.get_by_text("Snippets ready for 2 of 2").wait_for(timeout=STEP_TIMEOUT_MS)
    assert page.locator("mark").count() >= 4
    shot(page, "02-contexts")

    open_tab(page, "3 · Distill")
    page.locator("#train-btn").click()
    # Mid-run: the progress bar moves and the live loss curve has at least one line.
    page.locator("#train-progress").get_by_text(re.compile(r"step [1-9]")).wait_for(timeout=STEP_TIMEOUT_MS)
    page.locator("#loss-plot .scatterlayer .trace").first.wait_for(timeout=STEP_TIMEOUT_MS)
    shot(page, "03-distill-running")
    page.get_by_text("Open the Compare tab").wait_for(timeout=STEP_TIMEOUT_MS)
    shot(page, "03-distill-done")

    # Compare fills itself after training.
    open_tab(page, "4 · Compare")
    page.locator("#metrics-table .td-best").first.wait_for(timeout=STEP_TIMEOUT_MS)
    assert page.locator("#metrics-table tbody tr").count() == 6  # 2 words x 3 methods
    shot(page, "04-compare")

    open_tab(page, "6 · Generate")
    assert "Schopenhauer" in page.locator("#prompt textarea").input_value() or \
        "Andorra" in page.locator("#prompt textarea").input_value()
    page.locator("#generate-btn").click()
    page.locator(".td-card").nth(3).wait_for(timeout=STEP_TIMEOUT_MS)  # original + 3 methods
    shot(page, "05-generate")

    open_tab(page, "7 · Lens")
    page.locator("#lens-btn").click()
    page.get_by_text("original pieces (top-3 next)").wait_for(timeout=STEP_TIMEOUT_MS)
    # Attention to the word: two panels (this snippet, the average), the original pieces + 3 methods in each.
    assert page.locator("#attention-plot .scatterlayer .trace").count() == 8
    page.get_by_text("How much the words after").first.wait_for()
    shot(page, "06-lens")
    page.locator("#attention-plot").scroll_into_view_if_needed()
    page.wait_for_timeout(400)
    page.locator("#attention-plot").screenshot(path=str(SHOTS / "tour" / "06-lens-attention.png"))

    open_tab(page, "9 · Export")
    page.locator("#export-btn").click()
    page.get_by_text("TokenDistillation(model=").first.wait_for(timeout=STEP_TIMEOUT_MS)
    page.locator("#rows-files a").nth(1).wait_for()  # two download links: safetensors + JSON
    listing = page.locator("#rows-files").inner_text()
    assert "new_rows" in listing and "safetensors" in listing, listing
    shot(page, "07-export")


def test_stop_button_keeps_finished_methods(page):
    """Runs after the click-through (same page and session): a long run is stopped from the page."""
    open_tab(page, "3 · Distill")
    for elem, value in (("#epochs", "20"), ("#batch-size", "1")):
        box = page.locator(f"{elem} input[type=number]")
        box.fill(value)
        box.press("Enter")
    page.locator("#train-btn").click()
    page.locator("#train-progress").get_by_text(re.compile(r"step [2-9]")).wait_for(timeout=STEP_TIMEOUT_MS)
    page.locator("#stop-btn").click()
    page.get_by_text("Stopped").first.wait_for(timeout=STEP_TIMEOUT_MS)
    page.get_by_text("Kept the methods that finished").wait_for()
    close_toasts(page)
    shot(page, "08-distill-stopped")


def test_run_all_in_a_fresh_session(page):
    """Reload = a new session; the ▶ button runs split -> contexts -> distill -> compare with an example."""
    page.reload()
    open_tab(page, "1 · Words")
    page.locator("#split-btn").wait_for()
    assert page.locator(".td-chip").count() == 0  # nothing carried over from the previous session
    page.get_by_text("aardvark, Kandahar, Wimbledon · baselines").first.click()
    page.wait_for_timeout(300)
    page.locator("#run-all-btn").click()
    # The page moves to Distill while training (live curve) and to Compare at the end by itself.
    page.locator("#train-progress").get_by_text(re.compile(r"step [1-9]")).wait_for(timeout=STEP_TIMEOUT_MS)
    page.locator("#metrics-table .td-best").first.wait_for(timeout=STEP_TIMEOUT_MS)
    page.get_by_role("tab", name="4 · Compare", selected=True).wait_for(timeout=STEP_TIMEOUT_MS)
    assert page.locator("#metrics-table tbody tr").count() == 12  # 3 words x 4 methods
    shot(page, "09-run-all-compare")
