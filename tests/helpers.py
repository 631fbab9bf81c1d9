"""What several test modules share: tiny models on the real tokenizer, the test texts, the app and the page.

Fixtures live in conftest.py; everything here is a plain function or constant, imported as
`from tests.helpers import ...`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from transformers import Gemma3ForCausalLM, Gemma3TextConfig, LlamaConfig, LlamaForCausalLM

from tokdist_core.foundations.forward import ATTENTION
from tokdist_core.foundations.models import LoadedModel
from tokdist_core.foundations.rows import NewTokenRows
from tokdist_core.foundations.snippet import Snippet
from tokdist_core.foundations.vocab import check_new_word
from tokdist_core.methods import MethodContext, get_method
from tokdist_core.training import DistillationConfig

REPO = Path(__file__).resolve().parents[1]
DEVICE = os.environ.get("TOKDIST_TEST_DEVICE", "cpu")  # "auto" on a GPU box runs the CUDA path
BUNDLED = "smollm2-135m"


# -- tiny models and texts -----------------------------------------------------------------------------

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
    model.config._attn_implementation = ATTENTION
    model.eval().requires_grad_(False).to(device)
    return LoadedModel(name=f"tiny-{kind}", model=model, tokenizer=tokenizer, device=torch.device(device),
                       source=f"test:tiny-{kind}")


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


def reference_mse(lm, snippet: Snippet, row: torch.Tensor, layer: int) -> float:
    """Full forward passes, no cache: the definition of the aligned loss."""
    from tokdist_core.foundations.forward import embed_ids

    student_ids = torch.tensor([list(snippet.prefix) + [0] + list(snippet.suffix)], device=lm.device)
    embeds = embed_ids(lm.model, student_ids)
    embeds[0, snippet.start] = row * getattr(lm.model.get_input_embeddings(), "embed_scale", 1.0)
    out = lm.model(inputs_embeds=embeds, output_hidden_states=True).hidden_states[layer]
    teacher_ids = torch.tensor([snippet.token_ids], device=lm.device)
    ref = lm.model(input_ids=teacher_ids, output_hidden_states=True).hidden_states[layer]
    student = out[0, snippet.start :]
    teacher = ref[0, snippet.start + snippet.n_subwords - 1 :]
    return float((student - teacher).pow(2).mean())


# -- data and checks that unit and integration tests share ---------------------------------------------

DISCOVERY_DOCS = [
    "The Krankenwagen arrived at noon. A Krankenwagen left, and the Krankenwagen returned to New York.",
    "Krankenwagens are vans; (Krankenwagen) is German. They moved to New York last year, in 2019 or 2019.",
    "Critics of the plan met in New York.\nYork is also a city. The Prime Minister of the country spoke.",
    "Yasser Arafat spoke to the Prime Minister about New York's budget and the New Yorker magazine.",
    "Arafat and the Prime Minister of the region argued about Schopenhauer, Schopenhauer and Arafat.",
]

RUNNING_TEXT = "He moved to New York last year"  # a phrase test's running text

REPORT_WORDS = [" paramedics", " Wittgenstein", " Schopenhauer"]  # several pieces each; words the model knows
REPORT_DOCS = [
    "The paramedics arrived within minutes, and the paramedics treated everyone at the scene of the accident.",
    "Students read Wittgenstein to understand language; Wittgenstein wrote that the limits of my language mean "
    "the limits of my world.",
    "Arthur Schopenhauer was a German philosopher. Schopenhauer is best known for The World as Will and "
    "Representation.",
    "Many readers find Schopenhauer pessimistic, but the Schopenhauers of this world also write about music.",
]


def method_rows(lm, name: str, words=(" Krankenwagen", " Schadenfreude")) -> NewTokenRows:
    """Rows from the real method registry; untied models get the subword mean of the output rows."""
    splits = [check_new_word(lm.tokenizer, w) for w in words]
    out = get_method(name).run(MethodContext(lm=lm, splits=splits, train_snippets=[], config=DistillationConfig()))
    output = None
    if not lm.tied:
        head = lm.model.get_output_embeddings().weight.detach()
        output = torch.stack([head[list(s.ids)].mean(0) for s in splits])
    return NewTokenRows(method=name, words=list(words), input_rows=out.rows.detach().float().cpu(), output_rows=output)


def check_snippet(snip, split, snippet_len: int) -> None:
    assert snip.word == split.word
    assert snip.token_ids[snip.start : snip.start + split.n_subwords] == split.ids
    assert snip.n_subwords == split.n_subwords
    assert len(snip.token_ids) <= snippet_len


# -- the command line ------------------------------------------------------------------------------------

# Runs the CLI's main() and then reports whether torch was ever imported: a check that fails this way
# ran before the model could have been loaded (loading it needs torch).
PROBE = (
    "import atexit, sys\n"
    "atexit.register(lambda: print('TORCH_IMPORTED' if 'torch' in sys.modules else 'NO_TORCH', file=sys.stderr))\n"
    "from tokdist_core.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def cli_probe(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`tokdist ARGS` in a fresh process that says at exit whether torch was imported."""
    return subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m tokdist_core.cli ARGS`, the command as a user runs it."""
    return subprocess.run([sys.executable, "-m", "tokdist_core.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The run failed cleanly and early (no traceback, no model loaded): the `error:` line it printed."""
    assert proc.returncode != 0, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "Loading weights" not in proc.stderr and "NO_TORCH" in proc.stderr, proc.stderr
    (line,) = [ln for ln in proc.stderr.splitlines() if "error: " in ln]
    return line


# -- the app ---------------------------------------------------------------------------------------------

def free_port() -> int:
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


def bundled_runtime(lm: LoadedModel | None = None, **limits):
    """A ui Runtime on the bundled model; `lm` (the session's loaded copy) is served from its model cache,
    as a loaded model would be, so apps share one copy of the weights. Skips when the model is missing."""
    from tokdist_core.foundations.models import ModelLoadError
    from ui.runtime import Runtime

    rt = Runtime(default_model=BUNDLED, device=DEVICE, **limits)
    if lm is not None:
        rt._models[BUNDLED] = lm
    try:
        rt.model()
    except ModelLoadError as exc:
        pytest.skip(f"bundled model not installed: {exc}")
    return rt


def wait_for_steps(job, method: str, steps: int, timeout: float = 120) -> None:
    """Block until a submitted /distill job reports `steps` steps of `method` (so a stop lands mid-run)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        outs = job.outputs()
        if outs and outs[-1][3]["steps"].get(method, 0) >= steps:
            return
        time.sleep(0.2)
    pytest.fail(f"training produced no {steps} steps of {method} within {timeout:.0f} s")


def base_state(rt) -> tuple[dict, int]:
    """A copy of the shared base model's weights and vocabulary size."""
    lm = rt.model()
    return {k: v.detach().clone() for k, v in lm.model.state_dict().items()}, len(lm.tokenizer)


def assert_base_unchanged(rt, before) -> None:
    state, vocab = before
    lm = rt.model()
    now = lm.model.state_dict()
    assert len(lm.tokenizer) == vocab
    assert all(torch.equal(now[k], v) for k, v in state.items())


# -- the page in headless Chromium ---------------------------------------------------------------------

CHROMIUM = os.environ.get("TOKDIST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Screenshots are for a person to open and look at; $TOKDIST_SHOTS moves them.
SHOTS = Path(os.environ.get("TOKDIST_SHOTS", "/tmp/shots"))


# Per-step limits: a click's visible answer comes at once; a heavy job (contexts, training, a corpus count)
# can take a minute on a busy 2-core machine. A step that fails says which one, long before the test's end.
UI_TIMEOUT_MS = 15_000
JOB_TIMEOUT_MS = 120_000


def skip_without_chromium() -> None:
    """Skip (a whole module, when called at its top) before any model loads if the browser or Playwright
    is missing."""
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"Chromium not found at {CHROMIUM} (Debian: apt-get install -y chromium)", allow_module_level=True)
    pytest.importorskip("playwright.sync_api")


@contextlib.contextmanager
def browser_page(url: str):
    """A headless Chromium page (1360x900, light) on `url`, loaded. Every wait and `expect` times out after
    UI_TIMEOUT_MS unless the step gives JOB_TIMEOUT_MS."""
    skip_without_chromium()
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1360, "height": 900}, color_scheme="light")
        page = context.new_page()
        page.set_default_timeout(UI_TIMEOUT_MS)
        expect.set_options(timeout=UI_TIMEOUT_MS)
        page.goto(url, wait_until="load")  # not networkidle: the page keeps a connection open
        try:
            yield page
        finally:
            context.close()
            browser.close()


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
    """Click a tab and wait until it is the selected one."""
    from playwright.sync_api import expect

    tab = page.get_by_role("tab", name=label)
    tab.click()
    expect(tab).to_have_attribute("aria-selected", "true")


def set_number(page, elem: str, value: str) -> None:
    """Type a value into a number box and commit it, as a user does."""
    box = page.locator(f"{elem} input[type=number]")
    box.fill(value)
    box.press("Enter")


def close_toasts(page) -> None:
    for button in page.locator(".toast-close").all():
        if button.is_visible():
            button.click()
