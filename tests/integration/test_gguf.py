"""The `gguf` export checked with llama.cpp itself (the xllamacpp wheel's Server on loopback) and transformers."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
import torch

from tests.helpers import TEXTS, ZUGSPITZE_TEXTS, make_tiny, run_cli

xllamacpp = pytest.importorskip("xllamacpp")  # a test dependency (pyproject's test extras)

PROMPT = "Yesterday Schopenhauer wrote"
PLAIN = "Yesterday the old philosopher wrote"  # no new token in it
DESCRIBED = "Last year I visited <|capital|> twice"  # a special token from a description, mid-sentence


class LlamaServer:
    """llama.cpp's server on a GGUF file, in this process, answering on loopback."""

    def __init__(self, path: Path) -> None:
        params = xllamacpp.CommonParams()
        params.model.path = str(path)
        params.n_ctx = 256
        params.n_parallel = 1
        params.cpuparams.n_threads = 2
        self.server = xllamacpp.Server(params)
        self.url = self.server.listening_address.rstrip("/")

    def post(self, route: str, body: dict) -> dict:
        request = urllib.request.Request(self.url + route, data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as answer:
            return json.loads(answer.read())

    def tokenize(self, text: str) -> list[int]:
        return self.post("/tokenize", {"content": text})["tokens"]

    def greedy(self, text: str, n: int) -> list[int]:
        answer = self.post("/completion", {"prompt": text, "n_predict": n, "temperature": 0, "top_k": 1,
                                           "return_tokens": True, "cache_prompt": False})
        return answer["tokens"]

    def close(self) -> None:
        del self.server


def test_distill_gguf_is_read_by_llama_cpp_like_the_hf_export_by_transformers(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tokdist_core.export import load_rows
    from tokdist_core.foundations.models import BUNDLED_MODELS, bundled_gguf

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(TEXTS + ZUGSPITZE_TEXTS + [
        "Schopenhauer wrote that the world is will and representation, and Schopenhauer wrote it young.",
        "Many readers of Schopenhauer found his pessimism bracing rather than bleak.",
        "In spring we went to the capital city of France by train, and the capital city of France was busy."]),
        encoding="utf-8")
    out = tmp_path / "out"
    # The row is stored 4-bit (Q4_1, the base's type) in the GGUF and fp32 in the hf export: the greedy check below
    # holds for this row (whole snippets); other rows can meet a near tie that the 4-bit row tips the other way.
    proc = run_cli("distill", "--words", "Schopenhauer", "--method", "tokdist", "--data", str(corpus),
                   "--snippets-per-token", "2", "--epochs", "2", "--batch-size", "2", "--tokens-after", "0",
                   "--out", str(out), "--formats", "hf,gguf", "--device", "cpu", "--describe", "<|capital|>=the capital city of France")
    assert proc.returncode == 0, proc.stderr[-3000:]
    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    new_id = tokenizer.convert_tokens_to_ids(" Schopenhauer")
    assert load_rows(out).words == [" Schopenhauer", "<|capital|>"] and new_id == len(tokenizer) - 2
    adapted = LlamaServer(out / "model.gguf")
    try:
        # llama.cpp's own tokenizer uses the new token in running text, with the hf export's id.
        ids = tokenizer(PROMPT, add_special_tokens=False).input_ids
        assert new_id in ids and adapted.tokenize(PROMPT) == ids
        described = tokenizer(DESCRIBED, add_special_tokens=False).input_ids
        assert len(tokenizer) - 1 in described and adapted.tokenize(DESCRIBED) == described
        # Its greedy continuation after the new token is transformers' on the exported model. Four tokens:
        # llama.cpp's quantized kernels and fp32 transformers drift apart later on the base model too (measured:
        # "The capital of France is" agrees for 5 greedy tokens, other prompts for 10+).
        steps = 4
        expected = model.generate(torch.tensor([ids]), max_new_tokens=steps, do_sample=False)[0, len(ids):]
        assert adapted.greedy(PROMPT, steps) == expected.tolist()
        plain = adapted.greedy(PLAIN, steps)
    finally:
        adapted.close()
    base = LlamaServer(bundled_gguf(BUNDLED_MODELS["smollm2-135m"]))
    try:  # text without the new token: the base's behaviour
        assert base.greedy(PLAIN, steps) == plain
    finally:
        base.close()


def test_gguf_is_refused_before_any_work_for_a_model_without_a_gguf_base(tokenizer, tmp_path):
    from tokdist_core.api import TokenDistillation

    td = TokenDistillation(make_tiny(tokenizer))
    rows = td.train(td.prepare_words(["Schopenhauer"])[0], [], ["subword_mean"]).rows["subword_mean"]
    with pytest.raises(ValueError, match="the gguf format .* test:tiny-tied has none.*smollm2-135m"):
        td.save(rows, tmp_path / "out", formats="hf,gguf")
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == []
