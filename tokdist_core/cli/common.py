"""What every `tokdist` command shares: the usage error, argument types, checks of words, paths and data,
the common flags and the training flags read from DistillationConfig's fields.

Nothing here imports torch: every check runs before the model loads, so a mistake is reported at once.
The limits and choices come from the library itself (foundations.limits, the method registry,
training.config), never from copies.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from ..foundations.limits import (
    DEFAULT_MODEL,
    MAX_SNIPPET_LEN,
    MAX_SNIPPETS_PER_TOKEN,
    MIN_SNIPPET_LEN,
    parse_export_formats,
)
from ..foundations.slots import REUSE_SLOTS
from ..methods import METHOD_NAMES
from ..training.config import OUTPUT_POLICIES, DistillationConfig, config_fields

# DistillationConfig field -> its flags.
CONFIG_FLAGS = {"epochs": ("--epochs",), "batch_size": ("--batch-size",), "tokens_after": ("--tokens-after",),
                "learning_rate": ("--lr", "--learning-rate"),
                "target_layer": ("--target-layer",), "losses": ("--losses",), "ntp_weight": ("--ntp-weight",),
                "init": ("--init",), "schedule": ("--schedule",), "warmup": ("--warmup",),
                "optimizer": ("--optimizer",), "seed": ("--seed",),
                "mixed_precision": ("--mixed-precision",)}
# Tens of thousands of words of at most 64 characters fit; anything bigger is not a words file.
MAX_WORDS_FILE_BYTES = 1 << 20


class UsageError(Exception):
    """A command-line mistake found before any work; main() prints it as `error: ...` and exits 2."""


def int_range(low: int, high: int, what: str = ""):
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


def read_words_file(name: str) -> list[str]:
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


def words_of(args: argparse.Namespace) -> list[str]:
    """The words of --words and --words-file; sets args.descriptions from --describe (checked here)."""
    entries = list(args.words or [])
    if args.words_file is not None:
        entries += read_words_file(args.words_file)
    words = _split_entries(entries)
    args.descriptions = descriptions_of(getattr(args, "describe", None) or [])
    if not words and not args.descriptions:
        raise UsageError("give at least one word with --words or --words-file, or a special token with --describe "
                         "(blank entries and commas do not count)")
    return words


def descriptions_of(values: list[str]) -> dict[str, str]:
    """--describe TOKEN=TEXT values and JSON files of {token: text}, checked before the model loads."""
    from ..foundations.vocab import WordError, parse_descriptions

    pairs: list[tuple[str, str] | str] = []
    for value in values:
        if "=" in value or not value.lower().endswith(".json"):
            pairs.append(value)
            continue
        path = Path(value)
        try:
            data = json.loads(path.read_bytes()[:MAX_WORDS_FILE_BYTES + 1].decode("utf-8-sig"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UsageError(f"--describe {value}: not a readable UTF-8 JSON file ({getattr(exc, 'strerror', None) or exc})") from None
        if not isinstance(data, dict):
            raise UsageError(f"--describe {value}: the file must hold one JSON object {{\"<|token|>\": \"its description\"}}")
        pairs += list(data.items())
    try:
        return parse_descriptions(pairs)
    except WordError as exc:
        raise UsageError(f"--describe: {exc}") from None


# -- output paths -----------------------------------------------------------------------------------

def _check_writable_folder(folder: Path, flag: str, target: Path) -> None:
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {target}: no permission to write in folder {folder}")
    try:  # permission bits are not the whole story (read-only mounts, /proc): make and remove a folder there
        os.rmdir(tempfile.mkdtemp(prefix=".tokdist-probe-", dir=folder))
    except OSError as exc:
        raise UsageError(f"{flag} {target}: cannot write in folder {folder} ({exc.strerror})") from None


def check_out_folder(name: str) -> None:
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


def check_json_file(name: str, flag: str = "--json") -> None:
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


def parse_methods(text: str) -> list[str]:
    methods = list(dict.fromkeys(m.strip() for m in text.split(",") if m.strip()))
    if not methods:
        raise UsageError(f"--methods needs at least one method: {','.join(METHOD_NAMES)}")
    unknown = [m for m in methods if m not in METHOD_NAMES]
    if unknown:
        raise UsageError(f"--methods: unknown method {', '.join(map(repr, unknown))}; choose from {','.join(METHOD_NAMES)}")
    return methods


def check_data(value: str) -> None:
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


# -- training helpers -------------------------------------------------------------------------------

def training_config(args: argparse.Namespace) -> DistillationConfig:
    """The DistillationConfig the flags describe, checked against its fields' bounds (no model needed yet)."""
    config = DistillationConfig(**{name: getattr(args, name) for name in CONFIG_FLAGS})
    config.validate()
    return config


def data_arg(value: str) -> str | list[str]:
    return value.split(",") if "," in value else value


def absolute_paths(data: str | list[str]) -> str | list[str]:
    """Local files and folders as absolute paths, so reproduce.py works from any folder."""
    items = [data] if isinstance(data, str) else data
    absolute = [str(Path(item).resolve()) if Path(item).exists() else item for item in items]
    return absolute[0] if isinstance(data, str) else absolute


