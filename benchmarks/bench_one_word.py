"""One word with `tokdist compare`'s defaults: training seconds (teacher included) against its held-out error.

The issue's target: within 5 % of the word's held-out hidden MSE after 32 epochs of Adam (batches of 4, lr 1e-2:
the defaults the issue was written against), in at most 5 s, measured alone. Runs the defaults `--repeats` times (median, min, max of the seconds; held-out MSE is
the same every run), the 32-epoch reference once, and optionally other epoch counts (`--curve`). Prints JSON.

    python -m benchmarks.bench_one_word                      # ' bitumen': no test uses it
    python -m benchmarks.bench_one_word --word caesium --curve 8,16
    python -m benchmarks.bench_one_word --mixed-precision bf16   # the defaults, computed in bf16 (reference too)
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import replace

from benchmarks.common import emit, environment
from tokdist_core.api import TokenDistillation
from tokdist_core.foundations.limits import PRECISIONS
from tokdist_core.training import DistillationConfig

TARGET_SECONDS = 5.0
TARGET_RATIO = 1.05
# The reference: 32 epochs of the Adam defaults it was written against (batches of 4, lr 1e-2).
REFERENCE = {"optimizer": "adam", "epochs": 32, "batch_size": 4}


def _compare(td: TokenDistillation, word: str, config: DistillationConfig) -> tuple[float, float, dict]:
    """(Token Distillation's seconds, its held-out hidden MSE, the word's entry) from one `compare`."""
    result = td.compare([word], data="bundled", methods=["subword_mean", "tokdist"], training=config).to_json()
    if not result["summary"]:
        raise SystemExit(f"{word!r}: {result.get('skipped')}")
    entry = result["words"][0]
    return entry["methods"]["tokdist"]["seconds"], entry["methods"]["tokdist"]["hidden_mse"], entry


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--word", default="bitumen")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--curve", default="", help="comma-separated epoch counts to run once each as well")
    parser.add_argument("--mixed-precision", default="auto", choices=PRECISIONS)
    args = parser.parse_args()
    td = TokenDistillation(args.model, device="cpu")
    defaults = DistillationConfig(mixed_precision=args.mixed_precision)
    runs = [_compare(td, args.word, defaults) for _ in range(args.repeats)]
    seconds = [r[0] for r in runs]
    mse, entry = runs[0][1], runs[0][2]
    ref_seconds, ref_mse, _ = _compare(td, args.word, replace(defaults, **REFERENCE))
    curve = {}
    for epochs in [int(e) for e in args.curve.split(",") if e.strip()]:
        s, m, _ = _compare(td, args.word, replace(defaults, epochs=epochs))
        curve[epochs] = {"seconds": round(s, 2), "heldout_mse": round(m, 5), "x_reference": round(m / ref_mse, 3)}
    median = statistics.median(seconds)
    emit({
        "benchmark": "one_word", "model": td.lm.source, "environment": environment(td.lm.device),
        "word": args.word, "config": defaults.to_dict(),
        "seconds": {"median": round(median, 2), "min": round(min(seconds), 2), "max": round(max(seconds), 2),
                    "runs": [round(s, 2) for s in seconds]},
        "snippets": {"train": entry["train_snippets"], "heldout": entry["heldout_snippets"]},
        "heldout_mse": round(mse, 5), "heldout_mse_subword_mean": round(entry["methods"]["subword_mean"]["hidden_mse"], 5),
        "reference": {**REFERENCE, "seconds": round(ref_seconds, 2), "heldout_mse": round(ref_mse, 5)},
        "x_reference": round(mse / ref_mse, 3), "curve": curve,
        "target": {"seconds": TARGET_SECONDS, "x_reference": TARGET_RATIO,
                   "met": median <= TARGET_SECONDS and mse <= TARGET_RATIO * ref_mse},
    })


if __name__ == "__main__":
    main()
