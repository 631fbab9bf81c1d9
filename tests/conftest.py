"""Fixtures shared by every tier; plain helpers live in tests/helpers.py.

A test's tier is its folder (unit, integration, app, browser, load, gpu): the folder's marker is added here,
and the tiers run in that order, so the quick ones fail first.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path

# Threads sleep instead of spinning when the 2 cores are shared (app server + tests): far less contention.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# Under pytest-xdist each worker has a core of its own: one torch thread each (and in the CLIs they start),
# instead of two workers fighting over both cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from tests.helpers import BUNDLED, DEVICE, bundled_runtime, launched_app, make_tiny, snippets_for  # noqa: E402
from tokdist_core.foundations import models  # noqa: E402
from tokdist_core.foundations.vocab import check_new_word  # noqa: E402

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

TESTS = Path(__file__).resolve().parent
TIERS = ("unit", "integration", "app", "browser", "load", "gpu")


def pytest_collection_modifyitems(config, items):  # noqa: ARG001
    def tier(item) -> str:
        name = Path(str(item.fspath)).resolve().relative_to(TESTS).parts[0]
        if name not in TIERS:
            raise pytest.UsageError(f"{item.nodeid}: tests live in one of the tier folders {TIERS}")
        return name

    for item in items:
        item.add_marker(tier(item))
    items.sort(key=lambda item: TIERS.index(tier(item)))  # stable: modules stay in file order within a tier


@pytest.fixture(scope="session")
def tokenizer():
    folder = models.dequantized_copy(models.BUNDLED_MODELS[BUNDLED])
    tok = AutoTokenizer.from_pretrained(folder)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


@pytest.fixture(params=["tied", "untied", "padded", "gemma"])
def tiny_any(request, tokenizer):
    return make_tiny(tokenizer, request.param)


@pytest.fixture
def tiny(tokenizer):
    return make_tiny(tokenizer, "tied")


@pytest.fixture
def two_words(tokenizer):
    words = [" Krankenwagen", " Schadenfreude"]
    splits = [check_new_word(tokenizer, w) for w in words]
    snippets = [s for w in words for s in snippets_for(tokenizer, w)]
    assert len(snippets) == 6
    return splits, snippets


@pytest.fixture(scope="session")
def bundled_docs():
    """The bundled corpus's documents, read once (parsing its Wikipedia text takes seconds)."""
    from tokdist_core import contexts

    return list(contexts.iter_documents("bundled"))


@pytest.fixture(scope="session")
def bundled_lm():
    """The embedded SmolLM2, loaded once for the whole run: no request changes it (tests check that), so every
    integration test, app and page can share this one copy of its weights."""
    try:
        lm = models.load_model(BUNDLED, device=DEVICE)
    except models.ModelLoadError as exc:
        pytest.skip(f"bundled model not installed: {exc}")
    yield lm
    del lm
    gc.collect()


@pytest.fixture(scope="session")
def shared_app(bundled_lm):
    """One app on the bundled model with the default limits, launched once and shared by the app and browser
    tests that need nothing else: each test opens its own session (a new Client, a freshly loaded page).
    -> (url, runtime)."""
    rt = bundled_runtime(bundled_lm)
    with launched_app(rt) as url:
        yield url, rt
    del rt
    gc.collect()
