"""Distillation throughput on the embedded model: the paper configuration and a single converged word.

Useful FLOPs = teacher forward to the target layer once per snippet (all teacher tokens)
             + student forward and backward from the new token on (backward = 1 forward: weights are
               frozen, only input gradients flow), i.e. F * (T_teacher + 2 * T_student),
where F = 2 x decoder matmul parameters per token (attention score FLOPs and the LM head are not counted).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from benchmarks.common import (
    PAPER_WORDS,
    emit,
    environment,
    frequent_corpus_words,
    layer_flops_per_token,
    matmul_peak_gflops,
    peak_memory_mb,
)
from tokdist_core.api import TokenDistillation
from tokdist_core.distill import DistillationConfig, DistillationTrainer, TeacherCache
from tokdist_core.evaluate import heldout_metrics
from tokdist_core.methods import METHOD_NAMES, MethodContext, get_method
from tokdist_core.rows import NewTokenRows


def _run(td, words, snippets_per_token, snippet_len, config, heldout=0):
    splits, skipped = td.prepare_words(words)
    contexts = td.contexts(splits, "bundled", snippets_per_token, heldout, snippet_len, config.seed)
    splits = [s for s in splits if len(contexts[s.word].train) == snippets_per_token]
    train = [sn for s in splits for sn in contexts[s.word].train]
    start = time.perf_counter()
    cache = TeacherCache(td.lm, train, [s.word for s in splits], config.target_layer, with_final=False,
                         mixed_precision=config.mixed_precision)
    teacher_s = time.perf_counter() - start
    ctx = MethodContext(lm=td.lm, splits=splits, train_snippets=train, config=config)
    init = get_method("subword_mean").run(ctx).rows
    trainer = DistillationTrainer(td.lm, [s.word for s in splits], config, cache)
    result = trainer.train(init)
    if td.lm.device.type == "cuda":
        torch.cuda.synchronize()
    total_s = time.perf_counter() - start
    teacher_tokens = sum(len(s.token_ids) for s in train)
    student_tokens = result.tokens_seen
    return splits, contexts, train, result, teacher_s, total_s, teacher_tokens, student_tokens


def _throughput(td, words, snippets_per_token, snippet_len, config, flops_tok, peak, repeats=1) -> dict:
    runs = [_run(td, words, snippets_per_token, snippet_len, config) for _ in range(repeats)]
    seconds = [r[5] for r in runs]
    splits, _, train, result, teacher_s, total_s, t_tok, s_tok = min(runs, key=lambda r: r[5])
    median = statistics.median(seconds)
    useful = flops_tok * (t_tok + 2 * s_tok)
    return {
        "words": len(splits), "snippets": len(train), "snippet_len": snippet_len, "batch_size": config.batch_size,
        "teacher_tokens": t_tok, "student_tokens": s_tok,
        "seconds_median": round(median, 2), "seconds_best": round(min(seconds), 2),
        "seconds_runs": [round(x, 2) for x in seconds], "teacher_seconds_best_run": round(teacher_s, 2),
        "snippets_per_s": round(len(train) / median, 2), "tokens_per_s": round((t_tok + s_tok) / median, 1),
        "useful_tflop": round(useful / 1e12, 3), "useful_gflop_per_s": round(useful / median / 1e9, 1),
        "fraction_of_matmul_peak": round(useful / median / 1e9 / peak, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m", help="bundled name, hub id or local folder")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of the paper configuration")
    parser.add_argument("--throughput-words", type=int, default=0,
                        help="also time one epoch over this many frequent corpus words (GPU-sized run)")
    parser.add_argument("--throughput-batch", type=int, default=64)
    parser.add_argument("--skip-one-word", action="store_true", help="skip the converged one-word run")
    args = parser.parse_args()
    td = TokenDistillation(args.model, device=args.device)
    device = td.lm.device
    peak = matmul_peak_gflops(device)
    flops_tok = layer_flops_per_token(td.lm)

    # Paper configuration: 8 words x 25 snippets x 51 tokens, batch 16, one epoch (teacher included).
    paper = DistillationConfig(epochs=1, batch_size=16, learning_rate=1e-4)
    _run(td, PAPER_WORDS[:1], 4, 51, paper)  # warm-up: allocator, kernels, corpus index
    paper_out = _throughput(td, PAPER_WORDS, 25, 51, paper, flops_tok, peak, repeats=args.repeats)
    paper_out["reference_straightforward_loop_seconds"] = 68.0 if device.type == "cpu" else None
    out = {
        "benchmark": "distill", "model": td.lm.source, "environment": environment(device),
        "matmul_peak_gflop_per_s": round(peak, 1), "decoder_flops_per_token": flops_tok,
        "flop_formula": "F*(T_teacher + 2*T_student), F = 2*decoder matmul params",
        "paper_config": paper_out,
    }
    if args.throughput_words:
        words = frequent_corpus_words(td.lm.tokenizer, args.throughput_words, min_count=30)
        big = DistillationConfig(epochs=1, batch_size=args.throughput_batch, learning_rate=1e-4)
        out["throughput"] = _throughput(td, words, 25, 51, big, flops_tok, peak)

    if not args.skip_one_word:
        # One word to convergence with the defaults, then held-out MSE against the subword mean.
        default = DistillationConfig()
        splits1, contexts1, train1, result1, teacher1, total1, _, _ = _run(td, ["Schopenhauer"], 25, 50, default,
                                                                           heldout=10)
        words1 = [s.word for s in splits1]
        heldout = contexts1[words1[0]].heldout
        sub = get_method("subword_mean").run(
            MethodContext(lm=td.lm, splits=splits1, train_snippets=train1, config=default)).rows
        metrics = heldout_metrics(td.lm, [NewTokenRows("subword_mean", words1, sub),
                                          NewTokenRows("tokdist", words1,
                                                       torch.stack([result1.rows[w] for w in words1]))],
                                  heldout)
        out["one_word_converged"] = {
            "word": words1[0], "snippets": len(train1), "config": default.to_dict(), "seconds": round(total1, 2),
            "heldout_mse_subword_mean": round(metrics["subword_mean"][words1[0]]["hidden_mse"], 4),
            "heldout_mse_tokdist": round(metrics["tokdist"][words1[0]]["hidden_mse"], 4),
        }
    out["memory"] = peak_memory_mb(device)
    out["methods"] = list(METHOD_NAMES)
    emit(out)


if __name__ == "__main__":
    main()
