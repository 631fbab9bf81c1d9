"""`tokdist bench NAME`: run a benchmark script of a source checkout and print its JSON."""

from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path
from typing import Any

BENCHMARKS = ("distill", "mining", "quality", "estimate", "adapt")


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("bench", help="run a benchmark script and print its JSON")
    p.add_argument("name", choices=BENCHMARKS)
    p.add_argument("extra", nargs=argparse.REMAINDER, help="arguments passed to the benchmark script")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    root = Path(__file__).resolve().parents[2]
    if not (root / "benchmarks" / f"bench_{args.name}.py").is_file():
        raise SystemExit("error: benchmarks ship with the repository; run `tokdist bench` from a source checkout")
    sys.path.insert(0, str(root))
    sys.argv = [f"bench_{args.name}", *args.extra]
    runpy.run_module(f"benchmarks.bench_{args.name}", run_name="__main__")
    return 0
