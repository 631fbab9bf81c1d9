"""`tokdist adapt`: a domain corpus in, an adapted model per method and a held-out report out.

    tokdist adapt --data corpus/ --top 500 --methods subword_mean,tokdist --out adapted/
    torchrun --nproc_per_node=2 --no-python tokdist adapt ...   # the words sharded over two processes

Like the rest of the command line, every argument is checked before torch is imported.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..foundations.limits import MAX_TOP
from ..training.config import ADAPT_DEFAULTS
from .common import (
    UsageError,
    add_common,
    add_formats,
    check_data,
    check_export_flags,
    check_out_folder,
    check_slots,
    command_line,
    data_arg,
    descriptions_of,
    int_range,
    parse_methods,
    training_config,
    words_of,
)

MAX_HELDOUT_DOCUMENTS = 100_000


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of GB, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of GB, got {text!r}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction between 0 and 1, got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {text!r}")
    return value


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("adapt", help="adapt the vocabulary to a corpus: candidates, training, export, report",
                       description="Pick new tokens for a corpus, learn their rows with each method, save a model "
                                   "per method and report tokens saved and bits per byte on held-out text.")
    add_common(p)
    p.set_defaults(**ADAPT_DEFAULTS)  # the training defaults measured at scale (training.config)
    source = p.add_argument_group("which words (one of these, or --words/--words-file)")
    source.add_argument("--top", type=int_range(1, MAX_TOP), metavar="N",
                        help=f"the N candidates of --data that save the most tokens, 1..{MAX_TOP}; with "
                             "--from-tokenizer or --frequency-list: keep their N best")
    source.add_argument("--phrases", type=int_range(1, 3), default=1, metavar="K",
                        help="with --top: also count phrases of up to K words, 1..3 (default: %(default)s)")
    source.add_argument("--keep-numbers", action="store_true",
                        help="keep candidates with digits when the tokenizer reads numbers digit by digit (left "
                             "out by default: they cost more quality than they save, docs/method.md)")
    source.add_argument("--from-tokenizer", metavar="T",
                        help="candidates from another tokenizer (local folder or hub id): its tokens this model splits")
    source.add_argument("--frequency-list", metavar="FILE",
                        help="candidates from a frequency list: word<TAB>count lines or JSONL {word, count}")
    held = p.add_argument_group("held-out report")
    held.add_argument("--heldout-data", metavar="SRC",
                      help="held-out text for the report (same forms as --data); default: a held-out fraction of --data")
    held.add_argument("--heldout-fraction", type=_fraction, default=0.1, metavar="F",
                      help="without --heldout-data: this fraction of --data's documents (chosen by their text) is "
                           "held out of mining and discovery for the report (default: %(default)s)")
    held.add_argument("--heldout-documents", type=int_range(1, MAX_HELDOUT_DOCUMENTS), default=200, metavar="N",
                      help="at most this many held-out documents are scored (default: %(default)s)")
    p.add_argument("--methods", default="subword_mean,tokdist",
                   help="comma-separated methods, each exported and reported (default: %(default)s)")
    p.add_argument("--keep-harmful", action="store_true",
                   help="keep words that make a validation slice of the training documents worse (left out by "
                        "default and listed, with what each costs, in adapt.json's harm_check)")
    p.add_argument("--no-prior-correction", action="store_true",
                   help="keep trained rows of a tied model as trained; by default each row's rise along the "
                        "mean final hidden state's direction is taken away, so a new token's prior on ordinary "
                        "text is at most its subword mean's (docs/method.md)")
    p.add_argument("--memory-budget-gb", type=_positive_float, default=8.0, metavar="GB",
                   help="teacher-cache memory per chunk of words; peak memory does not grow with the number of "
                        "words (default: %(default)s)")
    p.add_argument("--out", required=True, metavar="FOLDER",
                   help="new output folder: models/<method>/ (save_pretrained), adapt.json, report.json/.txt/.html")
    p.add_argument("--resume", action="store_true",
                   help="continue a run in --out: words its checkpoints hold are not trained again (an interrupted "
                        "run, or more words: --top 250, then --top 500)")
    p.add_argument("--no-export", action="store_true", help="skip the save_pretrained models (rows and report only)")
    add_formats(p)
    p.set_defaults(run=run)


def check(args: argparse.Namespace) -> None:
    """Every check that needs no model (before any import of torch)."""
    check_data(args.data)
    if args.heldout_data is not None:
        check_data(args.heldout_data)
    args.method_list = parse_methods(args.methods)
    check_out_folder(args.out)
    chosen = [name for name, value in (("--from-tokenizer", args.from_tokenizer),
                                       ("--frequency-list", args.frequency_list),
                                       ("--words/--words-file", args.words or args.words_file)) if value]
    if len(chosen) > 1 or (not chosen and args.top is None):
        raise UsageError("give one source of words: --top N (discovered in --data), --from-tokenizer, "
                             f"--frequency-list or --words/--words-file (got {', '.join(chosen) or 'none'})")
    if args.top is not None and chosen == ["--words/--words-file"]:
        raise UsageError("--top picks words from --data, --from-tokenizer or --frequency-list; "
                             "with --words/--words-file every word given is added")
    if args.phrases > 1 and chosen:
        raise UsageError("--phrases counts phrases in --data: use it with --top alone")
    if args.keep_numbers and chosen == ["--words/--words-file"]:
        raise UsageError("--keep-numbers applies to discovered candidates; every word of --words/--words-file is added")
    if args.frequency_list is not None and not Path(args.frequency_list).is_file():
        raise UsageError(f"--frequency-list {args.frequency_list}: no such file")
    from ..pipelines import adapt as pipeline  # imports no torch

    try:
        pipeline.check_out_folder(args.out, args.resume)  # a new folder, or one to --resume
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    args.word_list = words_of(args) if (args.words or args.words_file) else None
    args.descriptions = descriptions_of(args.describe or [])
    check_export_flags(args)
    _check_candidate_sources(args)


def _check_candidate_sources(args: argparse.Namespace) -> None:
    """A binary or empty corpus, a junk frequency list, an unloadable tokenizer: refused before the model loads."""
    from ..discovery import corpus_sources, load_tokenizer, read_frequency_list

    text = [item for item in args.data.split(",") if item.strip() not in ("generated", "auto")]
    if "auto" in [item.strip() for item in args.data.split(",")]:
        text.append("bundled")
    try:
        if text:
            corpus_sources(data_arg(",".join(text)))
        if args.frequency_list is not None:
            args.frequency_list = read_frequency_list(args.frequency_list)
        if args.from_tokenizer is not None:
            args.from_tokenizer = load_tokenizer(args.from_tokenizer)
    except ValueError as exc:  # DiscoveryError, CorpusError
        raise UsageError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    check(args)
    config = training_config(args)
    from ..api import TokenDistillation
    from ..pipelines.adapt import AdaptSettings, adapt
    from ..pipelines.scale import init_distributed

    shard = init_distributed(args.device)
    td = TokenDistillation(args.model, device=_rank_device(args.device, shard))
    config.validate(td.lm)
    if "gguf" in args.formats and not args.no_export:
        from ..export.gguf_file import base_gguf

        base_gguf(td.lm)  # a model with no supported GGUF base is refused before any work
    data = data_arg(args.data)
    settings = AdaptSettings(data=data, methods=tuple(args.method_list), snippets_per_token=args.snippets_per_token,
                             snippet_len=args.snippet_len, mid_sentence=not args.no_space,
                             output_policy=args.output_policy, memory_budget_gb=args.memory_budget_gb,
                             heldout_fraction=None if args.heldout_data else args.heldout_fraction,
                             export=not args.no_export, keep_harmful=args.keep_harmful, formats=args.formats,
                             descriptions=args.descriptions, reuse_slots=args.reuse_slots,
                             prior_correction=not args.no_prior_correction)
    words, candidates = _broadcast(_choose_words(args, td, settings) if shard.is_main else None, shard)
    if not args.no_export:
        check_slots(td, args, len(words) + len(args.descriptions))  # at most this many are added
    heldout = _heldout_documents(args, settings) if shard.is_main else None
    result = adapt(td, words, settings, config, args.out, heldout_documents=heldout, resume=args.resume,
                   shard=shard, candidates=candidates, command=command_line(args))
    if shard.is_main:
        for s in result.skipped:
            print(f"skipped {s['word']!r}: {s['reason']}", file=sys.stderr)
        _print_harm_check(result.harm_check)
        if result.report is not None:
            print(result.report.summary())
        print(json.dumps({"out": str(result.out), "words": len(result.words),
                          "trained": result.trained, "added": {m: len(r.words) for m, r in result.rows.items()},
                          "seconds": {k: round(v, 2) for k, v in result.seconds.items()},
                          "peak_rss_mb": round(result.peak_rss_mb, 1)}, ensure_ascii=False))
    return 0


def _print_harm_check(check: dict | None) -> None:
    if not check or not check["harmful"]:
        return
    costs = {c["word"]: c for c in check["costs"]}
    what = "kept (--keep-harmful)" if check["kept"] else "left out (--keep-harmful keeps them)"
    print(f"{len(check['harmful'])} words make the training text worse with {check['method']}'s rows (judged on "
          f"{check['documents']} validation documents, weighed over the {check['scanned_bytes']:,} bytes they were "
          f"picked from); {what}:", file=sys.stderr)
    for word in check["harmful"][:20]:
        c = costs[word]
        print(f"  {word!r}: {c['bits_total']:+.1f} bits in all: {c['bits_change']:+.1f} over {c['occurrences']} "
              f"occurrences and the text after them ({c['bits_original']:.1f} with its pieces; "
              f"{c['occurrences_scanned']} occurrences in all), +{c['bits_elsewhere']:.1f} taken elsewhere",
              file=sys.stderr)
    if len(check["harmful"]) > 20:
        print(f"  ... {len(check['harmful']) - 20} more in adapt.json", file=sys.stderr)


def _rank_device(device: str, shard: Any) -> str:
    import torch

    if device in ("auto", "cuda") and torch.cuda.is_available() and shard.world > 1:
        return f"cuda:{torch.cuda.current_device()}"
    return device


def _choose_words(args: argparse.Namespace, td: Any, settings: Any) -> tuple[list[str], dict | None]:
    """The words to add and, for candidates, their table (kept in adapt.json)."""
    if args.word_list is not None:
        return args.word_list, None
    top = args.top or MAX_TOP
    if args.frequency_list is not None:
        found = td.discover(frequency_list=args.frequency_list, top=top, keep_numbers=args.keep_numbers)
    else:
        data = settings.text_data() or None
        if args.from_tokenizer is None and data is None:
            raise ValueError("--top discovers words in --data; --data generated holds no text to count")
        found = td.discover(data=data, top=top, max_words=args.phrases, from_tokenizer=args.from_tokenizer,
                            document_split=settings.document_split(), keep_numbers=args.keep_numbers)
    from ..discovery.candidates import DIGITS_REASON

    if found.filtered.get(DIGITS_REASON):
        print(f"left out {found.filtered[DIGITS_REASON]:,} candidates with digits: {DIGITS_REASON}", file=sys.stderr)
    for r in found.rejected[:20]:
        print(f"rejected line {r.line}: {r.entry!r}: {r.reason}", file=sys.stderr)
    if not found.candidates:
        raise ValueError(f"no candidates: nothing in {found.source} saves tokens under the filters "
                         f"({', '.join(f'{n} {why}' for why, n in found.filtered.items()) or 'no words'})")
    return [c.token for c in found.candidates], found.to_json()


def _heldout_documents(args: argparse.Namespace, settings: Any) -> list[str]:
    """--heldout-data's documents, or the held-out part of --data; an empty set is an error before training."""
    from ..contexts.documents import iter_documents, iter_split_documents

    if args.heldout_data is not None:
        docs = iter_documents(data_arg(args.heldout_data), max_documents=args.heldout_documents)
        where = f"--heldout-data {args.heldout_data}"
    else:
        if not settings.text_data():
            raise ValueError("--data holds no text to hold out (only generated snippets); give --heldout-data")
        docs = iter_split_documents(settings.text_data(), settings.document_split(), "heldout",
                                    max_documents=args.heldout_documents)
        where = f"the held-out {args.heldout_fraction:g} of --data {args.data}"
    texts = [text for _, text in docs if text.strip()]
    if not texts:
        raise ValueError(f"no held-out documents in {where}; give --heldout-data or a larger --heldout-fraction")
    return texts


def _broadcast(value: Any, shard: Any) -> Any:
    """Rank 0's value on every rank (the word list is chosen once)."""
    if shard.world == 1:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
