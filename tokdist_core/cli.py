"""The `tokdist` command: split, distill, compare, adapt (cli_adapt.py), bench.

Imports are lazy: `tokdist --help` and every argument check run before torch/transformers are imported,
so mistakes in the command line are reported at once, never after loading the model or training.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

# Copies of library constants, so that parsing and checking the command line imports no torch.
# tests/test_cli_inputs.py checks that they match the library.
METHODS = ("random", "vocab_mean", "subword_mean", "subword_weighted", "ntp", "tokdist", "tokdist_antp")
OUTPUT_POLICIES = ("ntp", "zero", "subword_mean")
DEFAULT_MODEL = "smollm2-135m"
# DistillationConfig field -> its flags.
CONFIG_FLAGS = {"epochs": ("--epochs",), "batch_size": ("--batch-size",), "learning_rate": ("--lr", "--learning-rate"),
                "target_layer": ("--target-layer",), "losses": ("--losses",), "ntp_weight": ("--ntp-weight",),
                "init": ("--init",), "schedule": ("--schedule",), "warmup": ("--warmup",), "seed": ("--seed",),
                "mixed_precision": ("--mixed-precision",)}
MAX_SNIPPETS_PER_TOKEN = 1000
MAX_SNIPPET_LEN = 1024
# A new token has at least 2 subwords and needs context around it, so shorter snippets never work.
MIN_SNIPPET_LEN = 4
# Tens of thousands of words of at most 64 characters fit; anything bigger is not a words file.
MAX_WORDS_FILE_BYTES = 1 << 20
MAX_TOP = 100_000  # discovery.MAX_TOP: candidates one `tokdist discover` lists
MAX_PHRASE_WORDS = 3  # vocab.MAX_PHRASE_WORDS
MAX_WORD_CHARS = 64  # vocab.MAX_WORD_CHARS


class UsageError(Exception):
    """A command-line mistake found before any work; main() prints it as `error: ...` and exits 2."""


def _int_range(low: int, high: int, what: str = ""):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {value}{what}")
        return value

    return parse


# -- words ------------------------------------------------------------------------------------------

def _split_entries(entries: list[str]) -> list[str]:
    """Entries split on commas, blanks dropped (the library's own comma/newline convention)."""
    return [part for entry in entries for part in entry.split(",") if part.strip()]


def _read_words_file(name: str) -> list[str]:
    if not name.strip():
        raise UsageError("--words-file needs a file name")
    path = Path(name)
    if path.is_dir():
        raise UsageError(f"--words-file {path} is a folder; give a text file with one word per line")
    if not path.exists():
        raise UsageError(f"--words-file {path} does not exist")
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_WORDS_FILE_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"--words-file {path} cannot be read: {exc.strerror or exc}") from None
    if len(data) > MAX_WORDS_FILE_BYTES:
        raise UsageError(f"--words-file {path} is over {MAX_WORDS_FILE_BYTES >> 20} MiB; "
                         "give a UTF-8 text file with one word per line")
    save_hint = "save it as UTF-8 text with one word per line"
    if data.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        raise UsageError(f"--words-file {path} is UTF-32 text; {save_hint}")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or _looks_like_utf16(data):
        raise UsageError(f"--words-file {path} is UTF-16 text; {save_hint}")
    if b"\x00" in data:
        raise UsageError(f"--words-file {path} is a binary file (it contains NUL bytes); {save_hint}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"--words-file {path} is not UTF-8 text (invalid byte at offset {exc.start}); "
                         f"{save_hint}") from None
    return text.splitlines()


def _looks_like_utf16(data: bytes) -> bool:
    """UTF-16 without a BOM: mostly-ASCII text has a NUL in every other byte."""
    if len(data) < 2 or len(data) % 2:
        return False
    for start in (0, 1):
        half = data[start::2]
        if half.count(0) >= 0.9 * len(half) and data[1 - start :: 2].count(0) == 0:
            return True
    return False


def _words(args: argparse.Namespace) -> list[str]:
    entries = list(args.words or [])
    if args.words_file is not None:
        entries += _read_words_file(args.words_file)
    words = _split_entries(entries)
    if not words:
        raise UsageError("give at least one word with --words or --words-file (blank entries and commas do not count)")
    return words


# -- output paths -----------------------------------------------------------------------------------

def _check_writable_folder(folder: Path, flag: str, target: Path) -> None:
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {target}: no permission to write in folder {folder}")


def _check_out_folder(name: str) -> None:
    """--out is a folder, created with its missing parents when the model is saved."""
    if not name.strip():
        raise UsageError("--out needs a folder name")
    out = Path(name)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is an existing file; give a folder (it is created if missing)")
    existing = out
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"--out {out} cannot be created: {existing} is a file, not a folder")
    _check_writable_folder(existing, "--out", out)


