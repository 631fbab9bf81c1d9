"""Shared fixtures: the real SmolLM2 tokenizer, tiny in-process models built on it, the bundled model."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

# Threads sleep instead of spinning when the 2 cores are shared (app server + tests): far less contention.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402
from transformers import AutoTokenizer, Gemma3ForCausalLM, Gemma3TextConfig, LlamaConfig, LlamaForCausalLM

from tokdist_core.foundations import models
from tokdist_core.foundations.models import LoadedModel
from tokdist_core.foundations.snippet import Snippet
from tokdist_core.foundations.vocab import check_new_word


@pytest.fixture(scope="session")
def tokenizer():
    folder = models.dequantized_copy(models.BUNDLED_MODELS["smollm2-135m"])
    tok = AutoTokenizer.from_pretrained(folder)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def make_tiny(tokenizer, kind: str = "tied", seed: int = 0, device: str = "cpu") -> LoadedModel:
    """A 2-layer model over the real tokenizer. kind: tied | untied | padded | gemma."""
    torch.manual_seed(seed)
    vocab = len(tokenizer) + (64 if kind == "padded" else 0)
    common = dict(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                  pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                  bos_token_id=tokenizer.bos_token_id)
    if kind == "gemma":
        config = Gemma3TextConfig(head_dim=8, sliding_window=16, final_logit_softcapping=30.0,
                                  tie_word_embeddings=True, **common)
        model = Gemma3ForCausalLM(config)
    else:
        config = LlamaConfig(tie_word_embeddings=kind != "untied", **common)
        model = LlamaForCausalLM(config)
    model.config._attn_implementation = "sdpa"
    model.eval().requires_grad_(False).to(device)
    return LoadedModel(name=f"tiny-{kind}", model=model, tokenizer=tokenizer, device=torch.device(device),
                       source=f"test:tiny-{kind}")


@pytest.fixture(params=["tied", "untied", "padded", "gemma"])
def tiny_any(request, tokenizer) -> LoadedModel:
    return make_tiny(tokenizer, request.param)


@pytest.fixture
def tiny(tokenizer) -> LoadedModel:
    return make_tiny(tokenizer, "tied")


TEXTS = [
    "The injured man was taken to hospital in a Krankenwagen after the crash near Berlin yesterday evening.",
    "A Krankenwagen arrived within minutes, and the paramedics treated everyone at the scene.",
    "Nobody expected the Krankenwagen to be late, but the snow blocked every road into town.",
    "They call it Schadenfreude, the pleasure derived from another person's misfortune, as the article explains.",
    "He felt a little Schadenfreude when his rival's car broke down on the way to the race.",
    "Critics say Schadenfreude is common in politics, where every mistake is celebrated by opponents.",
]


def snippets_for(tokenizer, word: str, texts=TEXTS) -> list[Snippet]:
    split = check_new_word(tokenizer, word)
    out = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False).input_ids
        for i in range(len(ids)):
            if tuple(ids[i : i + len(split.ids)]) == split.ids:
                out.append(Snippet(split.word, tuple(ids), i, len(split.ids), "test"))
                break
    return out


ZUGSPITZE_TEXTS = [
    "The Zugspitze is the highest peak of the Wetterstein range, and the Zugspitze draws many climbers.",
    "From the Zugspitze you can see four countries on a clear day in early autumn.",
    "A cable car climbs the Zugspitze from the Eibsee lake below it in ten minutes.",
    "In winter the Zugspitze glacier is a ski area with lifts and a small restaurant.",
    "Weather on the Zugspitze changes fast, so hikers carry warm clothes all year round.",
]
THREE_WORDS = [" Krankenwagen", " Schadenfreude", " Zugspitze"]


def three_words(tokenizer, words=THREE_WORDS):
    """Splits and snippets of three words (3, 3 and 5 snippets): uneven, so batches differ per word."""
    splits = [check_new_word(tokenizer, w) for w in words]
    snippets = [s for w in words for s in snippets_for(tokenizer, w, TEXTS + ZUGSPITZE_TEXTS)]
    return splits, snippets


def subword_init(lm, splits):
    """The rows training starts from: each word's subword mean."""
    from tokdist_core.methods import subword_rows
    from tokdist_core.methods.base import MethodContext
    from tokdist_core.training import DistillationConfig

    return subword_rows(MethodContext(lm=lm, splits=splits, train_snippets=[], config=DistillationConfig()))


@pytest.fixture
def two_words(tokenizer):
    words = [" Krankenwagen", " Schadenfreude"]
    splits = [check_new_word(tokenizer, w) for w in words]
    snippets = [s for w in words for s in snippets_for(tokenizer, w)]
    assert len(snippets) == 6
    return splits, snippets


def wait_for_steps(job, method: str, steps: int, timeout: float = 120) -> None:
    """Block until a submitted /distill job reports `steps` steps of `method` (so a stop lands mid-run)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        outs = job.outputs()
        if outs and outs[-1][3]["steps"].get(method, 0) >= steps:
            return
        time.sleep(0.2)
    pytest.fail(f"training produced no {steps} steps of {method} within {timeout:.0f} s")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def launched_app(runtime):
    """Serve the real app for `runtime` on a free loopback port; yields its URL."""
    from ui.app import build_app, launch_kwargs

    demo = build_app(runtime=runtime)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **launch_kwargs())
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


def bundled_runtime(**limits):
    """A ui Runtime on the bundled model (skips the test when the model package is missing)."""
    from tokdist_core.foundations.models import ModelLoadError
    from ui.runtime import Runtime

    rt = Runtime(default_model="smollm2-135m", device=os.environ.get("TOKDIST_TEST_DEVICE", "cpu"), **limits)
    try:
        rt.model()
    except ModelLoadError as exc:
        pytest.skip(f"bundled model not installed: {exc}")
    return rt


CHROMIUM = os.environ.get("TOKDIST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def skip_without_chromium() -> None:
    """Skip before any model loads when the browser or Playwright is missing."""
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"Chromium not found at {CHROMIUM} (Debian: apt-get install -y chromium)")
    pytest.importorskip("playwright.sync_api")


@contextlib.contextmanager
def browser_page(url: str):
    """A headless Chromium page (1360x900, light) on `url`, loaded; skips when Chromium or Playwright is missing."""
    skip_without_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1360, "height": 900}, color_scheme="light")
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto(url, wait_until="load")  # not networkidle: the page keeps a connection open
        try:
            yield page
        finally:
            context.close()
            browser.close()


@contextlib.contextmanager
def app_page():
    """The real app on the bundled model, opened in headless Chromium (skips before loading when Chromium is missing)."""
    skip_without_chromium()
    with launched_app(bundled_runtime()) as url, browser_page(url) as page:
        yield page


# Screenshots are for a person to open and look at; $TOKDIST_SHOTS moves them.
SHOTS = Path(os.environ.get("TOKDIST_SHOTS", "/tmp/shots"))


def shot(page, name: str) -> Path:
    """A full-page screenshot SHOTS/name.png (name may hold a folder), after plots finish their transition."""
    path = SHOTS / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(500)
    page.screenshot(path=str(path), full_page=True)
    return path


@contextlib.contextmanager
def shot_on_failure(page, name: str):
    """Save what the page showed when a step failed or timed out, then re-raise."""
    try:
        yield
    except Exception:
        shot(page, name)
        raise


def open_tab(page, label: str) -> None:
    page.get_by_role("tab", name=label).click()
    page.wait_for_timeout(300)


def close_toasts(page) -> None:
    for button in page.locator(".toast-close").all():
        if button.is_visible():
            button.click()
