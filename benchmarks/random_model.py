"""Write a randomly initialised Llama-family model with the SmolLM2 tokenizer, for throughput runs.

Quality figures from such a model mean nothing; its FLOPs and memory traffic are those of the real
architecture, so it measures distillation throughput at sizes the offline machine cannot download.

    python -m benchmarks.random_model /tmp/smollm2-1.7b-random --preset smollm2-1.7b
    python -m benchmarks.bench_distill --model /tmp/smollm2-1.7b-random --device cuda
"""

from __future__ import annotations

import argparse

import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from tokdist_core.foundations import models

# Shapes of the published SmolLM2 checkpoints (config.json of each).
PRESETS = {
    "smollm2-360m": dict(hidden_size=960, intermediate_size=2560, num_hidden_layers=32, num_attention_heads=15,
                         num_key_value_heads=5),
    "smollm2-1.7b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=24, num_attention_heads=32,
                         num_key_value_heads=32),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="smollm2-1.7b")
    args = parser.parse_args()
    tokenizer = AutoTokenizer.from_pretrained(models.dequantized_copy(models.BUNDLED_MODELS["smollm2-135m"]))
    config = LlamaConfig(vocab_size=len(tokenizer), max_position_embeddings=8192, rope_theta=130000.0,
                         tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, **PRESETS[args.preset])
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    print(f"{args.preset}: {sum(p.numel() for p in model.parameters()) / 1e6:.0f}M parameters -> {args.out}")


if __name__ == "__main__":
    main()