def _check_json_file(name: str, flag: str = "--json") -> None:
    """--json (or another output flag) is a file in an existing folder."""
    if not name.strip():
        raise UsageError(f"{flag} needs a file name")
    path = Path(name)
    if path.is_dir():
        example = path / ("report.json" if flag == "--json" else "words.txt")
        raise UsageError(f"{flag} {path} is a folder; give a file name such as {example}")
    parent = path.parent
    if not parent.exists():
        raise UsageError(f"{flag} {path}: folder {parent} does not exist; create it first")
    if not parent.is_dir():
        raise UsageError(f"{flag} {path}: {parent} is a file, not a folder")
    _check_writable_folder(parent, flag, path)
    if path.exists() and not os.access(path, os.W_OK):
        raise UsageError(f"{flag} {path} exists and is not writable")


def _methods(text: str) -> list[str]:
    methods = list(dict.fromkeys(m.strip() for m in text.split(",") if m.strip()))
    if not methods:
        raise UsageError(f"--methods needs at least one method: {','.join(METHODS)}")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise UsageError(f"--methods: unknown method {', '.join(map(repr, unknown))}; choose from {','.join(METHODS)}")
    return methods


def _check_data(value: str) -> None:
    """Files and folders named in --data exist (the corpus reader checks the rest once the model is loaded)."""
    for item in value.split(","):
        item = item.strip()
        if not item:
            raise UsageError(f"--data {value!r} has an empty entry; give auto, bundled, generated, "
                             "file or folder paths, or hf:<dataset>")
        if item in ("auto", "bundled", "generated") or item.startswith("hf:"):
            continue
        if not Path(item).expanduser().exists():
            raise UsageError(f"--data {item} is not auto, bundled, generated or hf:<dataset>, "
                             "and no such file or folder exists")


def _check_inputs(args: argparse.Namespace) -> list[str]:
    """Every check that needs no model: the words, data paths, output paths and method names.

    Returns the words.
    """
    if args.command == "adapt":
        from . import cli_adapt

        cli_adapt.check(args)
        return args.word_list or []
    if args.command in ("distill", "compare"):
        _check_data(args.data)
    if args.command == "distill":
        _check_out_folder(args.out)
    if args.command == "compare":
        args.method_list = _methods(args.methods)
        if args.json is not None:
            _check_json_file(args.json)
    return _words(args)


# -- training helpers -------------------------------------------------------------------------------

def _config(args: argparse.Namespace):
    from .training import DistillationConfig

    return DistillationConfig(**{name: getattr(args, name) for name in CONFIG_FLAGS})


def _data(value: str) -> str | list[str]:
    return value.split(",") if "," in value else value


def _absolute_paths(data: str | list[str]) -> str | list[str]:
    """Local files and folders as absolute paths, so reproduce.py works from any folder."""
    items = [data] if isinstance(data, str) else data
    absolute = [str(Path(item).resolve()) if Path(item).exists() else item for item in items]
    return absolute[0] if isinstance(data, str) else absolute


class _Bar:
    """A tqdm bar per method fed by the trainer's step callback."""

    def __init__(self) -> None:
        self.bar: Any = None
        self.method: str | None = None

    def __call__(self, record: Any) -> None:
        from tqdm.auto import tqdm

        if record.method != self.method:
            if self.bar is not None:
                self.bar.close()
            self.bar = tqdm(total=record.total_steps, desc=record.method, unit="step", file=sys.stderr)
            self.method = record.method
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{record.loss:.4f}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# -- parser -----------------------------------------------------------------------------------------

