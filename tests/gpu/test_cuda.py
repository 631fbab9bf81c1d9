"""The CUDA path on a real GPU: fp32 agrees with the CPU, bf16 autocast trains, results come back to the CPU.

Skipped without CUDA (CI has none). On a GPU box: `pytest tests/test_cuda.py` (the last test loads the
embedded model).
"""

from __future__ import annotations

import pytest
import torch

from tests.helpers import make_tiny, reference_mse
from tests.helpers import subword_init as _init
from tokdist_core.training import DistillationConfig, DistillationTrainer, TeacherCache

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _train(lm, splits, snippets, precision: str):
    words = [s.word for s in splits]
    cache = TeacherCache(lm, snippets, words, -1, with_final=False, mixed_precision=precision)
    config = DistillationConfig(epochs=6, batch_size=4, learning_rate=5e-2, mixed_precision=precision)
    steps = []
    result = DistillationTrainer(lm, words, config, cache).train(_init(lm, splits).to(lm.device), callback=steps.append)
    return result, steps


@pytest.mark.parametrize("kind", ["tied", "untied", "gemma"])
def test_fp32_on_cuda_matches_cpu(tokenizer, two_words, kind):
    splits, snippets = two_words
    cpu, _ = _train(make_tiny(tokenizer, kind), splits, snippets, "no")
    gpu_lm = make_tiny(tokenizer, kind, device="cuda")
    before = {k: v.clone() for k, v in gpu_lm.model.state_dict().items()}
    gpu, _ = _train(gpu_lm, splits, snippets, "no")
    for word, row in cpu.rows.items():
        assert gpu.rows[word].device.type == "cuda"
        torch.testing.assert_close(gpu.rows[word].cpu(), row, rtol=1e-3, atol=1e-4)
    for key, value in gpu_lm.model.state_dict().items():
        assert torch.equal(value, before[key]), key


@pytest.mark.parametrize("kind", ["tied", "gemma"])
def test_bf16_autocast_cached_loss_matches_fp32_definition(tokenizer, two_words, kind):
    lm = make_tiny(tokenizer, kind, device="cuda")
    splits, snippets = two_words
    words = [s.word for s in splits]
    cache = TeacherCache(lm, snippets, words, -1, with_final=False)  # "auto": bf16 on CUDA
    assert cache.items[0].targets.dtype == torch.float32
    init = _init(lm, splits).cuda()
    trainer = DistillationTrainer(lm, words, DistillationConfig(), cache)
    for item, got in zip(cache.items, trainer.snippet_losses(init)):  # "auto": bf16 autocast on CUDA
        with torch.no_grad():
            expected = reference_mse(lm, item.snippet, init[item.word_index], lm.num_layers)
        assert got == pytest.approx(expected, rel=0.1, abs=1e-3)


def test_bf16_training_lowers_loss_and_keeps_rows_fp32(tokenizer, two_words):
    lm = make_tiny(tokenizer, "tied", device="cuda")
    result, steps = _train(lm, *two_words, "auto")
    assert steps[-1].loss < 0.7 * steps[0].loss
    assert all(row.dtype == torch.float32 and torch.isfinite(row).all() for row in result.rows.values())


def test_embedded_model_on_cuda_end_to_end(tmp_path):
    from tokdist_core.api import TokenDistillation

    td = TokenDistillation("smollm2-135m", device="cuda")
    assert td.lm.device.type == "cuda" and td.lm.device_label.startswith("GPU (")
    before = td.lm.model.get_input_embeddings().weight.clone()
    comparison = td.compare(["Schopenhauer", "Andorra", "anarchism"], data="bundled",
                            methods=["subword_mean", "ntp", "tokdist"], snippets_per_token=12,
                            heldout_per_token=6, snippet_len=36)
    mse = {m: v["hidden_mse"] for m, v in comparison.to_json()["summary"].items()}
    assert mse["tokdist"] < 0.5 * mse["subword_mean"], mse
    assert mse["tokdist"] < mse["ntp"], mse
    assert torch.equal(td.lm.model.get_input_embeddings().weight, before)
    model, tokenizer = td.run(["Schopenhauer"], data="bundled", snippets_per_token=8, snippet_len=30,
                              out_path=tmp_path / "out", save=True)
    assert tokenizer.encode(" Schopenhauer", add_special_tokens=False) == [len(td.lm.tokenizer)]
    from transformers import AutoModelForCausalLM

    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    new_id = len(td.lm.tokenizer)
    torch.testing.assert_close(reloaded.get_input_embeddings().weight[new_id],
                               model.get_input_embeddings().weight[new_id].float().cpu())
