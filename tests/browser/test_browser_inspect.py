"""The Inspect tab in headless Chromium: per-snippet losses, a snippet added from the page, one word re-trained.

Screenshots go to $TOKDIST_SHOTS/inspect (default /tmp/shots/inspect) for a person to look at.
"""

from __future__ import annotations

import re

import pytest

from tests.helpers import (
    JOB_TIMEOUT_MS,
    browser_page,
    close_toasts,
    open_tab,
    set_number,
    shot_on_failure,
    skip_without_chromium,
)
from tests.helpers import shot as save_shot

skip_without_chromium()
from playwright.sync_api import expect  # noqa: E402

NEW_TEXT = "In the seminar we read Schopenhauer on will and representation, and argued about it for hours."


@pytest.fixture(scope="module")
def page(shared_app):
    with browser_page(shared_app[0]) as pg:
        expect(pg.locator("#discover-btn")).to_be_visible()
        yield pg


def shot(page, name: str) -> None:
    save_shot(page, f"inspect/{name}")


def bars(page):
    return page.locator("#inspect-plot .barlayer .point")


def table_rows(page):
    return page.locator("#inspect-table .virtual-row")  # Gradio 6 draws rows as divs, in view only


def test_inspect_tab_shows_losses_adds_a_snippet_and_retrains(page):
    with shot_on_failure(page, "inspect/inspect-99-failure"):
        inspect_flow(page)


def inspect_flow(page) -> None:
    open_tab(page, "1 · Words")
    page.locator("#words-input textarea").fill("Schopenhauer, Andorra")
    page.locator("#split-btn").click()
    expect(page.get_by_text("can become new tokens")).to_be_visible()

    open_tab(page, "2 · Contexts")
    page.locator("#source").get_by_text("Bundled corpus only").click()
    page.locator("#contexts-btn").click()
    expect(page.get_by_text("Snippets ready for 2 of 2")).to_be_visible(timeout=JOB_TIMEOUT_MS)

    open_tab(page, "3 · Distill")
    set_number(page, "#epochs", "1")
    page.locator("#train-btn").click()
    expect(page.get_by_text("Open the Compare tab")).to_be_visible(timeout=JOB_TIMEOUT_MS)
    # Training fills the Compare tab by itself; a session runs one heavy job at a time, so let it finish.
    open_tab(page, "4 · Compare")
    expect(page.locator("#metrics-table .td-best").first).to_be_visible(timeout=JOB_TIMEOUT_MS)

    # Opening the tab fills the pickers with the trained words and methods.
    open_tab(page, "8 · Inspect")
    expect(page.locator("#inspect-word input")).to_have_value("␣Schopenhauer")
    page.locator("#inspect-btn").click()
    expect(page.get_by_text("Average held-out loss")).to_be_visible(timeout=JOB_TIMEOUT_MS)
    expect(page.locator("#inspect-plot .barlayer .trace")).to_have_count(2)  # training and held-out bars
    expect(bars(page)).to_have_count(12)  # 8 training + 4 held-out snippets
    # The table draws only the rows in view (it scrolls): the first ones, worst first, the word marked.
    expect(table_rows(page).nth(5)).to_be_visible()
    assert page.locator("#inspect-table mark").count() >= 6
    losses = [float(table_rows(page).nth(i).locator("[role=gridcell]").nth(2).inner_text()) for i in range(6)]
    assert losses == sorted(losses, reverse=True)
    shot(page, "inspect-01-losses")

    # A bad snippet: a visible message, nothing added.
    page.locator("#snippet-text textarea").fill("A sentence about something else entirely.")
    page.locator("#add-snippet-btn").click()
    expect(page.get_by_text("does not contain the word").first).to_be_visible()
    expect(bars(page)).to_have_count(12)
    shot(page, "inspect-02-bad-snippet")
    close_toasts(page)

    # Clicking a training row copies it into the editor, ready to replace it.
    train_row = table_rows(page).filter(has_text="train ").first
    label = train_row.locator("[role=gridcell]").first.inner_text().strip()
    train_row.locator("[role=gridcell]").nth(3).click()
    expect(page.get_by_text(f"Editing {label}")).to_be_visible()
    expect(page.locator("#snippet-text textarea")).to_have_value(re.compile("Schopenhauer"))

    # Write a new one instead and add it: the table grows by one.
    page.locator("#save-as input").fill("new")
    page.locator("#save-as input").press("Enter")
    page.locator("#snippet-text textarea").fill(NEW_TEXT)
    page.locator("#add-snippet-btn").click()
    expect(page.get_by_text("Added train 9")).to_be_visible()
    expect(page.get_by_text("Press Re-train this word to learn from the current snippets")).to_be_visible(
        timeout=JOB_TIMEOUT_MS)
    expect(bars(page)).to_have_count(13)
    shot(page, "inspect-03-added")

    page.locator("#retrain-btn").click()
    expect(page.get_by_text("Re-trained ␣Schopenhauer alone on its 9 training snippets")).to_be_visible(
        timeout=JOB_TIMEOUT_MS)
    expect(page.get_by_text("held-out hidden MSE").first).to_be_visible()
    # The table is drawn again under the new row: the warning about the old row goes away.
    expect(page.get_by_text("Press Re-train this word to learn")).to_have_count(0, timeout=JOB_TIMEOUT_MS)
    expect(page.get_by_text("Before training (the subword mean)")).to_be_visible()
    expect(bars(page)).to_have_count(13)
    shot(page, "inspect-04-retrained")
