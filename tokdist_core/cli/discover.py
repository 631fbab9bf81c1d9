"""`tokdist discover`: candidate new tokens ranked by tokens saved (see tokdist_core.discovery).

Like the rest of the command line, every argument is checked before torch is imported.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..foundations.limits import DEFAULT_MODEL, MAX_PHRASE_WORDS, MAX_TOP, MAX_WORD_CHARS
from .common import UsageError, check_data, check_json_file, data_arg, int_range


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("discover", help="find words worth adding: most tokens saved in a corpus",
                       description="Rank candidate new tokens by tokens saved = count x (pieces - 1) under the "
                                   "model's tokenizer: words (and phrases) counted in a corpus, another "
                                   "tokenizer's vocabulary, or a frequency list.")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="bundled model name, local folder or Hugging Face hub id (default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: %(default)s)")
    p.add_argument("--data", default=None,
                   help="the corpus to count in: bundled (also auto), text/jsonl/csv/parquet files or folders, "
                        "hf:<dataset>[:config][:split]; comma-separate to mix (default: bundled; with "
                        "--from-tokenizer: none, the other tokenizer's order)")
    p.add_argument("--from-tokenizer", metavar="TOKENIZER",
                   help="candidates from another tokenizer's vocabulary: a local folder or hub id")
    p.add_argument("--frequency-list", metavar="FILE",
                   help="candidates from a UTF-8 file of word<TAB>count lines or JSONL {\"word\": ..., \"count\": ...}")
    p.add_argument("--top", type=int_range(1, MAX_TOP), default=50, metavar="N",
                   help=f"how many candidates to list, 1..{MAX_TOP} (default: %(default)s)")
    p.add_argument("--min-count", type=int_range(1, 10**12), default=2, metavar="N",
                   help="skip candidates counted fewer times (default: %(default)s)")
    p.add_argument("--min-chars", type=int_range(1, MAX_WORD_CHARS), default=3, metavar="N",
                   help=f"skip candidates shorter than N characters, 1..{MAX_WORD_CHARS} (default: %(default)s)")
    p.add_argument("--phrases", type=int_range(1, MAX_PHRASE_WORDS), default=1, metavar="N",
                   help=f"also count phrases of up to N words, 1..{MAX_PHRASE_WORDS} (1: words only; phrases "
                        "that start or end with an English stop word are skipped) (default: %(default)s)")
    p.add_argument("--keep-numbers", action="store_true",
                   help="keep candidates with digits when the tokenizer reads numbers digit by digit (left out by "
                        "default: such tokens cost more quality than they save, docs/method.md)")
    p.add_argument("--max-documents", type=int_range(1, 10**12), default=None, metavar="N",
                   help="read at most N documents of the corpus (default: all; hf: datasets stop at 20000)")
    p.add_argument("--json", nargs="?", const="-", default=None, metavar="FILE",
                   help="print the report as JSON instead of a table, or with FILE write it there as well")
    p.add_argument("--words-out", metavar="FILE",
                   help="also write the candidates one per line, a words file for --words-file")
    p.set_defaults(run=run)


def check(args: argparse.Namespace) -> dict:
    """Every check of `tokdist discover` that needs no model; -> the keyword arguments of td.discover."""
    from ..discovery import corpus_sources, load_tokenizer, read_frequency_list

    if args.from_tokenizer is not None and args.frequency_list is not None:
        raise UsageError("give --from-tokenizer or --frequency-list, not both")
    if args.frequency_list is not None and args.data is not None:
        raise UsageError("--frequency-list brings its own counts; do not also give --data")
    if args.phrases > 1 and (args.from_tokenizer or args.frequency_list):
        raise UsageError("--phrases counts phrases in a corpus; the candidates of --from-tokenizer and "
                         "--frequency-list are given (phrases in them are kept as they are)")
    for name, flag in ((args.json, "--json"), (args.words_out, "--words-out")):
        if name is not None and name != "-":
            check_json_file(name, flag)
    kwargs: dict[str, Any] = {"top": args.top, "min_count": args.min_count, "min_chars": args.min_chars,
                              "max_words": args.phrases, "max_documents": args.max_documents,
                              "keep_numbers": args.keep_numbers}
    data = args.data if args.data is not None or args.from_tokenizer or args.frequency_list else "bundled"
    try:
        if data is not None:
            check_data(data)
            if "generated" in [item.strip() for item in data.split(",")]:
                raise UsageError("--data generated: discovery counts words in existing text; give bundled, "
                                 "files, folders or hf:<dataset>")
            corpus_sources(data_arg(data))  # binary, non-UTF-8 or empty files, before loading the model
            kwargs["data"] = data_arg(data)
        if args.frequency_list is not None:
            kwargs["frequency_list"] = read_frequency_list(args.frequency_list)
        if args.from_tokenizer is not None:
            kwargs["from_tokenizer"] = load_tokenizer(args.from_tokenizer)
    except ValueError as exc:  # DiscoveryError, CorpusError: a bad file or tokenizer named on the command line
        raise UsageError(str(exc)) from None
    return kwargs


def run(args: argparse.Namespace) -> int:
    kwargs = check(args)
    from ..api import TokenDistillation

    td = TokenDistillation(args.model, device=args.device)
    report = td.discover(**kwargs).to_json()
    if args.from_tokenizer is not None:
        report["source"] = f"tokenizer:{args.from_tokenizer}"
    text = json.dumps(report, indent=2, ensure_ascii=False)
    if args.json not in (None, "-"):
        Path(args.json).write_text(text + "\n", encoding="utf-8")
    if args.words_out is not None:
        words = [c["token"][1:] for c in report["candidates"]]  # a words file re-adds the leading space
        Path(args.words_out).write_text("".join(w + "\n" for w in words), encoding="utf-8")
    if args.json == "-":
        print(text)
    else:
        _print_discovery(report)
    return 0


def _print_discovery(report: dict) -> None:
    print(f"model {report['model']} · {report['source']}" + (f" · {report['documents']:,} documents, "
          f"{report['corpus_tokens']:,} tokens" if report["corpus_tokens"] is not None else ""))
    print(f"{'rank':>5}  {'token':<28}{'count':>9}{'pieces':>8}{'saved':>9}{'cum %':>8}  subwords")
    for rank, c in enumerate(report["candidates"], start=1):
        shown = "␣" + c["token"][1:] if c["token"].startswith(" ") else c["token"]
        count = "-" if c["count"] is None else f"{c['count']:,}"
        saved = "-" if c["tokens_saved"] is None else f"{c['tokens_saved']:,}"
        share = "-" if c["cumulative_saved_pct"] is None else f"{c['cumulative_saved_pct']:.2f}"
        print(f"{rank:>5}  {shown:<28}{count:>9}{len(c['subwords']):>8}{saved:>9}{share:>8}  "
              + " ".join(repr(p) for p in c["subwords"]))
    if not report["candidates"]:
        print("no candidates: every word is already one token or under --min-count / --min-chars")
    filtered = ", ".join(f"{n:,} {reason}" for reason, n in sorted(report["filtered"].items(), key=lambda kv: -kv[1]))
    if filtered:
        print(f"not candidates: {filtered}")
    for r in report["rejected"][:20]:
        print(f"rejected line {r['line']}: {r['entry']!r}: {r['reason']}")
    if len(report["rejected"]) > 20:
        print(f"... {len(report['rejected']) - 20} more rejected entries; --json lists them all")
