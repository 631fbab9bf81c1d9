"""Distillation throughput on the embedded model: the paper configuration and a single converged word.

Useful FLOPs = teacher forward to the target layer once per snippet (all teacher tokens)
             + student forward and backward from the new token on (backward = 1 forward: weights are
               frozen, only input gradients flow), i.e. F * (T_teacher + 2 * T_student),
where F = 2 x decoder matmul parameters per token (attention score FLOPs and the LM head are not counted).
"""

from __future__ import annotations

import argparse
import copy
import random
import statistics
import time

import torch

from benchmarks.common import (
    PAPER_WORDS,
    emit,
    environment,
    frequent_corpus_words,
    matmul_peak_gflops,
    peak_memory_mb,
)
from tokdist_core import snippets_of
from tokdist_core.api import TokenDistillation
from tokdist_core.estimate import layer_flops_per_token
from tokdist_core.foundations.forward import PRECISIONS, autocast_dtype, autocast_for
from tokdist_core.methods import METHOD_NAMES
from tokdist_core.training import DistillationConfig


def _snippets(td, words, snippets_per_token, snippet_len, seed, heldout=0):
    """Words with a full set of bundled-corpus training snippets, their contexts, and all those snippets."""
    splits, _ = td.prepare_words(words)
    contexts = td.contexts(splits, "bundled", snippets_per_token, heldout, snippet_len, seed)
    splits = [s for s in splits if len(contexts[s.word].train) == snippets_per_token]
    return splits, contexts, snippets_of(contexts, splits)


def _run(td, words, snippets_per_token, snippet_len, config, heldout=0):
    """Token Distillation through the facade (teacher included); with held-out snippets, also evaluated
    against the subword mean (outside the timing)."""
    splits, contexts, train = _snippets(td, words, snippets_per_token, snippet_len, config.seed, heldout)
    start = time.perf_counter()
    outcome = td.train(splits, train, ["tokdist"], config)
    if td.lm.device.type == "cuda":
        torch.cuda.synchronize()
    total_s = time.perf_counter() - start
    if heldout:
        outcome.metrics = td.evaluate([td.train(splits, train, ["subword_mean"], config).rows["subword_mean"],
                                       outcome.rows["tokdist"]], snippets_of(contexts, splits, "heldout"))
    teacher_tokens = sum(len(s.token_ids) for s in train)
    return splits, train, outcome, total_s, teacher_tokens, outcome.tokens_seen["tokdist"]


