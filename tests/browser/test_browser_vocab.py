"""The Find words tab in headless Chromium: candidates of the bundled corpus, Stop, and sending them on.

Screenshots go to $TOKDIST_SHOTS (default /tmp/shots) for a person to look at.
"""

from __future__ import annotations

import pytest

from tests.helpers import JOB_TIMEOUT_MS, browser_page, close_toasts, shot, skip_without_chromium

skip_without_chromium()
from playwright.sync_api import expect  # noqa: E402


@pytest.fixture(scope="module")
def page(shared_app):
    with browser_page(shared_app[0]) as pg:
        expect(pg.locator("#discover-btn")).to_be_visible()  # the first tab is open on arrival
        yield pg


def test_find_words_tab_lists_candidates_and_sends_them_to_the_words_box(page):
    expect(page.get_by_role("tab", name="0 · Find words", selected=True)).to_be_visible()
    shot(page, "vocab-00-empty")

    # Bad input first: uploads chosen but none given -> a visible message, the page stays usable.
    page.locator("#vocab-source").get_by_text("My uploaded files").click()
    page.locator("#discover-btn").click()
    expect(page.get_by_text("no file was uploaded").first).to_be_visible()
    shot(page, "vocab-01-no-upload-error")
    close_toasts(page)

    # Stop from the tab ends a search mid-count with a message; nothing is listed.
    page.locator("#vocab-source").get_by_text("Bundled corpus").click()
    page.locator("#discover-btn").click()
    # Stop once the server is counting (a fixed wait raced the job's start on a loaded machine).
    expect(page.get_by_text("Counting words in").first).to_be_visible(timeout=JOB_TIMEOUT_MS)
    page.locator("#discover-stop-btn").click()
    expect(page.get_by_text("Stopped (stopped by you) before the count finished").first).to_be_visible(
        timeout=JOB_TIMEOUT_MS)
    expect(page.locator("#discover-table tbody tr")).to_have_count(0)
    close_toasts(page)

    page.locator("#discover-btn").click()
    expect(page.locator("#discover-table tbody tr")).to_have_count(50, timeout=JOB_TIMEOUT_MS)
    first_token = page.locator("#discover-table tbody tr").first.locator("td").nth(1).inner_text()
    assert first_token.startswith("␣")
    expect(page.locator("#savings-plot .scatterlayer .trace").first).to_be_attached()
    expect(page.get_by_text("How to read this curve")).to_be_visible()
    expect(page.locator("#adapt-command")).to_contain_text("tokdist adapt --data bundled --top 50")
    expect(page.locator("#discover-ticks input[type=checkbox]:checked")).to_have_count(10)
    shot(page, "vocab-02-candidates")

    page.locator("#send-words-btn").click()
    expect(page.get_by_role("tab", name="1 · Words", selected=True)).to_be_visible()
    words = page.locator("#words-input textarea").input_value()
    assert words.split(", ")[0] == first_token.lstrip("␣") and len(words.split(", ")) == 10
    page.locator("#split-btn").click()
    expect(page.get_by_text("10 words can become new tokens")).to_be_visible()
    shot(page, "vocab-03-sent-to-words")
