"""Vocabulary adaptation end to end: discover N words in the bundled corpus, train, export, report (JSON).

    python -m benchmarks.bench_adapt --words 500            # one run
    python -m benchmarks.bench_adapt --sizes 250,500         # each size in a fresh process: peak memory vs words

Held-out documents (a fraction of the bundled corpus, chosen by their text) are kept out of discovery and
mining and scored for the report. Seconds per stage, peak RSS, tokens saved and bits per byte per method.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from benchmarks.common import emit, environment


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--device", default="auto")
    p.add_argument("--words", type=int, default=500)
    p.add_argument("--sizes", default=None, help="comma-separated word counts, each run in its own process")
    p.add_argument("--phrases", type=int, default=1)
    p.add_argument("--methods", default="subword_mean,tokdist")
    p.add_argument("--snippets-per-token", type=int, default=8)
    p.add_argument("--snippet-len", type=int, default=32)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--tokens-after", type=int, default=None,
                   help="tokens after the word that training reads (default: the library's; 0: whole snippets, "
                        "as every result before 2026-12-07)")
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--losses", default="hidden_mse", help="Token Distillation's losses, comma-separated")
    p.add_argument("--schedule", default="constant", choices=("constant", "linear"))
    p.add_argument("--warmup", type=float, default=0.5, help="with --schedule linear: share of the first epoch")
    p.add_argument("--memory-budget-gb", type=float, default=0.5)
    p.add_argument("--heldout-fraction", type=float, default=0.05)
    p.add_argument("--heldout-documents", type=int, default=100)
    p.add_argument("--mixed-precision", default="auto")
    p.add_argument("--keep-numbers", action="store_true", help="discovery keeps words with digits")
    p.add_argument("--keep-harmful", action="store_true", help="keep the words the harm check finds")
    p.add_argument("--no-prior-correction", action="store_true", help="keep trained rows as trained")
    return p


def run_one(args: argparse.Namespace) -> dict:
    from tokdist_core import DistillationConfig, TokenDistillation
    from tokdist_core.contexts.documents import iter_split_documents
    from tokdist_core.pipelines.adapt import AdaptSettings, adapt

    td = TokenDistillation(args.model, device=args.device)
    settings = AdaptSettings(data="bundled", methods=tuple(args.methods.split(",")),
                             snippets_per_token=args.snippets_per_token, snippet_len=args.snippet_len,
                             heldout_fraction=args.heldout_fraction, memory_budget_gb=args.memory_budget_gb,
                             export=False, keep_harmful=args.keep_harmful,
                             prior_correction=not args.no_prior_correction)
    config = DistillationConfig(epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr,
                                losses=tuple(args.losses.split(",")), schedule=args.schedule, warmup=args.warmup,
                                mixed_precision=args.mixed_precision)
    if args.tokens_after is not None:
        config = replace(config, tokens_after=args.tokens_after)
    start = time.perf_counter()
    found = td.discover(data="bundled", top=args.words, max_words=args.phrases,
                        document_split=settings.document_split(), keep_numbers=args.keep_numbers)
    discover_seconds = time.perf_counter() - start
    heldout = [text for _, text in iter_split_documents(["bundled"], settings.document_split(), "heldout",
                                                        max_documents=args.heldout_documents)]
    with tempfile.TemporaryDirectory() as out:
        result = adapt(td, found.words, settings, config, Path(out) / "adapted", heldout_documents=heldout,
                       show_progress=False)
    report = result.report.to_json()
    added = {m: len(r.words) for m, r in result.rows.items()}
    check = result.harm_check or {}
    return {
        "benchmark": "adapt", "model": td.lm.source, "environment": environment(td.lm.device),
        "words": len(found.words), "trained": result.trained, "added": added, "skipped": len(result.skipped),
        "harmful": check.get("harmful", []), "harm_check_documents": check.get("documents", 0),
        "settings": {k: v for k, v in vars(args).items() if k != "sizes"},
        "config": config.to_dict(),  # the training settings in effect, the library's defaults included
        "seconds": {"discover": round(discover_seconds, 2), **{k: round(v, 2) for k, v in result.seconds.items()},
                    "total": round(discover_seconds + sum(result.seconds.values()), 2)},
        "peak_rss_mb": round(result.peak_rss_mb, 1),
        "heldout_documents": report["documents"],
        "tokens_original": report["tokens_original"], "tokens_adapted": report["tokens_adapted"],
        "tokens_saved_pct": report["tokens_saved_pct"],
        "bits_per_byte": {"original": report["original"]["bits_per_byte"],
                          **{m: v["bits_per_byte"] for m, v in report["methods"].items()}},
        "bits_per_byte_change_pct": {m: v["bits_per_byte_change_pct"] for m, v in report["methods"].items()},
        "recovered_pct": recovered_pct(report),
        # bits per byte of each part (evaluation.parts), and its bytes
        "parts": {m: {p: {"bytes": v["bytes"], "bits_per_byte": v["bits"] / v["bytes"] if v["bytes"] else None}
                      for p, v in scores.get("parts", {}).items()}
                  for m, scores in {"original": report["original"], **report["methods"]}.items()},
    }


def recovered_pct(report: dict) -> float | None:
    """The share of subword mean's bits-per-byte gap to the original that Token Distillation closes (%)."""
    methods, original = report["methods"], report["original"]["bits_per_byte"]
    if "subword_mean" not in methods or "tokdist" not in methods:
        return None
    gap = methods["subword_mean"]["bits_per_byte"] - original
    return 100 * (methods["subword_mean"]["bits_per_byte"] - methods["tokdist"]["bits_per_byte"]) / gap if gap else None


def main() -> None:
    args = _parser().parse_args()
    if args.sizes is None:
        emit(run_one(args))
        return
    runs = []
    for size in [int(s) for s in args.sizes.split(",")]:
        # A fresh process per size: peak RSS is a per-process high-water mark.
        argv = list(sys.argv[1:])
        i = argv.index("--sizes")
        argv = argv[:i] + argv[i + 2 :] + ["--words", str(size)]
        proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_adapt", *argv], capture_output=True,
                              text=True, check=True)
        runs.append(json.loads(proc.stdout))
    first, last = runs[0], runs[-1]
    emit({"benchmark": "adapt_sizes", "runs": runs,
          "peak_rss_ratio": round(last["peak_rss_mb"] / first["peak_rss_mb"], 3),
          "words_ratio": round(last["words"] / first["words"], 3)})


if __name__ == "__main__":
    main()