def _straightforward_seconds(lm, splits, train, mixed_precision: str, batch_size: int = 16) -> float:
    """The reference loop of docs/method.md: teacher recomputed every step, full forward with the LM head on both
    passes, the whole (resized) embedding matrix trained with dense gradients and AdamW state. It runs
    under the same autocast setting as the timed configuration, so the speedup compares like with like."""
    model = copy.deepcopy(lm.model)  # resized and trained here; the shared model stays untouched
    vocab = model.get_input_embeddings().weight.shape[0]
    model.resize_token_embeddings(vocab + len(splits))
    new_id = {s.word: vocab + i for i, s in enumerate(splits)}
    weight = model.get_input_embeddings().weight
    weight.requires_grad_(True)
    optimizer = torch.optim.AdamW([weight], lr=1e-4)
    pad = lm.tokenizer.pad_token_id or 0
    order = list(train)
    random.Random(0).shuffle(order)

    def padded(rows):
        width = max(len(r) for r in rows)
        ids = torch.tensor([list(r) + [pad] * (width - len(r)) for r in rows], device=lm.device)
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=lm.device)
        return ids, mask

    start = time.perf_counter()
    for b in range(0, len(order), batch_size):
        batch = order[b : b + batch_size]
        teacher_ids, teacher_mask = padded([s.token_ids for s in batch])
        student_ids, student_mask = padded([s.prefix + (new_id[s.word],) + s.suffix for s in batch])
        with torch.no_grad(), autocast_for(lm.device, mixed_precision):
            teacher = model(input_ids=teacher_ids, attention_mask=teacher_mask, output_hidden_states=True)
        with autocast_for(lm.device, mixed_precision):
            student = model(input_ids=student_ids, attention_mask=student_mask, output_hidden_states=True)
        loss = sum(
            (student.hidden_states[-1][i, s.start : s.start + 1 + len(s.suffix)].float()
             - teacher.hidden_states[-1][i, s.start + s.n_subwords - 1 : len(s.token_ids)].float()).pow(2).mean()
            for i, s in enumerate(batch)
        ) / len(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def _throughput(td, words, snippets_per_token, snippet_len, config, flops_tok, peak, repeats=1) -> dict:
    runs = [_run(td, words, snippets_per_token, snippet_len, config) for _ in range(repeats)]
    seconds = [r[3] for r in runs]
    splits, train, outcome, _, t_tok, s_tok = min(runs, key=lambda r: r[3])
    median = statistics.median(seconds)
    useful = flops_tok * (t_tok + 2 * s_tok)
    return {
        "words": len(splits), "snippets": len(train), "snippet_len": snippet_len, "batch_size": config.batch_size,
        "teacher_tokens": t_tok, "student_tokens": s_tok,
        "seconds_median": round(median, 2), "seconds_best": round(min(seconds), 2),
        "seconds_runs": [round(x, 2) for x in seconds], "teacher_seconds_best_run": round(outcome.teacher_seconds, 2),
        "snippets_per_s": round(len(train) / median, 2), "tokens_per_s": round((t_tok + s_tok) / median, 1),
        "useful_tflop": round(useful / 1e12, 3), "useful_gflop_per_s": round(useful / median / 1e9, 1),
        "fraction_of_matmul_peak": round(useful / median / 1e9 / peak, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m", help="bundled name, hub id or local folder")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--mixed-precision", default="auto", choices=PRECISIONS,
                        help="auto: bf16 on CUDA, fp32 on CPU (the README's CPU targets); bf16: also on CPU")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of the paper configuration")
    parser.add_argument("--throughput-words", type=int, default=0,
                        help="also time one epoch over this many frequent corpus words (GPU-sized run)")
    parser.add_argument("--throughput-batch", type=int, default=64)
    parser.add_argument("--skip-one-word", action="store_true", help="skip the converged one-word run")
    parser.add_argument("--skip-straightforward", action="store_true",
                        help="skip timing the straightforward reference loop (docs/method.md) on the paper configuration")
    args = parser.parse_args()
    if args.repeats < 1 or args.throughput_words < 0 or args.throughput_batch < 1:
        parser.error("--repeats and --throughput-batch must be >= 1, --throughput-words >= 0")
    td = TokenDistillation(args.model, device=args.device)
    device = td.lm.device
    compute_dtype = autocast_dtype(device, args.mixed_precision) or torch.float32
    peak = matmul_peak_gflops(device, compute_dtype)
    flops_tok = layer_flops_per_token(td.lm)

    # Paper configuration: 8 words x 25 snippets x 51 tokens, batch 16, one epoch (teacher included).
    paper = DistillationConfig(epochs=1, batch_size=16, learning_rate=1e-4, mixed_precision=args.mixed_precision)
    _run(td, PAPER_WORDS[:1], 4, 51, paper)  # warm-up: allocator, kernels, corpus index
    paper_out = _throughput(td, PAPER_WORDS, 25, 51, paper, flops_tok, peak, repeats=args.repeats)
    if not args.skip_straightforward:
        splits, _, train = _snippets(td, PAPER_WORDS, 25, 51, paper.seed)
        reference = _straightforward_seconds(td.lm, splits, train, args.mixed_precision)
        paper_out["straightforward_loop_seconds"] = round(reference, 2)
        paper_out["speedup_over_straightforward"] = round(reference / paper_out["seconds_median"], 2)
    out = {
        "benchmark": "distill", "model": td.lm.source, "environment": environment(device),
        "compute_dtype": str(compute_dtype).removeprefix("torch."),
        "matmul_peak_gflop_per_s": round(peak, 1), "decoder_flops_per_token": flops_tok,
        "flop_formula": "F*(T_teacher + 2*T_student), F = 2*decoder matmul params",
        "paper_config": paper_out,
    }
    if args.throughput_words:
        words = frequent_corpus_words(td.lm.tokenizer, args.throughput_words, min_count=30)
        big = DistillationConfig(epochs=1, batch_size=args.throughput_batch, learning_rate=1e-4,
                                 mixed_precision=args.mixed_precision)
        out["throughput"] = _throughput(td, words, 25, 51, big, flops_tok, peak)

    if not args.skip_one_word:
        # One word to convergence with the defaults, then held-out MSE against the subword mean.
        default = DistillationConfig(mixed_precision=args.mixed_precision)
        splits1, train1, outcome1, total1, _, _ = _run(td, ["Schopenhauer"], 25, 50, default, heldout=10)
        word, metrics = splits1[0].word, outcome1.metrics
        out["one_word_converged"] = {
            "word": word, "snippets": len(train1), "config": default.to_dict(), "seconds": round(total1, 2),
            "heldout_mse_subword_mean": round(metrics["subword_mean"][word]["hidden_mse"], 4),
            "heldout_mse_tokdist": round(metrics["tokdist"][word]["hidden_mse"], 4),
        }
    out["memory"] = peak_memory_mb(device)
    out["methods"] = list(METHOD_NAMES)
    emit(out)


if __name__ == "__main__":
    main()
