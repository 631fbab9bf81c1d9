"""Vocabulary adaptation end to end: words -> contexts -> chunked training -> export -> held-out report.

`adapt()` runs in one process or in every rank of a torch.distributed group (torchrun): each rank mines
and trains its shard of the words, rank 0 gathers the rows, writes a `save_pretrained` model per method and
the domain report. Everything lands under temporary names first and is renamed when complete.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..foundations.files import EXPORT_MARKER

# Only the standard library (and foundations.files, which imports nothing heavy) at import time: the command line
# checks --out with check_out_folder before torch.
if TYPE_CHECKING:
    from ..api import TokenDistillation
    from ..training import DistillationConfig
    from .scale import Shard

HARM_OCCURRENCES = 4  # occurrences of each word the harm check's validation slice looks for
# The slice's default size: enough for every word to be judged (200 words needed 317 kB; a fixed 150 kB
# judged 93 of them and kept the other 107 unjudged, docs/method.md).
VALIDATION_BYTES_PER_WORD = 2_000
MIN_VALIDATION_BYTES = 150_000
CHECKPOINT_DIR = "checkpoints"
ADAPT_FILE = "adapt.json"
MODELS_DIR = "models"
ROWS_DIR = "rows"


@dataclass
class AdaptSettings:
    """What `adapt` is told besides the words; recorded in adapt.json and the checkpoints' fingerprint."""

    data: str | list[str] = "auto"
    methods: tuple[str, ...] = ("subword_mean", "tokdist")
    snippets_per_token: int = 25
    snippet_len: int = 50
    mid_sentence: bool = True
    output_policy: str = "ntp"
    heldout_fraction: float | None = None  # documents of `data` held out of mining (DocumentSplit, by their text)
    memory_budget_gb: float = 8.0
    export: bool = True  # a save_pretrained model per method
    formats: tuple[str, ...] = ("hf",)  # what each models/<method>/ folder holds (export.formats)
    keep_harmful: bool = False  # keep words that make the validation text worse (the harm check)
    validation_bytes: int | None = None  # the harm check's slice (UTF-8 bytes); None: validation_budget(words)
    descriptions: dict[str, str] = field(default_factory=dict)  # special tokens added besides the words -> their text
    reuse_slots: str = "none"  # put the exported words on the base's reserved or untrained slots (foundations.slots)
    prior_correction: bool = True  # trained tied rows' prior on ordinary text at most the subword mean's (training.prior)

    def text_data(self) -> list[str]:
        """`data` without generation ("auto" reads the bundled corpus): the documents a report can hold out."""
        items = [self.data] if isinstance(self.data, str) else list(self.data)
        return ["bundled" if str(i).strip() == "auto" else i for i in items if str(i).strip() != "generated"]

    def document_split(self):
        from ..contexts.documents import DocumentSplit

        return None if self.heldout_fraction is None else DocumentSplit(self.heldout_fraction)


@dataclass
class AdaptResult:
    """What an adaptation run produced (on rank 0; other ranks get `rows == {}`)."""

    out: Path
    words: list[str]
    skipped: list[dict] = field(default_factory=list)
    rows: dict[str, Any] = field(default_factory=dict)  # method -> NewTokenRows
    seconds: dict[str, float] = field(default_factory=dict)  # stage -> wall clock
    peak_rss_mb: float = 0.0
    report: Any = None  # DomainReport when held-out documents were given
    harm_check: dict | None = None  # what each word costs on the validation slice, and the words left out
    trained: dict[str, int] = field(default_factory=dict)  # method -> words trained (`rows` may hold fewer)
    slots: dict[str, dict] = field(default_factory=dict)  # method -> {word: {"id", "was"}} on reused slots


