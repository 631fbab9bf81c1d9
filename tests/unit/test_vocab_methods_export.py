"""Words, methods, adding tokens, export and generation on the real tokenizer and tiny models."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.helpers import make_tiny
from tokdist_core.api import TokenDistillation
from tokdist_core.evaluation.metrics import heldout_metrics
from tokdist_core.evaluation.views import generate, layer_lens, nearest_neighbours, pca_points
from tokdist_core.export import load_rows, reproduce_snippet, save_model, save_rows, zip_folder
from tokdist_core.foundations.models import ModelLoadError, load_model
from tokdist_core.foundations.rows import NewTokenRows
from tokdist_core.foundations.vocab import (
    WordError,
    add_tokens_to_model,
    check_new_word,
    normalize_word,
    parse_word_list,
    split_word,
    whitespace_marker,
)
from tokdist_core.methods import METHOD_NAMES, REGISTRY, MethodContext, get_method
from tokdist_core.methods.subword_weighted import exponential_weights
from tokdist_core.training import DistillationConfig


def test_whitespace_marker_and_split(tokenizer):
    assert whitespace_marker(tokenizer) == "Ġ"
    split = split_word(tokenizer, " Krankenwagen")
    assert split.ids == tuple(tokenizer.encode(" Krankenwagen", add_special_tokens=False))
    assert "".join(split.pieces) == " Krankenwagen"
    initial = split_word(tokenizer, normalize_word("Krankenwagen", mid_sentence=False))
    assert initial.ids != split.ids and "".join(initial.pieces) == "Krankenwagen"


@pytest.mark.parametrize(
    "raw,match",
    [("", "Empty"), ("   ", "Empty"), ("x" * 10_000, "limit"), ("two\twords", "whitespace"),
     ("one two three four", "at most 3 words"),  # phrases of 2-3 words are tokens (tests/test_multiword.py)
     ("bad\x00word", "control"), ("zero\u200bwidth", "invisible"), ("ĠKranken", "marker")],
)
def test_bad_words_are_rejected_with_a_reason(raw, match):
    with pytest.raises(WordError, match=match):
        normalize_word(raw)


def test_unicode_words_are_accepted_when_they_round_trip(tokenizer):
    for word in ("שלום", "🤗🤗", "Ærøskøbing"):
        split = split_word(tokenizer, normalize_word(word))
        assert tokenizer.decode(list(split.ids)) == " " + word


def test_single_token_word_is_flagged(tokenizer):
    with pytest.raises(WordError, match="already a single token"):
        check_new_word(tokenizer, " the")


def test_word_list_reports_every_rejection():
    words, rejected = parse_word_list("Krankenwagen, Zeitgeist\nKrankenwagen,, bad\x07word")
    assert words == [" Krankenwagen", " Zeitgeist"]
    assert [r[1].split()[0] for r in rejected] == ["duplicate", "'bad\\x07word'"]


def test_unknown_model_names_what_was_tried(monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # fail at once instead of retrying
    with pytest.raises(ModelLoadError, match="not a bundled name.*not a local folder"):
        load_model("no-such-org/definitely-not-a-model-xyz")
    with pytest.raises(ModelLoadError):
        load_model("")


def _ctx(lm, splits, snippets=(), **cfg):
    return MethodContext(lm=lm, splits=splits, train_snippets=list(snippets), config=DistillationConfig(**cfg))


def test_registry_holds_every_method():
    assert set(METHOD_NAMES) == set(REGISTRY) == {
        "random", "vocab_mean", "subword_mean", "subword_weighted", "ntp", "tokdist", "tokdist_antp"}
    with pytest.raises(ValueError, match="unknown method"):
        get_method("magic")


def test_baseline_methods_compute_what_they_say(tiny, two_words):
    splits, _ = two_words
    matrix = tiny.model.get_input_embeddings().weight.detach()
    ctx = _ctx(tiny, splits)
    sub = get_method("subword_mean").run(ctx).rows
    torch.testing.assert_close(sub[0], matrix[list(splits[0].ids)].mean(0))
    weighted = get_method("subword_weighted").run(ctx).rows
    w = exponential_weights(len(splits[1].ids))
    torch.testing.assert_close(weighted[1], (w.unsqueeze(1) * matrix[list(splits[1].ids)]).sum(0))
    assert w[-1] > w[0]
    torch.testing.assert_close(get_method("vocab_mean").run(ctx).rows[0], matrix.mean(0))
    r1, r2 = get_method("random").run(ctx).rows, get_method("random").run(ctx).rows
    torch.testing.assert_close(r1, r2)  # seeded
    assert not torch.equal(r1, get_method("random").run(_ctx(tiny, splits, seed=1)).rows)


@pytest.mark.parametrize("kind", ["tied", "untied", "padded", "gemma"])
def test_add_tokens_to_a_copy(tokenizer, kind):
    lm = make_tiny(tokenizer, kind)
    td = TokenDistillation(lm)
    before = lm.model.get_input_embeddings().weight.clone()
    words = [" Krankenwagen", " Schadenfreude"]
    rows = NewTokenRows("test", words, torch.randn(2, lm.hidden_size),
                        None if lm.tied else torch.randn(2, lm.hidden_size))
    model, tok = td.with_new_tokens(rows)
    ids = tok.convert_tokens_to_ids(words)
    assert ids == [len(tokenizer), len(tokenizer) + 1]
    emb = model.get_input_embeddings().weight
    assert emb.shape[0] == (before.shape[0] if kind == "padded" else len(tokenizer) + 2)  # never shrinks
    torch.testing.assert_close(emb[ids], rows.input_rows)
    assert torch.equal(emb[: before.shape[0]][: len(tokenizer)], before[: len(tokenizer)])
    if not lm.tied:
        torch.testing.assert_close(model.get_output_embeddings().weight[ids], rows.output_rows)
    assert tok.encode(" a Krankenwagen came", add_special_tokens=False)[1] == ids[0]
    # the shared base model and tokenizer are untouched
    assert torch.equal(lm.model.get_input_embeddings().weight, before)
    assert len(tokenizer) == 49152


def test_add_tokens_rejects_existing_token(tiny):
    model, tok = TokenDistillation(tiny).with_new_tokens(NewTokenRows("x", [" Zeitgeist"], torch.zeros(1, 32)))
    with pytest.raises(WordError):
        add_tokens_to_model(model, tok, [" Zeitgeist"], torch.zeros(1, 32))


def test_export_round_trip(tmp_path, tiny):
    td = TokenDistillation(tiny)
    rows = NewTokenRows("tokdist", [" Krankenwagen"], torch.randn(1, 32))
    model, tok = td.with_new_tokens(rows)
    save_model(model, tok, tmp_path / "model")
    save_rows(rows, tiny, tmp_path / "rows")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "model")
    rtok = AutoTokenizer.from_pretrained(tmp_path / "model")
    ids = rtok.encode(" Krankenwagen", add_special_tokens=False)
    assert ids == [len(tiny.tokenizer)]
    torch.testing.assert_close(reloaded.get_input_embeddings().weight[ids[0]], rows.input_rows[0])
    back = load_rows(tmp_path / "rows", tiny)
    assert back.words == rows.words and torch.equal(back.input_rows, rows.input_rows)
    code = reproduce_snippet("smollm2-135m", rows.words, "tokdist", DistillationConfig().to_dict())
    compile(code, "reproduce.py", "exec")
    assert "new_tokens=['Krankenwagen']" in code and "mid_sentence=True" in code
    initial = reproduce_snippet("smollm2-135m", ["Krankenwagen"], "tokdist", {}, mid_sentence=False)
    assert "mid_sentence=False" in initial and "tokenize('Krankenwagen')" in initial
    archive = zip_folder(tmp_path / "model", tmp_path / "model.zip")
    import zipfile

    assert "model.safetensors" in zipfile.ZipFile(archive).namelist()


def test_generation_matches_hf_generate_and_uses_new_token(tiny):
    prompt = "The Krankenwagen drove to the"
    ours = generate(tiny, prompt, None, max_new_tokens=8)
    ids = tiny.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    ref = tiny.model.generate(**ids, max_new_tokens=8, do_sample=False, pad_token_id=tiny.tokenizer.eos_token_id)
    assert ours.text == tiny.tokenizer.decode(ref[0], skip_special_tokens=True)
    rows = NewTokenRows("m", [" Krankenwagen"], tiny.model.get_input_embeddings().weight[[659]].clone() * 50)
    with_new = generate(tiny, prompt, rows, max_new_tokens=8)
    assert with_new.prompt_tokens == ours.prompt_tokens - 4  # five subwords became one token
    assert with_new.text.startswith(prompt)


def test_evaluation_outputs(tiny, two_words):
    splits, snippets = two_words
    words = [s.word for s in splits]
    sub = NewTokenRows("subword_mean", words, get_method("subword_mean").run(_ctx(tiny, splits)).rows)
    rnd = NewTokenRows("random", words, get_method("random").run(_ctx(tiny, splits)).rows)
    report = heldout_metrics(tiny, [sub, rnd], snippets)
    for method in ("subword_mean", "random"):
        for w in words:
            m = report[method][w]
            assert m["hidden_mse"] > 0 and -1 <= m["hidden_cos"] <= 1 and m["next_token_kl"] >= -1e-6
            assert 0 <= m["norm_percentile"] <= 100
            assert len(m["layer_mse"]) == tiny.num_layers + 1
            assert m["layer_mse"][0] == pytest.approx(0.0, abs=1e-12) or m["layer_mse"][0] > 0
    nbs = nearest_neighbours(tiny, tiny.model.get_input_embeddings().weight[659], k=3)
    assert nbs[0]["token_id"] == 659 and nbs[0]["cosine"] == pytest.approx(1.0, abs=1e-5)
    pts = pca_points(tiny, [sub, rnd], words[0], splits[0].ids)
    assert {p["kind"] for p in pts} >= {"new row", "subword"}
    lens = layer_lens(tiny, sub, snippets[0])
    assert [x["layer"] for x in lens] == list(range(tiny.num_layers + 1))
