"""The Find-words tab in headless Chromium: search the bundled corpus, send words to the Words tab.

Screenshots go to $TOKDIST_SHOTS (default /tmp/shots/) for a person to look at.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from conftest import app_page, close_toasts, shot  # noqa: E402

pytestmark = pytest.mark.browser

SEARCH_TIMEOUT_MS = 120_000  # counting the bundled corpus on a busy 2-core machine


@pytest.fixture(scope="module")
def page():
    with app_page() as pg:
        pg.locator("#discover-btn").wait_for()  # the first tab is open on arrival
        yield pg


def test_find_words_tab_lists_candidates_and_sends_them_to_the_words_box(page):
    assert page.get_by_role("tab", name="0 · Find words", selected=True).is_visible()
    shot(page, "vocab-00-empty")

    # Bad input first: uploads chosen but none given -> a visible message, the page stays usable.
    page.locator("#vocab-source").get_by_text("My uploaded files").click()
    page.locator("#discover-btn").click()
    page.get_by_text("no file was uploaded").first.wait_for()
    shot(page, "vocab-01-no-upload-error")
    close_toasts(page)

    # Stop from the tab ends a search mid-count with a message; nothing is listed.
    page.locator("#vocab-source").get_by_text("Bundled corpus").click()
    page.locator("#discover-btn").click()
    # Stop once the server is counting (a fixed wait raced the job's start on a loaded machine).
    page.get_by_text("Counting words in").first.wait_for(timeout=SEARCH_TIMEOUT_MS)
    page.locator("#discover-stop-btn").click()
    page.get_by_text("Stopped (stopped by you) before the count finished").first.wait_for(timeout=SEARCH_TIMEOUT_MS)
    assert page.locator("#discover-table tbody tr").count() == 0
    close_toasts(page)

    page.locator("#discover-btn").click()
    page.locator("#discover-table tbody tr").nth(49).wait_for(timeout=SEARCH_TIMEOUT_MS)  # 50 candidates
    assert page.locator("#discover-table tbody tr").count() == 50
    first_token = page.locator("#discover-table tbody tr").first.locator("td").nth(1).inner_text()
    assert first_token.startswith("␣")
    page.locator("#savings-plot .scatterlayer .trace").first.wait_for()
    page.get_by_text("How to read this curve").wait_for()
    assert "tokdist adapt --data bundled --top 50" in page.locator("#adapt-command").inner_text()
    ticked = page.locator("#discover-ticks input[type=checkbox]:checked")
    assert ticked.count() == 10
    shot(page, "vocab-02-candidates")

    page.locator("#send-words-btn").click()
    page.get_by_role("tab", name="1 · Words", selected=True).wait_for()
    words = page.locator("#words-input textarea").input_value()
    assert words.split(", ")[0] == first_token.lstrip("␣") and len(words.split(", ")) == 10
    page.locator("#split-btn").click()
    page.get_by_text("10 words can become new tokens").wait_for()
    shot(page, "vocab-03-sent-to-words")
