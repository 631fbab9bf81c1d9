"""Attention to the word: probabilities that add up, equal to transformers' own eager attention, and a shared
model that keeps its SDPA setting and its outputs."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import make_tiny, snippets_for
from tokdist_core import NewTokenRows, TokenDistillation
from tokdist_core.evaluation.attention import (
    ATTENTION_PARTS,
    ORIGINAL_PIECES,
    attention_parts,
    attention_to_word,
    eager_twin,
)
from tokdist_core.foundations.forward import ATTENTION
from tokdist_core.foundations.snippet import Snippet

KINDS = ["tied", "untied", "gemma"]


def random_rows(lm, words, seed: int = 1) -> NewTokenRows:
    g = torch.Generator().manual_seed(seed)
    return NewTokenRows("tokdist", list(words), torch.randn(len(words), lm.hidden_size, generator=g) * 0.05)


def reference_parts(ref, snippet: Snippet, row: torch.Tensor | None) -> torch.Tensor:
    """[L, H, Q, 3] from an eager copy's own `output_attentions`, one unpadded sequence, summed by explicit loops."""
    if row is None:
        inputs = {"input_ids": torch.tensor([snippet.token_ids])}
        last = snippet.start + snippet.n_subwords - 1
    else:
        ids = list(snippet.prefix) + [0] + list(snippet.suffix)
        embeds = ref.model.get_input_embeddings()(torch.tensor([ids]))
        scale = getattr(ref.model.get_input_embeddings(), "embed_scale", 1.0)
        embeds[0, snippet.start] = row * scale
        inputs = {"inputs_embeds": embeds}
        last = snippet.start
    with torch.no_grad():
        attentions = ref.model(**inputs, output_attentions=True).attentions
    first, n_after = snippet.start, len(snippet.suffix)
    out = torch.zeros(len(attentions), attentions[0].shape[1], n_after, 3)
    for layer, a in enumerate(attentions):
        for head in range(a.shape[1]):
            for j in range(n_after):
                q = last + 1 + j
                probs = a[0, head, q]
                out[layer, head, j] = torch.stack([probs[first : last + 1].sum(), probs[:first].sum(),
                                                   probs[last + 1 : q + 1].sum()])
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_parts_are_probabilities_equal_to_transformers_eager(tokenizer, two_words, kind):
    splits, snippets = two_words
    lm = make_tiny(tokenizer, kind)
    ref = make_tiny(tokenizer, kind)  # built separately from the same seed, then switched to eager
    ref.model.set_attn_implementation("eager")
    rows = random_rows(lm, [s.word for s in splits])
    assert len({len(s.token_ids) for s in snippets}) > 1  # batches of 4 below mix lengths: padding is exercised
    for method_rows in (None, rows):
        parts = attention_parts(lm, snippets, method_rows, batch_size=4)
        assert len(parts) == len(snippets)
        for snippet, got in zip(snippets, parts):
            assert got.shape == (lm.num_layers, 4, len(snippet.suffix), 3)
            # Before any averaging: per layer, head and position after the word, the parts are a distribution.
            assert (got >= 0).all()
            torch.testing.assert_close(got.sum(-1), torch.ones(got.shape[:-1]), atol=1e-5, rtol=0)
            row = None if method_rows is None else method_rows.input_rows[method_rows.index(snippet.word)]
            torch.testing.assert_close(got, reference_parts(ref, snippet, row), atol=1e-5, rtol=1e-4)


