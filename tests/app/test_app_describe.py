"""A special token from a description in the app: a TOKEN=TEXT line in the word box, through gradio_client."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from tokdist_core.api import TokenDistillation  # noqa: E402
from tokdist_core.export import load_rows  # noqa: E402

GENERATED = ("generated", [], "", 4, 2, 24, 0)  # source, files, hf name, train, held-out, length, seed


def test_a_described_token_goes_from_the_word_box_to_the_export(shared_app, tmp_path):
    url, rt = shared_app
    c = Client(url, verbose=False, download_files=True)
    tok = rt.model().tokenizer
    vocab_before = len(tok)

    view, summary, details = c.predict("Schopenhauer\n<|capital|>=the capital city of France, Paris", "smollm2-135m",
                                       True, api_name="/split")
    words = {w["word"]: w for w in details["words"]}
    assert list(words) == [" Schopenhauer", "<|capital|>"]  # the comma belongs to the description
    capital = words["<|capital|>"]
    assert capital["description"] == " the capital city of France, Paris"
    assert capital["ids"] == tok.encode(" the capital city of France, Paris", add_special_tokens=False)
    assert "read as “the capital city of France, Paris”" in view

    c.predict(*GENERATED, api_name="/contexts")
    c.predict(["subword_mean", "tokdist"], 1, 0.01, 8, -1, "ntp", 0, api_name="/distill")
    # Generate: the original model reads the description where the prompt has the token.
    _view, gen = c.predict("We flew to <|capital|> and", [], 3, 0, 0, api_name="/generate")
    texts = {g["method"]: g for g in gen["generations"]}
    original = texts["original split"]
    assert original["text"].startswith("We flew to the capital city of France, Paris and")
    assert original["prompt_tokens"] == len(tok.encode("We flew to the capital city of France, Paris and"))
    assert texts["tokdist"]["text"].startswith("We flew to<|capital|> and")  # the token took the space
    assert texts["tokdist"]["prompt_tokens"] == original["prompt_tokens"] - len(capital["ids"]) + 1

    files, _zip, code, _details = c.predict("tokdist", False, api_name="/export")
    folder = tmp_path / "rows"
    folder.mkdir()
    for f in files:
        shutil.copy(f, folder / Path(f).name)
    rows = load_rows(folder, rt.model())
    assert rows.descriptions == {"<|capital|>": " the capital city of France, Paris"}
    _model, tokenizer = TokenDistillation(rt.model()).with_new_tokens(rows)
    assert tokenizer.convert_tokens_to_ids("<|capital|>") in tokenizer.encode("in <|capital|> today")
    assert "describe={'<|capital|>': 'the capital city of France, Paris'}" in code
    assert len(tok) == vocab_before and "<|capital|>" not in tok.get_vocab()  # the shared tokenizer is untouched


def test_a_bad_description_is_a_visible_message(shared_app):
    c = Client(shared_app[0], verbose=False)
    for text, message in [("<|cite|>=", "description of '<|cite|>' is empty"),
                          ("<|endoftext|>=the end", "already exists in this tokenizer")]:
        with pytest.raises(AppError, match=message):
            c.predict(text, "smollm2-135m", True, api_name="/split")
