"""Held-out quality of every method over a word list from the bundled corpus (the README's table)."""

from __future__ import annotations

import argparse

from benchmarks.common import PAPER_WORDS, emit, environment
from tokdist_core.api import TokenDistillation
from tokdist_core.forward import PRECISIONS
from tokdist_core.methods import METHOD_NAMES
from tokdist_core.training import DistillationConfig


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--words", nargs="*", default=PAPER_WORDS)
    parser.add_argument("--epochs", type=int, default=DistillationConfig.epochs)
    parser.add_argument("--lr", type=float, default=DistillationConfig.learning_rate)
    parser.add_argument("--methods", default=",".join(METHOD_NAMES))
    parser.add_argument("--mixed-precision", default="auto", choices=PRECISIONS)
    args = parser.parse_args()
    td = TokenDistillation(args.model)
    comparison = td.compare(args.words, data="bundled", methods=args.methods.split(","),
                            training=DistillationConfig(epochs=args.epochs, learning_rate=args.lr,
                                                        mixed_precision=args.mixed_precision))
    report = comparison.to_json()
    emit({"benchmark": "quality", "model": td.lm.source, "environment": environment(td.lm.device),
          "config": report["config"], "summary": report["summary"], "skipped": report["skipped"],
          "per_word_hidden_mse": {w["word"]: {m: round(v["hidden_mse"], 4) for m, v in w["methods"].items()}
                                  for w in report["words"]}})


if __name__ == "__main__":
    main()