class StepBar:
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


def formats_arg(text: str) -> tuple[str, ...]:
    """--formats: a comma list of EXPORT_FORMATS (checked here: no torch)."""
    try:
        return parse_export_formats(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_formats(p: argparse.ArgumentParser) -> None:
    p.add_argument("--formats", type=formats_arg, default=("hf",), metavar="LIST",
                   help="what each exported folder holds, comma-separated: hf (save_pretrained model + tokenizer), "
                        "rows (the new rows alone, always written), peft (peft/: a TrainableTokens adapter of the "
                        "new rows only), gguf (model.gguf for llama.cpp: the bundled models' GGUF with the new "
                        "tokens) (default: hf)")
    p.add_argument("--reuse-slots", choices=REUSE_SLOTS, default="none",
                   help="put the new tokens on ids the vocabulary already has, so no tensor grows: reserved "
                        "(reserved special tokens such as <|reserved_special_token_N|>) or untrained (padding rows, "
                        "byte tokens that never occur in UTF-8, unreachable entries); hf and peft formats "
                        "(default: %(default)s)")


def check_export_flags(args: argparse.Namespace) -> None:
    if args.reuse_slots != "none" and "gguf" in args.formats:
        raise UsageError("--reuse-slots puts new tokens on existing ids; the gguf format appends them: use "
                         "--formats hf or peft with --reuse-slots")


def check_slots(td: Any, args: argparse.Namespace, n_words: int) -> None:
    """Enough free slots of --reuse-slots for `n_words` new tokens: refused after the model loads, before any work."""
    from ..foundations.slots import take_slots

    if args.reuse_slots != "none":
        take_slots(td.lm.tokenizer, td.lm.model.get_input_embeddings().weight.shape[0], args.reuse_slots, n_words)


def command_line(args: argparse.Namespace) -> str:
    """The command as typed (for a model card's "Reproduce" section)."""
    import shlex

    return shlex.join(["tokdist", *getattr(args, "argv", [])])


class FractionBar:
    """A 100 % tqdm bar fed by progress(fraction, message) callbacks: a slow collection shows it moves."""

    def __init__(self, desc: str) -> None:
        self.desc = desc
        self.bar: Any = None

    def __call__(self, fraction: float, message: str = "") -> None:
        from tqdm.auto import tqdm

        if self.bar is None:
            self.bar = tqdm(total=100, desc=self.desc, unit="%", file=sys.stderr)
        self.bar.n = round(100 * min(max(fraction, 0.0), 1.0), 1)
        self.bar.set_postfix_str(message[:40], refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class StageLines:
    """Prints a progress(fraction, message) callback's stage once per stage, on stderr (beside StepBar's bars)."""

    def __init__(self) -> None:
        self.last: str | None = None

    def __call__(self, fraction: float, message: str = "") -> None:
        if message and message != self.last:
            print(f"{message}…", file=sys.stderr, flush=True)
            self.last = message


def add_common(p: argparse.ArgumentParser, training: bool = True, heldout: bool = False) -> None:
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="bundled model name, local folder or Hugging Face hub id (default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available, else CPU), cpu or cuda (default: %(default)s)")
    p.add_argument("--words", nargs="*", metavar="WORD",
                   help="words to add, separated by spaces or commas, e.g. --words Krankenwagen Schadenfreude")
    p.add_argument("--words-file", metavar="FILE",
                   help="UTF-8 text file with one word per line (commas also separate words); "
                        "combined with --words")
    p.add_argument("--describe", action="append", metavar="TOKEN=TEXT",
                   help="add TOKEN as a special token that stands for TEXT (e.g. '<|capital|>=the capital city of "
                        "France'): the original model reads TEXT where the new token stands; repeatable, or a "
                        ".json file of {token: text}")
    p.add_argument("--no-space", action="store_true",
                   help="add the word-initial form (no leading space, as at the start of a text) "
                        "instead of the usual mid-sentence form ' word'")
    if not training:
        return
    p.add_argument("--data", default="auto",
                   help="where training snippets come from: auto (bundled corpus topped up with generated text), "
                        "bundled, generated, text file or folder paths, hf:<dataset>[:config][:split]; "
                        "comma-separate to mix (default: %(default)s)")
    p.add_argument("--snippets-per-token", type=int_range(1, MAX_SNIPPETS_PER_TOKEN), default=25, metavar="N",
                   help=f"training snippets per word, 1..{MAX_SNIPPETS_PER_TOKEN} (default: %(default)s)")
    if heldout:
        p.add_argument("--heldout-per-token", type=int_range(1, MAX_SNIPPETS_PER_TOKEN, " (compare evaluates "
                                                              "every method on held-out snippets)"),
                       default=10, metavar="N",
                       help=f"held-out evaluation snippets per word, disjoint from training, "
                            f"1..{MAX_SNIPPETS_PER_TOKEN} (default: %(default)s)")
    p.add_argument("--snippet-len", type=int_range(MIN_SNIPPET_LEN, MAX_SNIPPET_LEN), default=50, metavar="TOKENS",
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


