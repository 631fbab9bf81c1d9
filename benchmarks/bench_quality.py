"""Held-out quality of every method over a word list from the bundled corpus (the README's table).

`--variants`: Token Distillation under the reference's loss, start and schedule variants instead, each
trained on the same snippets and evaluated on the same held-out snippets (README "Loss, start and
schedule variants").
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from benchmarks.common import PAPER_WORDS, emit, environment
from tokdist_core.api import TokenDistillation
from tokdist_core.contexts import snippets_of
from tokdist_core.evaluation.metrics import METRICS
from tokdist_core.foundations.forward import PRECISIONS
from tokdist_core.methods import METHOD_NAMES
from tokdist_core.training import DistillationConfig

# The defaults before 2026-12-07: every snippet read whole, 8 epochs of batches of 16.
WHOLE = {"tokens_after": 0, "batch_size": 16, "epochs": 8}
# name -> the config fields that differ from the defaults (the default is the paper's method).
VARIANTS = {
    "default (hidden_mse)": {},
    "hidden_mse + logit_kl": {"losses": ("hidden_mse", "logit_kl")},
    "logit_kl": {"losses": ("logit_kl",)},
    "logit_mse": {"losses": ("logit_mse",)},
    "hidden_mse + ntp_auto": {"losses": ("hidden_mse", "ntp_auto")},
    "hidden_mse + ntp x0.5": {"losses": ("hidden_mse", "ntp"), "ntp_weight": 0.5},
    "init random": {"init": "random"},
    "init vocab_mean": {"init": "vocab_mean"},
    "schedule linear": {"schedule": "linear"},
    # Step sizes and step counts (docs/method.md, "Why the defaults are ..."): first with whole snippets and the
    # defaults before 2026-12-07 (8 epochs of batches of 16), then with training cut after the word.
    "whole snippets": WHOLE,
    "whole snippets, lr 3e-2": {**WHOLE, "learning_rate": 3e-2},
    "whole snippets, lr 5e-2": {**WHOLE, "learning_rate": 5e-2},
    "whole snippets, lr 5e-2, 4 epochs": {**WHOLE, "learning_rate": 5e-2, "epochs": 4},
    "whole snippets, lr 2e-2, linear decay": {**WHOLE, "learning_rate": 2e-2, "schedule": "linear", "warmup": 0.0},
    "whole snippets, lr 3e-2, linear decay": {**WHOLE, "learning_rate": 3e-2, "schedule": "linear", "warmup": 0.0},
    "whole snippets, lr 1e-1, linear, warm-up 0.25": {**WHOLE, "learning_rate": 1e-1, "schedule": "linear",
                                                      "warmup": 0.25},
    "whole snippets, batch 8": {**WHOLE, "batch_size": 8},
    "whole snippets, 16 epochs": {**WHOLE, "epochs": 16},
    "2 tokens after, batch 8": {"tokens_after": 2, "batch_size": 8},
    "8 tokens after": {"tokens_after": 8},
    "4 tokens after, batch 8": {"tokens_after": 4, "batch_size": 8},
    "4 tokens after, batch 16, 32 epochs": {"tokens_after": 4, "batch_size": 16, "epochs": 32},
    # L-BFGS: a first pass at the start, then one step a pass on all of a word's snippets (docs/method.md,
    # "Fewer, better steps: L-BFGS").
    **{f"lbfgs {steps} steps lr {lr}{tail}": {"optimizer": "lbfgs", "epochs": steps, "learning_rate": float(lr), **extra}
       for steps, lr, tail, extra in [(19, "3e-2", "", {}), (29, "3e-2", "", {}), (29, "1e-2", "", {}),
                                      (29, "3e-3", "", {}), (39, "1e-2", "", {}), (49, "1e-2", "", {}),
                                      (19, "3e-2", " 2 tokens after", {"tokens_after": 2})]},
}
# Words no test uses, from the bundled corpus (the "words the tests never see").
UNSEEN_WORDS = ["Athabasca", "Najibullah", "Macfarlane", "Iwama", "UNITA", "Toowoomba", "Hollingworth", "bitumen",
                "caesium", "aikido", "appellate", "Ruddock"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m")
    chosen = parser.add_mutually_exclusive_group()
    chosen.add_argument("--words", nargs="*", default=PAPER_WORDS)
    chosen.add_argument("--unseen-words", action="store_true", help=f"use {len(UNSEEN_WORDS)} words no test uses")
    parser.add_argument("--epochs", type=int, default=DistillationConfig.epochs)
    parser.add_argument("--lr", type=float, default=DistillationConfig.learning_rate)
    parser.add_argument("--methods", default=",".join(METHOD_NAMES))
    parser.add_argument("--mixed-precision", default="auto", choices=PRECISIONS)
    parser.add_argument("--variants", nargs="?", const=",".join(VARIANTS), default=None,
                        help="train tokdist under these variants (comma-separated names; all when given alone): "
                             + "; ".join(VARIANTS))
    parser.add_argument("--snippets-per-token", type=int, default=25)
    parser.add_argument("--heldout-per-token", type=int, default=10)
    args = parser.parse_args()
    if args.unseen_words:
        args.words = UNSEEN_WORDS
    td = TokenDistillation(args.model)
    config = DistillationConfig(epochs=args.epochs, learning_rate=args.lr, mixed_precision=args.mixed_precision)
    if args.variants is not None:
        variants(td, args, config)
        return
    comparison = td.compare(args.words, data="bundled", methods=args.methods.split(","), training=config,
                            snippets_per_token=args.snippets_per_token, heldout_per_token=args.heldout_per_token)
    report = comparison.to_json()
    emit({"benchmark": "quality", "model": td.lm.source, "environment": environment(td.lm.device),
          "config": report["config"], "summary": report["summary"], "skipped": report["skipped"],
          "per_word_hidden_mse": {w["word"]: {m: round(v["hidden_mse"], 4) for m, v in w["methods"].items()}
                                  for w in report["words"]}})


def variants(td: TokenDistillation, args: argparse.Namespace, base: DistillationConfig) -> None:
    """Contexts once; then per variant td.train + td.evaluate of tokdist on the same snippets."""
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
    splits, skipped = td.prepare_words(args.words)
    contexts = td.contexts(splits, "bundled", args.snippets_per_token, args.heldout_per_token, seed=base.seed)
    usable = [s for s in splits if contexts[s.word].train and contexts[s.word].heldout]
    train, heldout = snippets_of(contexts, usable), snippets_of(contexts, usable, "heldout")
    baseline = td.train(usable, train, ["subword_mean"], base, heldout=heldout).metrics["subword_mean"]
    results = {}
    for name in names:
        config = replace(base, **VARIANTS[name])
        config.validate(td.lm)
        outcome = td.train(usable, train, ["tokdist"], config, heldout=heldout)
        per_word = outcome.metrics["tokdist"]
        results[name] = {
            "changes": {k: list(v) if isinstance(v, tuple) else v for k, v in VARIANTS[name].items()},
            "summary": {k: round(sum(m[k] for m in per_word.values()) / len(per_word), 4)
                        for k in METRICS if k in ("hidden_mse", "hidden_cos", "next_token_kl")},
            "seconds": round(outcome.seconds["tokdist"], 1),
            "x_subword_mean": round(sum(m["hidden_mse"] for m in per_word.values())
                                    / sum(baseline[w]["hidden_mse"] for w in per_word), 3),
            "words_won": sum(m["hidden_mse"] < baseline[w]["hidden_mse"] for w, m in per_word.items()),
        }
    emit({"benchmark": "quality-variants", "model": td.lm.source, "environment": environment(td.lm.device),
          "config": base.to_dict(), "words": [s.word for s in usable],
          "skipped": [{"word": s.word, "reason": s.reason} for s in skipped]
          + [{"word": s.word, "reason": "not enough snippets"} for s in splits if s not in usable],
          "train_snippets": len(train), "heldout_snippets": len(heldout),
          "subword_mean_hidden_mse": round(sum(m["hidden_mse"] for m in baseline.values()) / len(baseline), 4),
          "variants": results})


if __name__ == "__main__":
    main()