def test_gemma_sliding_window_layers_hide_far_keys(tokenizer):
    # The tiny Gemma's window is 16 tokens: late queries of a long snippet cannot see the first token, so their
    # prefix share must shrink to what the window still covers, and the parts still add up to one.
    text = ("A Krankenwagen arrived within minutes, and the paramedics treated everyone at the scene before they "
            "drove back to the hospital through the heavy evening traffic of the old city centre.")
    long = snippets_for(tokenizer, " Krankenwagen", [text])[0]
    lm = make_tiny(tokenizer, "gemma")
    assert lm.model.config.sliding_window == 16 and "sliding_attention" in lm.model.config.layer_types
    parts = attention_parts(lm, [long], None)[0]
    sliding = [i for i, t in enumerate(lm.model.config.layer_types) if t == "sliding_attention"][0]
    last = long.start + long.n_subwords - 1
    far = [j for j in range(len(long.suffix)) if last + 1 + j - 16 >= long.start + long.n_subwords]
    assert far, "snippet too short to reach past the window"
    # Queries whose window starts after the word see neither the prefix nor the word.
    window = parts[sliding][:, far]  # [heads, far positions, 3]
    assert torch.all(window[..., 0] == 0) and torch.all(window[..., 1] == 0)
    torch.testing.assert_close(window[..., 2], torch.ones(4, len(far)), atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_shared_model_keeps_sdpa_and_its_outputs(tokenizer, two_words, kind):
    splits, snippets = two_words
    lm = make_tiny(tokenizer, kind)
    ids = torch.tensor([snippets[0].token_ids])
    with torch.no_grad():
        before = lm.model(input_ids=ids).logits
    report = attention_to_word(lm, [random_rows(lm, [s.word for s in splits])], snippets)
    assert report["snippets"] == len(snippets)
    assert lm.model.config._attn_implementation == ATTENTION
    assert all(layer.self_attn.config._attn_implementation == ATTENTION for layer in lm.model.get_decoder().layers)
    with torch.no_grad():
        after = lm.model(input_ids=ids).logits
    assert torch.equal(before, after)

    # The eager twin is cached and shares every tensor with the shared model: no copy of the weights.
    twin = eager_twin(lm.model)
    assert twin is eager_twin(lm.model) and twin is not lm.model.get_decoder()
    assert twin.config is not lm.model.config and twin.config._attn_implementation == "eager"
    decoder = lm.model.get_decoder()
    for (name, p), (twin_name, q) in zip(decoder.named_parameters(), twin.named_parameters()):
        assert name == twin_name and p is q
    for (name, b), (_, c) in zip(decoder.named_buffers(), twin.named_buffers()):
        assert b is c, name


def test_report_averages_heads_positions_then_snippets(tokenizer, two_words):
    splits, snippets = two_words
    lm = make_tiny(tokenizer, "tied")
    rows = random_rows(lm, [s.word for s in splits])
    report = TokenDistillation(lm).attention(rows, snippets)
    assert report["parts"] == list(ATTENTION_PARTS) and report["layers"] == [1, 2] and report["heads"] == 4
    assert report["positions"] == sum(len(s.suffix) for s in snippets)
    assert set(report["shares"]) == {ORIGINAL_PIECES, "tokdist"}
    for source, method_rows in ((ORIGINAL_PIECES, None), ("tokdist", rows)):
        parts = attention_parts(lm, snippets, method_rows)
        expected = torch.stack([p.mean(dim=(1, 2)) for p in parts]).mean(0)  # [L, 3]
        got = torch.tensor([report["shares"][source][part] for part in ATTENTION_PARTS]).T
        torch.testing.assert_close(got, expected)
        torch.testing.assert_close(got.sum(-1), torch.ones(2), atol=1e-5, rtol=0)
    # One snippet through the facade is that snippet's own mean.
    one = TokenDistillation(lm).attention([rows], snippets[0])
    own = attention_parts(lm, [snippets[0]], rows)[0].mean(dim=(1, 2))
    torch.testing.assert_close(torch.tensor(one["shares"]["tokdist"]["word"]), own[:, 0])
    # Different rows give different shares for the student, the same for the original pieces.
    other = TokenDistillation(lm).attention(random_rows(lm, rows.words, seed=7), snippets[0])
    assert other["shares"][ORIGINAL_PIECES] == one["shares"][ORIGINAL_PIECES]
    assert other["shares"]["tokdist"]["word"] != one["shares"]["tokdist"]["word"]


def test_bad_inputs_are_refused_with_a_reason(tokenizer, two_words):
    splits, snippets = two_words
    lm = make_tiny(tokenizer, "tied")
    td = TokenDistillation(lm)
    only_first = NewTokenRows("tokdist", [splits[0].word], torch.zeros(1, lm.hidden_size))
    with pytest.raises(ValueError, match="at least one snippet"):
        td.attention(only_first, [])
    with pytest.raises(ValueError, match="no row for ' Schadenfreude'"):
        td.attention(only_first, snippets)
    s = snippets[0]
    at_end = Snippet(s.word, s.token_ids[: s.start + s.n_subwords], s.start, s.n_subwords, "test")
    with pytest.raises(ValueError, match="not the last token"):
        td.attention(only_first, [at_end])
    # A snippet that ends with the word is left out of an average that has others.
    report = td.attention(only_first, [at_end, *snippets_for(tokenizer, s.word)])
    assert report["snippets"] == 3