def check_out_folder(out: str | Path, resume: bool) -> Path:
    """An output folder adapt may use: new (created later), or with --resume one holding checkpoints."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"output folder {out} is an existing file; give a folder")
    has_checkpoints = (out / CHECKPOINT_DIR).is_dir()
    if resume and not has_checkpoints:
        raise ValueError(f"--resume: {out} holds no checkpoints of an earlier run ({out / CHECKPOINT_DIR} is missing)")
    if not resume and out.exists() and any(out.iterdir()):
        hint = "; add --resume to continue the run in it" if has_checkpoints else ""
        raise ValueError(f"output folder {out} exists and is not empty; choose a new folder{hint}")
    return out


def _peak_rss_mb() -> float:
    # ru_maxrss is KiB on Linux, bytes on macOS.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


class _Stages:
    """Wall clock per stage, and a tqdm bar with ETA for the long ones (rank 0 only)."""

    def __init__(self, show: bool) -> None:
        self.show = show
        self.seconds: dict[str, float] = {}
        self._bar: Any = None

    def timed(self, name: str):
        stages = self

        class _Timer:
            def __enter__(self):
                self.start = time.perf_counter()

            def __exit__(self, *exc):
                stages.seconds[name] = stages.seconds.get(name, 0.0) + time.perf_counter() - self.start
                stages.close()

        return _Timer()

    def bar(self, desc: str, total: float, unit: str):
        from tqdm.auto import tqdm

        self.close()
        self._bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=not self.show)
        return self._bar

    def fraction(self, desc: str):
        """A progress(fraction, message) callback drawn as a bar of 100 %."""
        bar = self.bar(desc, 100, "%")

        def update(fraction: float, message: str = "") -> None:
            bar.n = round(100 * min(max(fraction, 0.0), 1.0), 1)
            bar.set_postfix_str(message[:40], refresh=False)
            bar.refresh()

        return update

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def adapt(td: TokenDistillation, words: Sequence[str], settings: AdaptSettings, config: DistillationConfig,
          out: str | Path, heldout_documents: Sequence[str] | None = None, resume: bool = False,
          shard: Shard | None = None, show_progress: bool = True, candidates: dict | None = None,
          command: str | None = None) -> AdaptResult:
    """Add `words` to the model with every method in `settings.methods`; see the module docstring. `command`:
    the command line, for the model cards."""
    from ..contexts import snippets_of
    from .scale import GB, CheckpointStore, Shard, gather_rows, train_in_chunks

    out = Path(out)
    shard = shard or Shard()
    stages = _Stages(show_progress and shard.is_main)
    config.validate(td.lm)
    splits, skipped = td.prepare_words(list(words), mid_sentence=settings.mid_sentence,
                                       describe=settings.descriptions)
    if not splits:
        reasons = "; ".join(f"{s.word!r}: {s.reason}" for s in skipped[:5])
        raise ValueError(f"no word can be added{': ' + reasons if reasons else ''}")
    # Not the words: a word's row does not depend on the words beside it, so a resumed run may add words
    # (--top 250, then --top 500) and trains only those it does not have yet.
    fingerprint = {"model": td.lm.name, "config": config.to_dict(),
                   **{k: v for k, v in asdict(settings).items()
                      if k not in ("memory_budget_gb", "export", "formats", "keep_harmful", "validation_bytes",
                                   "reuse_slots", "prior_correction")}}
    store = CheckpointStore(out / CHECKPOINT_DIR, fingerprint, resume=resume) if shard.is_main else None
    if shard.world > 1:
        _barrier()  # rank 0 made the folder and checked the fingerprint
        store = store or CheckpointStore(out / CHECKPOINT_DIR, fingerprint, resume=True)
    mine = shard.take(splits)

    with stages.timed("contexts"):
        contexts = td.contexts(mine, settings.data, settings.snippets_per_token, 0, settings.snippet_len, config.seed,
                               progress=stages.fraction("contexts"), document_split=settings.document_split())
    usable = [s for s in mine if contexts[s.word].train]
    skipped_here = [{"word": s.word, "reason": contexts[s.word].problem or "no training snippets found"}
                    for s in mine if s not in usable]
    train = snippets_of(contexts, usable)
    with stages.timed("training"):
        bar = stages.bar("training", len(usable), "word")

        def progress(done: float, total: int) -> None:
            bar.n = round(done, 1)
            bar.refresh()

        rows = train_in_chunks(td, usable, train, settings.methods, config, settings.output_policy,
                               int(settings.memory_budget_gb * GB), store, shard, progress=progress)
    merged = gather_rows(rows, splits, shard)
    all_skipped = _gather_list(skipped_here, shard)
    result = AdaptResult(out=out, words=[s.word for s in splits],
                         skipped=[{"word": s.word, "reason": s.reason} for s in skipped] + (all_skipped or []))
    if not shard.is_main:
        result.seconds, result.peak_rss_mb = stages.seconds, _peak_rss_mb()
        return result
    result.trained = {m: len(r.words) for m, r in merged.items()}
    if settings.prior_correction:
        with stages.timed("prior correction"):
            merged = _keep_start_prior(td, merged, splits, train, settings)
    with stages.timed("harm check"):
        result.harm_check = _harm_check(td, merged, settings)
    if result.harm_check and not settings.keep_harmful and result.harm_check["harmful"]:
        harmful = set(result.harm_check["harmful"])
        merged = {m: r.select([w for w in r.words if w not in harmful]) for m, r in merged.items()}
    result.rows = merged
    for method, method_rows in merged.items():  # the rows alone, always: small, and load_rows reads them
        td.save_rows(method_rows, out / ROWS_DIR / method)
    if heldout_documents:
        with stages.timed("report"):
            result.report = td.domain_report(list(heldout_documents), list(merged.values()),
                                             progress=stages.fraction("report"))
            result.report.save(out)
    if settings.export:  # after the report, so that each model card holds its figures
        card_settings = {**{k: v for k, v in asdict(settings).items() if k != "export"}, **config.to_dict()}
        report = result.report.to_json() if result.report is not None else None
        with stages.timed("export"):
            for method, method_rows in merged.items():  # whole or absent; a resumed run replaces it
                saved = td.save(method_rows, out / MODELS_DIR / method,
                                card={"settings": card_settings, "report": report, "command": command},
                                formats=settings.formats, reuse_slots=settings.reuse_slots)
                result.slots[method] = json.loads((saved / EXPORT_MARKER).read_text(encoding="utf-8")).get("slots", {})
    result.seconds, result.peak_rss_mb = stages.seconds, _peak_rss_mb()
    _write_summary(result, settings, config, td, candidates)
    return result


def _keep_start_prior(td: TokenDistillation, rows: dict[str, Any], splits: Sequence, train: Sequence,
                      settings: AdaptSettings) -> dict:
    """Each trained tied method's rows with their prior on ordinary text at most the subword mean's
    (training.prior; measured in docs/method.md). The mean state is read from the training documents, or from
    the training snippets when the data is only generated."""
    from ..contexts.documents import iter_documents, iter_split_documents
    from ..methods import get_method
    from ..training.prior import keep_start_prior, mean_final_state, prior_sequences

    chosen = [m for m, r in rows.items() if get_method(m).trains and r.output_rows is None]
    if not chosen or not train:
        return rows
    data, split = settings.text_data(), settings.document_split()
    docs = ((iter_split_documents(data, split, "train") if split is not None else iter_documents(data))
            if data else ())
    sequences = (prior_sequences(td.lm.tokenizer, (text for _, text in docs))
                 or [list(s.token_ids) for s in train[:: max(1, len(train) // 256)]])
    mean_state = mean_final_state(td.lm, sequences)
    # The subword mean rows, where Token Distillation starts: already there when that method was trained too.
    start = rows.get("subword_mean") or td.train(list(splits), [], ["subword_mean"]).rows["subword_mean"]
    return {m: keep_start_prior(r, start, mean_state) if m in chosen else r for m, r in rows.items()}


def _harm_check(td: TokenDistillation, rows: dict[str, Any], settings: AdaptSettings) -> dict | None:
    """What each word costs on a validation slice of the training documents (never the held-out ones) with
    the judging method's rows (tokdist when trained, else the last method); None without text to read.

    A word is harmful when text reads worse with it than with its pieces: the bits of its occurrences and of
    the text after them, plus what its output row takes from the original tokens everywhere else, both weighed
    over all the documents the slice was picked from (WordCost.bits_total); words absent from the slice are
    kept (nothing shows what they would save)."""
    from ..contexts.documents import iter_documents, iter_split_documents
    from ..contexts.mining import documents_with_words
    from ..evaluation.word_costs import word_costs

    data, split = settings.text_data(), settings.document_split()
    if not data or not rows:
        return None
    judge = "tokdist" if "tokdist" in rows else list(rows)[-1]
    words = list(rows[judge].words)
    docs = iter_split_documents(data, split, "train") if split is not None else iter_documents(data)
    budget = settings.validation_bytes or validation_budget(len(words))
    picked = documents_with_words(docs, words, HARM_OCCURRENCES, budget)
    texts = picked.texts
    # The slice holds the words far more densely than the text it was picked from: each word's gain and what
    # its row takes elsewhere are both weighed over all of that text.
    costs = word_costs(td.lm, texts, rows[judge], represents_bytes=picked.scanned_bytes,
                       represents_occurrences=picked.scanned_occurrences) if texts else []
    harmful = [c.word for c in costs if c.harmful]
    if len(harmful) == len(words) and not settings.keep_harmful:
        least = ", ".join(f"{c.word!r} {c.bits_total:+.1f} bits ({c.bits_elsewhere:+.1f} of them elsewhere)"
                          for c in sorted(costs, key=lambda c: c.bits_total)[:3])
        raise ValueError(f"every word makes the validation text worse with {judge}'s rows (the least harmful: "
                         f"{least}); nothing would be added (keep_harmful / --keep-harmful keeps them; --resume "
                         "reuses the trained rows)")
    return {"method": judge, "documents": len(texts), "bytes": sum(len(t.encode("utf-8")) for t in texts),
            "budget_bytes": budget, "scanned_bytes": picked.scanned_bytes,
            "harmful": harmful, "kept": settings.keep_harmful,
            "costs": [{"word": c.word, "occurrences": c.occurrences, "bits_change": round(c.bits_change, 3),
                       "bits_original": round(c.bits_original, 3), "occurrences_scanned": c.occurrences_represented,
                       "bits_elsewhere": round(c.bits_elsewhere, 3), "bits_total": round(c.bits_total, 3)}
                      for c in costs]}


def validation_budget(words: int) -> int:
    """The harm check's default slice size in UTF-8 bytes: grows with the words, so that each gets judged."""
    return max(MIN_VALIDATION_BYTES, VALIDATION_BYTES_PER_WORD * words)


