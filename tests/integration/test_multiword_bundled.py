"""Phrases end to end on the embedded model: discovered, mined, distilled, exported and reloaded."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.helpers import RUNNING_TEXT
from tokdist_core import DistillationConfig, TokenDistillation


def test_phrases_discovered_mined_distilled_exported_and_reloaded(bundled_lm, tmp_path):
    td = TokenDistillation(bundled_lm)
    found = td.discover("bundled", max_words=2, top=300)
    chosen = [c for c in found.candidates if c.token in (" New York", " Prime Minister")]
    assert [c.token for c in chosen] == [" New York", " Prime Minister"], found.words[:40]
    assert all(c.count >= 40 and len(c.subwords) == 2 for c in chosen)
    splits = [c.split for c in chosen]
    contexts = td.contexts(splits, data="bundled", snippets_per_token=4, heldout_per_token=0, snippet_len=24)
    assert all(len(contexts[s.word].train) == 4 for s in splits)
    train = [sn for s in splits for sn in contexts[s.word].train]
    rows = td.train(splits, train, ["tokdist"], DistillationConfig(epochs=1, batch_size=8)).rows["tokdist"]
    out = td.save(rows, tmp_path / "out")

    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    base_size = len(td.lm.tokenizer)
    ids = tokenizer(RUNNING_TEXT + " to meet the Prime Minister.", add_special_tokens=False).input_ids
    assert ids.count(base_size) == 1 and ids.count(base_size + 1) == 1
    assert tokenizer.convert_ids_to_tokens(ids)[3] == " New York"
    assert torch.allclose(model.get_input_embeddings().weight[base_size : base_size + 2], rows.input_rows)
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits
    assert torch.isfinite(logits).all()