def _add_common(p: argparse.ArgumentParser, training: bool = True, heldout: bool = False) -> None:
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="bundled model name, local folder or Hugging Face hub id (default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available, else CPU), cpu or cuda (default: %(default)s)")
    p.add_argument("--words", nargs="*", metavar="WORD",
                   help="words to add, separated by spaces or commas, e.g. --words Krankenwagen Schadenfreude")
    p.add_argument("--words-file", metavar="FILE",
                   help="UTF-8 text file with one word per line (commas also separate words); "
                        "combined with --words")
    p.add_argument("--no-space", action="store_true",
                   help="add the word-initial form (no leading space, as at the start of a text) "
                        "instead of the usual mid-sentence form ' word'")
    if not training:
        return
    p.add_argument("--data", default="auto",
                   help="where training snippets come from: auto (bundled corpus topped up with generated text), "
                        "bundled, generated, text file or folder paths, hf:<dataset>[:config][:split]; "
                        "comma-separate to mix (default: %(default)s)")
    p.add_argument("--snippets-per-token", type=_int_range(1, MAX_SNIPPETS_PER_TOKEN), default=25, metavar="N",
                   help=f"training snippets per word, 1..{MAX_SNIPPETS_PER_TOKEN} (default: %(default)s)")
    if heldout:
        p.add_argument("--heldout-per-token", type=_int_range(1, MAX_SNIPPETS_PER_TOKEN, " (compare evaluates "
                                                              "every method on held-out snippets)"),
                       default=10, metavar="N",
                       help=f"held-out evaluation snippets per word, disjoint from training, "
                            f"1..{MAX_SNIPPETS_PER_TOKEN} (default: %(default)s)")
    p.add_argument("--snippet-len", type=_int_range(MIN_SNIPPET_LEN, MAX_SNIPPET_LEN), default=50, metavar="TOKENS",
                   help=f"tokens per snippet, the word plus its context, {MIN_SNIPPET_LEN}..{MAX_SNIPPET_LEN}; "
                        "at least the word's subword count + 2 (default: %(default)s)")
    _add_config_flags(p)
    p.add_argument("--output-policy", default="ntp", choices=OUTPUT_POLICIES,
                   help="new LM-head rows for models with untied embeddings: ntp (fit so the model predicts the word "
                        "where it occurs in the snippets), zero, or subword_mean; tied models share the "
                        "input rows (default: %(default)s)")


