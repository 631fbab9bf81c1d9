"""The `tokdist` command: split, distill, compare, bench."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm.auto import tqdm

from .distill import DistillationConfig
from .forward import PRECISIONS
from .methods import METHOD_NAMES


def _words(args: argparse.Namespace) -> list[str]:
    words = list(args.words or [])
    if args.words_file:
        path = Path(args.words_file)
        if not path.is_file():
            raise SystemExit(f"error: --words-file {path} does not exist")
        words += [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not words:
        raise SystemExit("error: give words with --words or --words-file")
    return words


def _config(args: argparse.Namespace) -> DistillationConfig:
    return DistillationConfig(epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr,
                              target_layer=args.target_layer, seed=args.seed, mixed_precision=args.mixed_precision)


def _data(value: str) -> str | list[str]:
    return value.split(",") if "," in value else value


class _Bar:
    """A tqdm bar per method fed by the trainer's step callback."""

    def __init__(self) -> None:
        self.bar = None
        self.method = None

    def __call__(self, record) -> None:
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


def _add_common(p: argparse.ArgumentParser, training: bool = True) -> None:
    p.add_argument("--model", default="smollm2-135m", help="bundled name, local folder or hub id")
    p.add_argument("--device", default="auto")
    p.add_argument("--words", nargs="*", help="words to add")
    p.add_argument("--words-file", help="file with one word per line")
    p.add_argument("--no-space", action="store_true", help="word-initial form (no leading space)")
    if training:
        p.add_argument("--data", default="auto", help="auto | bundled | generated | file paths | hf:<name>")
        p.add_argument("--snippets-per-token", type=int, default=25)
        p.add_argument("--heldout-per-token", type=int, default=10)
        p.add_argument("--snippet-len", type=int, default=50)
        p.add_argument("--epochs", type=int, default=DistillationConfig.epochs)
        p.add_argument("--batch-size", type=int, default=DistillationConfig.batch_size)
        p.add_argument("--lr", type=float, default=DistillationConfig.learning_rate)
        p.add_argument("--target-layer", type=int, default=-1)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--mixed-precision", default="auto", choices=PRECISIONS,
                       help="auto: bf16 on CUDA, fp32 on CPU; bf16: also on CPU (fast with AVX-512 BF16 or AMX); no: fp32")
        p.add_argument("--output-policy", default="ntp", choices=("ntp", "zero", "subword_mean"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tokdist", description="Add new tokens and learn their embeddings.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("split", help="show how the model splits words")
    _add_common(p, training=False)
    p = sub.add_parser("distill", help="learn rows for words and export the model")
    _add_common(p)
    p.add_argument("--method", default="tokdist", choices=METHOD_NAMES)
    p.add_argument("--out", required=True, help="output folder (model + tokenizer + new rows)")
    p = sub.add_parser("compare", help="compare methods on held-out snippets")
    _add_common(p)
    p.add_argument("--methods", default=",".join(METHOD_NAMES), help="comma list of methods")
    p.add_argument("--json", help="write the report here")
    p = sub.add_parser("bench", help="run a benchmark script and print its JSON")
    p.add_argument("name", choices=("distill", "mining", "quality"))
    p.add_argument("extra", nargs=argparse.REMAINDER)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "bench":
        import runpy

        root = Path(__file__).resolve().parent.parent
        if not (root / "benchmarks" / f"bench_{args.name}.py").is_file():
            raise SystemExit("error: benchmarks ship with the repository; run `tokdist bench` from a source checkout")
        sys.path.insert(0, str(root))
        sys.argv = [f"bench_{args.name}", *args.extra]
        runpy.run_module(f"benchmarks.bench_{args.name}", run_name="__main__")
        return 0

    from .api import TokenDistillation
    from .models import ModelLoadError

    words = _words(args)
    try:
        config = _config(args) if args.command != "split" else None
        if config is not None:
            config.validate()
        td = TokenDistillation(args.model, device=args.device)
    except (ModelLoadError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    splits, skipped = td.prepare_words(words, mid_sentence=not args.no_space)

    if args.command == "split":
        for s in splits:
            print(f"{s.display!r}: {len(s.ids)} subwords {list(s.pieces)} ids {list(s.ids)}")
        for s in skipped:
            print(f"{s.word!r}: {s.reason}")
        return 0

    if args.command == "distill":
        from .export import reproduce_snippet, save_model, save_rows

        for s in skipped:
            print(f"skipped {s.word!r}: {s.reason}", file=sys.stderr)
        if not splits:
            raise SystemExit("error: no word can be added")
        contexts = td.contexts(splits, _data(args.data), args.snippets_per_token, 0, args.snippet_len, args.seed)
        train = [sn for s in splits for sn in contexts[s.word].train]
        missing = [s.word for s in splits if not contexts[s.word].train]
        if missing:
            print(f"no snippets for {missing}; they get the {args.method} rows only if it needs none", file=sys.stderr)
        bar = _Bar()
        try:
            rows, _, seconds, cancelled = td.train(splits, train, [args.method], config, args.output_policy, callback=bar)
        except ValueError as exc:
            raise SystemExit(f"error: {exc}") from None
        finally:
            bar.close()
        model, tokenizer = td.with_new_tokens(rows[args.method])
        out = save_model(model, tokenizer, args.out)
        save_rows(rows[args.method], td.lm, out)
        (out / "reproduce.py").write_text(reproduce_snippet(args.model, [s.word for s in splits], args.method,
                                                           config.to_dict(), args.data, args.snippet_len,
                                                           args.snippets_per_token), encoding="utf-8")
        print(json.dumps({"out": str(out), "words": [s.word for s in splits], "seconds": seconds,
                          "skipped": [{"word": s.word, "reason": s.reason} for s in skipped]}, ensure_ascii=False))
        return 0

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bar = _Bar()
    try:
        comparison = td.compare(words, data=_data(args.data), methods=methods, training=config,
                                snippet_len=args.snippet_len, snippets_per_token=args.snippets_per_token,
                                heldout_per_token=args.heldout_per_token, mid_sentence=not args.no_space,
                                output_policy=args.output_policy, callback=bar)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
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
    raise SystemExit(main())
