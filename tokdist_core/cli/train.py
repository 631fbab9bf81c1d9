"""`tokdist split | distill | compare`: the commands that take a list of words.

Every argument is checked before torch is imported; the model loads only once the command line is sound.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..training.config import DistillationConfig
from .common import (
    METHOD_NAMES,
    FractionBar,
    StageLines,
    StepBar,
    UsageError,
    absolute_paths,
    add_common,
    add_formats,
    check_data,
    check_export_flags,
    check_json_file,
    check_out_folder,
    check_slots,
    command_line,
    data_arg,
    parse_methods,
    training_config,
    words_of,
)


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("split", help="show how the model splits words", description="Show how the model splits words.")
    add_common(p, training=False)
    p.set_defaults(run=run)
    p = sub.add_parser("distill", help="learn rows for words and export the model",
                       description="Learn embedding rows for the words and save the model with them added.")
    add_common(p)
    p.add_argument("--method", default="tokdist", choices=METHOD_NAMES,
                   help="how the new rows are initialized or trained (default: %(default)s)")
    p.add_argument("--out", required=True, metavar="FOLDER",
                   help="output folder for model + tokenizer + new rows + model card + reproduce.py; created if "
                        "missing; an earlier export there is replaced whole")
    add_formats(p)
    p.set_defaults(run=run)
    p = sub.add_parser("compare", help="compare methods on held-out snippets",
                       description="Train every method on the same snippets and compare them on held-out snippets.")
    add_common(p, heldout=True)
    p.add_argument("--methods", default=",".join(METHOD_NAMES),
                   help="comma-separated methods to compare (default: all: %(default)s)")
    p.add_argument("--json", metavar="FILE", help="also write the full report to this JSON file (its folder must exist)")
    p.set_defaults(run=run)


def _check_text_files(data: str) -> None:
    """Empty, binary or non-UTF-8 --data files are refused now, before the model loads (as discover does)."""
    from ..discovery import corpus_sources

    if all(item.strip() in ("generated", "auto", "bundled") for item in data.split(",")):
        return
    try:
        corpus_sources(data_arg(data))
    except ValueError as exc:  # CorpusError
        raise UsageError(str(exc)) from None


def check(args: argparse.Namespace) -> list[str]:
    """Every check that needs no model: data paths, output paths and method names; -> the words."""
    if args.command in ("distill", "compare"):
        check_data(args.data)
        _check_text_files(args.data)
    if args.command == "distill":
        check_export_flags(args)
        check_out_folder(args.out)
        from ..foundations.files import replace_refusal

        refusal = replace_refusal(args.out)
        if refusal:
            raise UsageError(f"--out {refusal}")
    if args.command == "compare":
        args.method_list = parse_methods(args.methods)
        if args.json is not None:
            check_json_file(args.json)
    return words_of(args)


def run(args: argparse.Namespace) -> int:
    words = check(args)
    config = None if args.command == "split" else training_config(args)
    from ..api import TokenDistillation

    td = TokenDistillation(args.model, device=args.device)
    if config is not None:
        config.validate(td.lm)  # target layer and precision need the model; still before any mining
    if "gguf" in getattr(args, "formats", ()):
        from ..export.gguf_file import base_gguf

        base_gguf(td.lm)  # a model with no supported GGUF base is refused before any work
    splits, skipped = td.prepare_words(words, mid_sentence=not args.no_space, describe=args.descriptions)
    if args.command == "split":
        for s in splits:
            reads = f" (read as {s.description!r})" if s.description else ""
            print(f"{s.display!r}{reads}: {len(s.ids)} subwords {list(s.pieces)} ids {list(s.ids)}")
        for s in skipped:
            print(f"{s.word!r}: {s.reason}")
        return 0
    if args.command == "distill":
        check_slots(td, args, len(splits))
        return _distill(args, td, splits, skipped, config)
    return _compare(args, td, words, config)


def _distill(args: argparse.Namespace, td: Any, splits: list, skipped: list, config: DistillationConfig) -> int:
    from ..contexts import snippets_of
    from ..export import reproduce_snippet

    for s in skipped:
        print(f"skipped {s.word!r}: {s.reason}", file=sys.stderr)
    if not splits:
        raise ValueError("no word can be added")
    collecting = FractionBar("snippets")
    try:
        contexts = td.contexts(splits, data_arg(args.data), args.snippets_per_token, 0, args.snippet_len, args.seed,
                               progress=collecting)
    finally:
        collecting.close()
    train = snippets_of(contexts, splits)
    missing = [s.word for s in splits if not contexts[s.word].train]
    if missing:
        print(f"no snippets for {missing}; they get the {args.method} rows only if it needs none", file=sys.stderr)
    bar = StepBar()
    try:
        outcome = td.train(splits, train, [args.method], config, args.output_policy, callback=bar)
    finally:
        bar.close()
    script = reproduce_snippet(args.model, [s.word for s in splits], args.method, config.to_dict(),
                               absolute_paths(data_arg(args.data)), args.snippet_len, args.snippets_per_token,
                               mid_sentence=not args.no_space, output_policy=args.output_policy,
                               descriptions=outcome.rows[args.method].descriptions)
    settings = {"method": args.method, "data": args.data, "snippets_per_token": args.snippets_per_token,
                "snippet_len": args.snippet_len, "output_policy": args.output_policy, **config.to_dict()}
    out = td.save(outcome.rows[args.method], args.out, reproduce=script,
                  card={"settings": settings, "command": command_line(args)}, formats=args.formats,
                  reuse_slots=args.reuse_slots)
    print(json.dumps({"out": str(out), "words": [s.word for s in splits], "seconds": outcome.seconds,
                      "skipped": [{"word": s.word, "reason": s.reason} for s in skipped]}, ensure_ascii=False))
    return 0


def _compare(args: argparse.Namespace, td: Any, words: list[str], config: DistillationConfig) -> int:
    bar = StepBar()
    try:
        comparison = td.compare(words, data=data_arg(args.data), methods=args.method_list, training=config,
                                snippet_len=args.snippet_len, snippets_per_token=args.snippets_per_token,
                                heldout_per_token=args.heldout_per_token, mid_sentence=not args.no_space,
                                output_policy=args.output_policy, callback=bar, progress=StageLines(),
                                describe=args.descriptions)
    finally:
        bar.close()
    report = comparison.to_json()
    text = json.dumps(report, indent=2, ensure_ascii=False)
    if args.json:
        Path(args.json).write_text(text, encoding="utf-8")
    _print_summary(report)
    if not any(w["methods"] for w in report["words"]):  # every word skipped: nothing was compared
        print("error: no word could be compared (see the skipped words above)", file=sys.stderr)
        return 1
    return 0


def _print_summary(report: dict) -> None:
    print(f"{'method':<18}{'hidden_mse':>12}{'hidden_cos':>12}{'next_tok_kl':>13}{'norm_pct':>10}{'seconds':>9}")
    for method, m in report["summary"].items():
        print(f"{method:<18}{m['hidden_mse']:>12.4f}{m['hidden_cos']:>12.4f}{m['next_token_kl']:>13.4f}"
              f"{m['norm_percentile']:>10.1f}{m['seconds']:>9.1f}")
    for s in report["skipped"]:
        print(f"skipped {s['word']!r}: {s['reason']}")