def _config_type(spec: Any):
    """argparse type for one DistillationConfig field: converts, then applies the field's own bounds."""

    def parse(text: str) -> Any:
        try:
            # A tuple field is a comma-separated list: --losses hidden_mse,logit_kl
            value = tuple(v.strip() for v in text.split(",") if v.strip()) if spec.multiple else spec.type(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if spec.type is int else 'a number'}, "
                                             f"got {text!r}") from None
        try:
            spec.check(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return value

    return parse


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    """One flag per DistillationConfig field: default, bounds, choices and help come from the field."""
    from .training.config import config_fields  # imports no torch

    for spec in config_fields():
        flag = CONFIG_FLAGS.get(spec.name)
        if flag is None:
            continue
        bounds = ""
        if spec.min is not None and spec.max is not None:
            bounds = f", in ({spec.min:g}, {spec.max:g}]" if spec.min_exclusive else f", {spec.min:g}..{spec.max:g}"
        if spec.multiple:
            bounds, default = "; comma-separated", ",".join(spec.default)
        else:
            default = "%(default)s"
        kwargs: dict[str, Any] = {"dest": spec.name, "default": spec.default,
                                  "help": f"{spec.help}{bounds} (default: {default})"}
        if spec.multiple:
            kwargs["type"] = _config_type(spec)
            kwargs["metavar"] = ",".join(spec.choices[:2]) + ",..."
        elif spec.choices is not None:
            kwargs["choices"] = spec.choices
        else:
            kwargs["type"] = _config_type(spec)
            kwargs["metavar"] = "N" if spec.type is int else "X"
        p.add_argument(*flag, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tokdist", description="Add new tokens and learn their embeddings.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("split", help="show how the model splits words", description="Show how the model splits words.")
    _add_common(p, training=False)
    p = sub.add_parser("distill", help="learn rows for words and export the model",
                       description="Learn embedding rows for the words and save the model with them added.")
    _add_common(p)
    p.add_argument("--method", default="tokdist", choices=METHODS,
                   help="how the new rows are initialized or trained (default: %(default)s)")
    p.add_argument("--out", required=True, metavar="FOLDER",
                   help="output folder for model + tokenizer + new rows + reproduce.py; created if missing, "
                        "files of an earlier export in it are overwritten")
    p = sub.add_parser("compare", help="compare methods on held-out snippets",
                       description="Train every method on the same snippets and compare them on held-out snippets.")
    _add_common(p, heldout=True)
    p.add_argument("--methods", default=",".join(METHODS),
                   help="comma-separated methods to compare (default: all: %(default)s)")
    p.add_argument("--json", metavar="FILE", help="also write the full report to this JSON file (its folder must exist)")
    from . import cli_adapt, cli_discover

    cli_adapt.add_parser(sub)
    cli_discover.add_parser(sub)
    p = sub.add_parser("bench", help="run a benchmark script and print its JSON")
    p.add_argument("name", choices=("distill", "mining", "quality", "estimate", "adapt"))
    p.add_argument("extra", nargs=argparse.REMAINDER, help="arguments passed to the benchmark script")
    return parser


# -- commands ---------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "bench":
        return _bench(args)
    try:
        if args.command == "discover":
            from . import cli_discover

            return cli_discover.run(args)
        words = _check_inputs(args)
        return _run(args, words)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:  # the library's errors for bad input (WordError, ModelLoadError, ...)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


def _bench(args: argparse.Namespace) -> int:
    import runpy

    root = Path(__file__).resolve().parent.parent
    if not (root / "benchmarks" / f"bench_{args.name}.py").is_file():
        raise SystemExit("error: benchmarks ship with the repository; run `tokdist bench` from a source checkout")
    sys.path.insert(0, str(root))
    sys.argv = [f"bench_{args.name}", *args.extra]
    runpy.run_module(f"benchmarks.bench_{args.name}", run_name="__main__")
    return 0


def _run(args: argparse.Namespace, words: list[str]) -> int:
    config = None
    if args.command != "split":
        config = _config(args)
        config.validate()  # before loading the model
    if args.command == "adapt":
        from . import cli_adapt

        return cli_adapt.run(args, config)

    from .api import TokenDistillation

    td = TokenDistillation(args.model, device=args.device)
    if config is not None:
        config.validate(td.lm)  # target layer and precision need the model; still before any mining
    splits, skipped = td.prepare_words(words, mid_sentence=not args.no_space)

    if args.command == "split":
        for s in splits:
            print(f"{s.display!r}: {len(s.ids)} subwords {list(s.pieces)} ids {list(s.ids)}")
        for s in skipped:
            print(f"{s.word!r}: {s.reason}")
        return 0
    if args.command == "distill":
        return _distill(args, td, splits, skipped, config)
    return _compare(args, td, words, config)


def _distill(args: argparse.Namespace, td: Any, splits: list, skipped: list, config: Any) -> int:
    from .contexts import snippets_of
    from .export import reproduce_snippet

    for s in skipped:
        print(f"skipped {s.word!r}: {s.reason}", file=sys.stderr)
    if not splits:
        raise ValueError("no word can be added")
    contexts = td.contexts(splits, _data(args.data), args.snippets_per_token, 0, args.snippet_len, args.seed)
    train = snippets_of(contexts, splits)
    missing = [s.word for s in splits if not contexts[s.word].train]
    if missing:
        print(f"no snippets for {missing}; they get the {args.method} rows only if it needs none", file=sys.stderr)
    bar = _Bar()
    try:
        outcome = td.train(splits, train, [args.method], config, args.output_policy, callback=bar)
    finally:
        bar.close()
    script = reproduce_snippet(args.model, [s.word for s in splits], args.method, config.to_dict(),
                               _absolute_paths(_data(args.data)), args.snippet_len, args.snippets_per_token,
                               mid_sentence=not args.no_space, output_policy=args.output_policy)
    out = td.save(outcome.rows[args.method], args.out, reproduce=script)
    print(json.dumps({"out": str(out), "words": [s.word for s in splits], "seconds": outcome.seconds,
                      "skipped": [{"word": s.word, "reason": s.reason} for s in skipped]}, ensure_ascii=False))
    return 0


def _compare(args: argparse.Namespace, td: Any, words: list[str], config: Any) -> int:
    bar = _Bar()
    try:
        comparison = td.compare(words, data=_data(args.data), methods=args.method_list, training=config,
                                snippet_len=args.snippet_len, snippets_per_token=args.snippets_per_token,
                                heldout_per_token=args.heldout_per_token, mid_sentence=not args.no_space,
                                output_policy=args.output_policy, callback=bar)
    finally:
        bar.close()
    report = comparison.to_json()
    text = json.dumps(report, indent=2, ensure_ascii=False)
    if args.json:
        Path(args.json).write_text(text, encoding="utf-8")
    _print_summary(report)
    return 0


def _print_summary(report: dict) -> None:
    print(f"{'method':<18}{'hidden_mse':>12}{'hidden_cos':>12}{'next_tok_kl':>13}{'norm_pct':>10}{'seconds':>9}")
    for method, m in report["summary"].items():
        print(f"{method:<18}{m['hidden_mse']:>12.4f}{m['hidden_cos']:>12.4f}{m['next_token_kl']:>13.4f}"
              f"{m['norm_percentile']:>10.1f}{m['seconds']:>9.1f}")
    for s in report["skipped"]:
        print(f"skipped {s['word']!r}: {s['reason']}")


if __name__ == "__main__":
    # `python -m tokdist_core.cli`: run the package's module, so cli_adapt and this share one UsageError.
    from tokdist_core.cli import main as package_main

    raise SystemExit(package_main())