def _write_summary(result: AdaptResult, settings: AdaptSettings, config: DistillationConfig,
                   td: TokenDistillation, candidates: dict | None) -> None:
    from ..foundations.files import atomic_path

    summary = {
        "model": td.lm.describe(), "settings": asdict(settings), "config": config.to_dict(),
        "words": result.words, "trained": result.trained, "added": {m: len(r.words) for m, r in result.rows.items()},
        "skipped": result.skipped, "seconds": result.seconds, "peak_rss_mb": round(result.peak_rss_mb, 1),
        "models": {m: str(Path(MODELS_DIR) / m) for m in result.rows} if settings.export else {},
        "rows": {m: str(Path(ROWS_DIR) / m) for m in result.rows},
        "report": result.report.to_json() if result.report is not None else None,
        "harm_check": result.harm_check,
        "slots": result.slots,
    }
    if candidates is not None:
        summary["candidates"] = candidates
    with atomic_path(result.out / ADAPT_FILE) as tmp:
        tmp.write_text(json.dumps(summary, indent=1, ensure_ascii=False, default=str), encoding="utf-8")


def _barrier() -> None:
    import torch.distributed as dist

    dist.barrier()


def _gather_list(items: list, shard: Shard) -> list | None:
    if shard.world == 1:
        return items
    import torch.distributed as dist

    parts: list | None = [None] * shard.world if shard.is_main else None
    dist.gather_object(items, parts, dst=0)
    return [x for part in parts for x in part] if shard.is_main else None
