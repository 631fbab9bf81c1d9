"""The `tokdist` command: one module per command group, each adding its sub-commands to the parser.

    common     the usage error, shared flags and every check that needs no model
    train      split, distill, compare (a list of words)
    adapt      adapt (a corpus in, an adapted model and a held-out report out)
    discover   discover (which words to add)
    bench      bench (the benchmark scripts of a source checkout)

Imports are lazy: `tokdist --help` and every argument check run before torch/transformers are imported,
so mistakes in the command line are reported at once, never after loading the model or training.
"""

from __future__ import annotations

import argparse
import sys

from . import adapt, bench, discover, train
from .common import UsageError

COMMAND_GROUPS = (train, adapt, discover, bench)  # in the order `tokdist --help` lists them


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tokdist", description="Add new tokens and learn their embeddings.")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the command line, for model cards
    if args.command == "bench":
        return args.run(args)  # a benchmark script reports its own errors
    try:
        return args.run(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:  # the library's errors for bad input (WordError, ModelLoadError, ...)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


__all__ = ["UsageError", "build_parser", "main"]
