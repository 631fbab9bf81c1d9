"""Click through the real page in headless Chromium (Debian's `chromium`, driven by Playwright).

Saves a screenshot of every tab into $TOKDIST_SHOTS/tour (default /tmp/shots/tour) for a person to look at.
"""

from __future__ import annotations

import re

import pytest

from tests.helpers import (
    JOB_TIMEOUT_MS,
    SHOTS,
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


@pytest.fixture(scope="module")
def page(shared_app):
    with browser_page(shared_app[0]) as pg:
        open_tab(pg, "1 · Words")  # the page opens on tab 0 (Find words)
        expect(pg.locator("#split-btn")).to_be_visible()
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
    expect(page.get_by_text("Type at least one word").first).to_be_visible()
    shot(page, "00-empty-words-error")
    close_toasts(page)

    # Words: the first quick demo fills every tab's settings.
    page.get_by_text("Schopenhauer, Andorra · quick demo").first.click()
    expect(page.locator("#words-input textarea")).to_have_value("Schopenhauer, Andorra")
    page.locator("#split-btn").click()
    expect(page.get_by_text("can become new tokens")).to_be_visible()
    assert page.locator(".td-chip").count() >= 6  # 3 pieces per word
    shot(page, "01-words")

    open_tab(page, "2 · Contexts")
    page.locator("#contexts-btn").click()
    expect(page.get_by_text("Snippets ready for 2 of 2")).to_be_visible(timeout=JOB_TIMEOUT_MS)
    assert page.locator("mark").count() >= 4
    shot(page, "02-contexts")

    open_tab(page, "3 · Distill")
    set_number(page, "#epochs", "2")  # the demo's 6 epochs show nothing more on the page
    page.locator("#train-btn").click()
    # Mid-run: the progress bar moves and the live loss curve has at least one line.
    expect(page.locator("#train-progress").get_by_text(re.compile(r"step [1-9]"))).to_be_visible(
        timeout=JOB_TIMEOUT_MS)
    expect(page.locator("#loss-plot .scatterlayer .trace").first).to_be_attached(timeout=JOB_TIMEOUT_MS)
    shot(page, "03-distill-running")
    expect(page.get_by_text("Open the Compare tab")).to_be_visible(timeout=JOB_TIMEOUT_MS)
    shot(page, "03-distill-done")

    # Compare fills itself after training: one row per word and method, the best value marked.
    open_tab(page, "4 · Compare")
    expect(page.locator("#metrics-table .td-best").first).to_be_visible(timeout=JOB_TIMEOUT_MS)
    expect(page.locator("#metrics-table tbody tr")).to_have_count(6)  # 2 words x 3 methods
    shot(page, "04-compare")

    open_tab(page, "6 · Generate")
    expect(page.locator("#prompt textarea")).to_have_value(re.compile("Schopenhauer|Andorra"))
    page.locator("#generate-btn").click()
    expect(page.locator(".td-card")).to_have_count(4, timeout=JOB_TIMEOUT_MS)  # original + 3 methods
    shot(page, "05-generate")

    open_tab(page, "7 · Lens")
    page.locator("#lens-btn").click()
    expect(page.get_by_text("original pieces (top-3 next)")).to_be_visible(timeout=JOB_TIMEOUT_MS)
    # Attention to the word: two panels (this snippet, the average), the original pieces + 3 methods in each.
    expect(page.locator("#attention-plot .scatterlayer .trace")).to_have_count(8)
    expect(page.get_by_text("How much the words after").first).to_be_visible()
    shot(page, "06-lens")
    page.locator("#attention-plot").scroll_into_view_if_needed()
    page.locator("#attention-plot").screenshot(path=str(SHOTS / "tour" / "06-lens-attention.png"))

    open_tab(page, "9 · Export")
    page.locator("#export-btn").click()
    expect(page.get_by_text("TokenDistillation(model=").first).to_be_visible(timeout=JOB_TIMEOUT_MS)
    expect(page.locator("#rows-files a")).to_have_count(2)  # two download links: safetensors + JSON
    expect(page.locator("#rows-files")).to_contain_text("new_rows")
    expect(page.locator("#rows-files")).to_contain_text("safetensors")
    shot(page, "07-export")
    # The zip and its formats stay in step: the zip ticks hf, a ticked format ticks the zip, none unticks it.
    zip_box, formats = page.locator("#export-zip input[type=checkbox]"), page.locator("#export-formats")
    hf, peft = formats.get_by_label("hf ·"), formats.get_by_label("peft ·")
    expect(zip_box).not_to_be_checked()
    zip_box.check()
    expect(hf).to_be_checked()
    zip_box.uncheck()
    expect(hf).not_to_be_checked()
    peft.check()
    expect(zip_box).to_be_checked()
    peft.uncheck()
    expect(zip_box).not_to_be_checked()
    peft.check()  # a peft-only zip: the kilobyte adapter and its tokenizer
    expect(zip_box).to_be_checked()
    expect(hf).not_to_be_checked()
    page.locator("#export-btn").click()
    expect(page.locator("#model-zip")).to_contain_text("tokdist-tokdist-model", timeout=JOB_TIMEOUT_MS)
    expect(page.locator("#model-zip")).to_contain_text("zip")
    shot(page, "07-export-peft-zip")


def test_stop_button_keeps_finished_methods(page):
    """Runs after the click-through (same page and session): a long run is stopped from the page."""
    open_tab(page, "3 · Distill")
    set_number(page, "#epochs", "20")
    set_number(page, "#batch-size", "1")
    # The click-through's run left its own "step n/total" here: wait for this run's steps (another total).
    earlier = re.search(r"step \d+/(\d+)", page.locator("#train-progress").inner_text())
    other_total = rf"(?!{earlier.group(1)}\b)" if earlier else ""
    page.locator("#train-btn").click()
    expect(page.locator("#train-progress").get_by_text(re.compile(rf"step (?:[2-9]|[1-9]\d+)/{other_total}\d+"))
           ).to_be_visible(timeout=JOB_TIMEOUT_MS)
    page.locator("#stop-btn").click()
    expect(page.get_by_text("Stopped").first).to_be_visible(timeout=JOB_TIMEOUT_MS)
    expect(page.get_by_text("Kept the methods that finished")).to_be_visible()
    close_toasts(page)
    shot(page, "08-distill-stopped")
    # The page stays usable: the words are still split and the Distill button answers again.
    expect(page.locator("#train-btn")).to_be_enabled()


def test_run_all_in_a_fresh_session(page):
    """Reload = a new session; the ▶ button runs split -> contexts -> distill -> compare with an example."""
    page.reload()
    open_tab(page, "1 · Words")
    expect(page.locator("#split-btn")).to_be_visible()
    expect(page.locator(".td-chip")).to_have_count(0)  # nothing carried over from the previous session
    page.get_by_text("aardvark, Kandahar, Wimbledon · baselines").first.click()
    expect(page.locator("#words-input textarea")).to_have_value("aardvark, Kandahar, Wimbledon")
    open_tab(page, "3 · Distill")
    set_number(page, "#epochs", "1")  # the demo's 4 epochs: the same page, longer
    open_tab(page, "1 · Words")
    page.locator("#run-all-btn").click()
    # The page moves to Distill while training (live curve) and to Compare at the end by itself.
    expect(page.locator("#train-progress").get_by_text(re.compile(r"step [1-9]"))).to_be_visible(
        timeout=JOB_TIMEOUT_MS)
    expect(page.locator("#metrics-table .td-best").first).to_be_visible(timeout=JOB_TIMEOUT_MS)
    expect(page.get_by_role("tab", name="4 · Compare", selected=True)).to_be_visible(timeout=JOB_TIMEOUT_MS)
    expect(page.locator("#metrics-table tbody tr")).to_have_count(12)  # 3 words x 4 methods
    shot(page, "09-run-all-compare")
