"""The Inspect tab in headless Chromium: per-snippet losses, a snippet added from the page, one word re-trained.

Screenshots go to $TOKDIST_SHOTS/inspect (default /tmp/shots/inspect) for a person to look at.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from conftest import app_page, close_toasts, open_tab, shot_on_failure  # noqa: E402
from conftest import shot as save_shot  # noqa: E402
from test_browser import STEP_TIMEOUT_MS  # noqa: E402

pytestmark = pytest.mark.browser

NEW_TEXT = "In the seminar we read Schopenhauer on will and representation, and argued about it for hours."


@pytest.fixture(scope="module")
def page():
    with app_page() as pg:
        pg.locator("#discover-btn").wait_for()
        yield pg


def shot(page, name: str) -> None:
    save_shot(page, f"inspect/{name}")


def set_number(page, elem: str, value: str) -> None:
    box = page.locator(f"{elem} input[type=number]")
    box.fill(value)
    box.press("Enter")


def bars(page) -> int:
    return page.locator("#inspect-plot .barlayer .point").count()


def table_rows(page):
    return page.locator("#inspect-table .virtual-row")  # Gradio 6 draws rows as divs, in view only


def test_inspect_tab_shows_losses_adds_a_snippet_and_retrains(page):
    with shot_on_failure(page, "inspect/inspect-99-failure"):
        inspect_flow(page)


def inspect_flow(page) -> None:
    open_tab(page, "1 · Words")
    page.locator("#words-input textarea").fill("Schopenhauer, Andorra")
    page.locator("#split-btn").click()
    page.get_by_text("can become new tokens").wait_for()

    open_tab(page, "2 · Contexts")
    page.locator("#source").get_by_text("Bundled corpus only").click()
    page.locator("#contexts-btn").click()
    page.get_by_text("Snippets ready for 2 of 2").wait_for(timeout=STEP_TIMEOUT_MS)

    open_tab(page, "3 · Distill")
    set_number(page, "#epochs", "3")
    page.locator("#train-btn").click()
    page.get_by_text("Open the Compare tab").wait_for(timeout=STEP_TIMEOUT_MS)
    # Training fills the Compare tab by itself; a session runs one heavy job at a time, so let it finish.
    open_tab(page, "4 · Compare")
    page.locator("#metrics-table .td-best").first.wait_for(timeout=STEP_TIMEOUT_MS)

    # Opening the tab fills the pickers with the trained words and methods.
    open_tab(page, "8 · Inspect")
    assert page.locator("#inspect-word input").input_value() == "␣Schopenhauer"
    page.locator("#inspect-btn").click()
    page.get_by_text("Average held-out loss").wait_for(timeout=STEP_TIMEOUT_MS)
    page.locator("#inspect-plot .barlayer .trace").first.wait_for()
    assert page.locator("#inspect-plot .barlayer .trace").count() == 2  # training and held-out bars
    assert bars(page) == 12  # 8 training + 4 held-out snippets
    # The table draws only the rows in view (it scrolls): the first ones, worst first, the word marked.
    table_rows(page).nth(5).wait_for()
    assert page.locator("#inspect-table mark").count() >= 6
    losses = [float(table_rows(page).nth(i).locator("[role=gridcell]").nth(2).inner_text()) for i in range(6)]
    assert losses == sorted(losses, reverse=True)
    shot(page, "inspect-01-losses")

    # A bad snippet: a visible message, nothing added.
    page.locator("#snippet-text textarea").fill("A sentence about something else entirely.")
    page.locator("#add-snippet-btn").click()
    page.get_by_text("does not contain the word").first.wait_for()
    shot(page, "inspect-02-bad-snippet")
    close_toasts(page)

    # Clicking a training row copies it into the editor, ready to replace it.
    train_row = table_rows(page).filter(has_text="train ").first
    label = train_row.locator("[role=gridcell]").first.inner_text().strip()
    train_row.locator("[role=gridcell]").nth(3).click()
    page.get_by_text(f"Editing {label}").wait_for()
    assert "Schopenhauer" in page.locator("#snippet-text textarea").input_value()

    # Write a new one instead and add it: the table grows by one.
    page.locator("#save-as input").fill("new")
    page.locator("#save-as input").press("Enter")
    page.locator("#snippet-text textarea").fill(NEW_TEXT)
    page.locator("#add-snippet-btn").click()
    page.get_by_text("Added train 9").wait_for()
    page.get_by_text("Press Re-train this word to learn from the current snippets").wait_for(timeout=STEP_TIMEOUT_MS)
    assert bars(page) == 13
    shot(page, "inspect-03-added")

    page.locator("#retrain-btn").click()
    page.get_by_text("Re-trained ␣Schopenhauer alone on its 9 training snippets").wait_for(timeout=STEP_TIMEOUT_MS)
    page.get_by_text("held-out hidden MSE").first.wait_for()
    # The table is drawn again under the new row: the warning about the old row goes away.
    page.get_by_text("Press Re-train this word to learn").wait_for(state="detached", timeout=STEP_TIMEOUT_MS)
    page.get_by_text("Before training (the subword mean)").wait_for()
    assert bars(page) == 13
    shot(page, "inspect-04-retrained")
