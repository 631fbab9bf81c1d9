"""Training thousands of words: chunks under a memory budget, checkpoints to resume, shards over processes.

Every word's row depends only on its own snippets (see `training.trainer`), so the words can be cut into
chunks whose teacher caches fit a memory budget, trained chunk after chunk (each chunk's cache is freed
before the next is built), checkpointed as they finish, and spread over torch.distributed ranks: the rows
are the same as one run over all words.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..estimate import teacher_cache_bytes
from ..foundations.cancel import Cancelled
from ..foundations.files import atomic_path
from ..foundations.rows import NewTokenRows
from ..foundations.snippet import Snippet
from ..foundations.vocab import WordSplit

if TYPE_CHECKING:
    from ..api import TokenDistillation
    from ..training import DistillationConfig, StepRecord

GB = 1 << 30
MANIFEST = "manifest.json"


class ScaleError(ValueError):
    """A scaled run cannot start as asked (budget, checkpoints); the message says what to change."""


# ---------------------------------------------------------------------------------------------------------
# Chunks under a memory budget
# ---------------------------------------------------------------------------------------------------------


def plan_chunks(lm, splits: Sequence[WordSplit], train: Sequence[Snippet], budget_bytes: int,
                with_final: bool) -> list[list[WordSplit]]:
    """Consecutive groups of words whose teacher cache fits `budget_bytes` (checked before any work)."""
    if budget_bytes <= 0:
        raise ScaleError(f"the memory budget must be positive, got {budget_bytes / GB:g} GB")
    by_word: dict[str, list[Snippet]] = {}
    for s in train:
        by_word.setdefault(s.word, []).append(s)
    largest = max((teacher_cache_bytes(lm, [s], with_final) for s in train), default=0)
    if largest > budget_bytes:
        raise ScaleError(f"the memory budget of {budget_bytes / GB:.3g} GB is too small for one snippet's teacher "
                         f"cache ({largest / GB:.3g} GB); raise --memory-budget-gb or shorten the snippets")
    chunks: list[list[WordSplit]] = []
    current: list[WordSplit] = []
    used = 0
    for split in splits:
        need = teacher_cache_bytes(lm, by_word.get(split.word, []), with_final)
        if need > budget_bytes:
            raise ScaleError(f"{split.word!r} alone needs {need / GB:.3g} GB of teacher cache, over the budget of "
                             f"{budget_bytes / GB:.3g} GB; raise --memory-budget-gb or use fewer snippets per token")
        if current and used + need > budget_bytes:
            chunks.append(current)
            current, used = [], 0
        current.append(split)
        used += need
    if current:
        chunks.append(current)
    return chunks


# ---------------------------------------------------------------------------------------------------------
# Shards over torch.distributed ranks
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shard:
    """This process's part of the words: every `world`-th word from `rank` on."""

    rank: int = 0
    world: int = 1

    def take(self, items: Sequence) -> list:
        return list(items[self.rank :: self.world])

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def current_shard() -> Shard:
    """The shard of an initialised torch.distributed process group, else the whole run."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return Shard(dist.get_rank(), dist.get_world_size())
    return Shard()


def init_distributed(device: str = "auto") -> Shard:
    """Join the process group torchrun describes in the environment (gloo on CPU, NCCL on CUDA)."""
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return current_shard()
    cuda = torch.cuda.is_available() and device != "cpu"
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    return current_shard()


def gather_rows(rows: dict[str, NewTokenRows], splits: Sequence[WordSplit], shard: Shard,
                ) -> dict[str, NewTokenRows] | None:
    """All ranks' rows merged on rank 0 in the order of `splits` (None on the other ranks)."""
    if shard.world == 1:
        return rows
    import torch.distributed as dist

    parts: list | None = [None] * shard.world if shard.is_main else None
    dist.gather_object({m: _as_dict(r) for m, r in rows.items()}, parts, dst=0)
    if not shard.is_main:
        return None
    merged: dict[str, dict[str, tuple]] = {}
    for part in parts:
        for method, by_word in part.items():
            merged.setdefault(method, {}).update(by_word)
    return {m: _assemble(m, by_word, splits) for m, by_word in merged.items()}


def _as_dict(rows: NewTokenRows) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
    out = rows.output_rows
    return {w: (rows.input_rows[i].cpu(), None if out is None else out[i].cpu()) for i, w in enumerate(rows.words)}


def _assemble(method: str, by_word: dict[str, tuple], splits: Sequence[WordSplit]) -> NewTokenRows:
    words = [s.word for s in splits if s.word in by_word]
    inputs = torch.stack([by_word[w][0] for w in words])
    outputs = None if by_word[words[0]][1] is None else torch.stack([by_word[w][1] for w in words])
    descriptions = {s.word: s.description for s in splits if s.description and s.word in by_word}
    return NewTokenRows(method=method, words=words, input_rows=inputs, output_rows=outputs, descriptions=descriptions)


# ---------------------------------------------------------------------------------------------------------
# Checkpoints: finished chunks, so an interrupted run resumes and loses nothing
# ---------------------------------------------------------------------------------------------------------


class CheckpointStore:
    """Finished chunks' rows in `folder`, valid only for the settings they were made with."""

    def __init__(self, folder: str | Path, fingerprint: dict, resume: bool) -> None:
        self.folder = Path(folder)
        self.fingerprint = json.loads(json.dumps(fingerprint, sort_keys=True, default=str))
        manifest = self.folder / MANIFEST
        if resume and manifest.is_file():
            stored = json.loads(manifest.read_text(encoding="utf-8"))
            stored.pop("words", None)  # folders from before a resumed run could add words held them
            if stored != self.fingerprint:
                changed = sorted(k for k in set(stored) | set(self.fingerprint) if stored.get(k) != self.fingerprint.get(k))
                raise ScaleError(f"the checkpoints in {self.folder} were made with other settings ({', '.join(changed)}"
                                 " differ); resume with the same settings or choose a new output folder")
        self.folder.mkdir(parents=True, exist_ok=True)
        if not manifest.is_file():
            with atomic_path(manifest) as tmp:
                tmp.write_text(json.dumps(self.fingerprint, indent=1, sort_keys=True), encoding="utf-8")

    def finished(self) -> dict[str, dict[str, tuple[torch.Tensor, torch.Tensor | None]]]:
        """method -> word -> (input row, output row or None), from every complete chunk file."""
        from safetensors import safe_open

        done: dict[str, dict[str, tuple]] = {}
        for path in sorted(self.folder.glob("chunk-*.safetensors")):
            with safe_open(str(path), framework="pt") as fh:
                words = json.loads(fh.metadata()["words"])
                names = set(fh.keys())  # noqa: SIM118 (safe_open is not a mapping)
                for method in json.loads(fh.metadata()["methods"]):
                    inputs = fh.get_tensor(f"{method}.input")
                    outputs = fh.get_tensor(f"{method}.output") if f"{method}.output" in names else None
                    for i, w in enumerate(words):
                        done.setdefault(method, {})[w] = (inputs[i], None if outputs is None else outputs[i])
        return done

    def save(self, rows: dict[str, NewTokenRows], name: str) -> Path:
        """One finished chunk: every method's rows, written to a temporary name and renamed."""
        from safetensors.torch import save

        first = next(iter(rows.values()))
        tensors = {}
        for method, r in rows.items():  # methods may share a tensor (untied output rows): safetensors refuses that
            tensors[f"{method}.input"] = r.input_rows.float().contiguous().clone()
            if r.output_rows is not None:
                tensors[f"{method}.output"] = r.output_rows.float().contiguous().clone()
        meta = {"words": json.dumps(first.words), "methods": json.dumps(list(rows))}
        path = self.folder / f"chunk-{name}.safetensors"
        with atomic_path(path) as tmp:
            tmp.write_bytes(save(tensors, metadata=meta))
        return path


# ---------------------------------------------------------------------------------------------------------
# The chunked run
# ---------------------------------------------------------------------------------------------------------


def train_in_chunks(td: TokenDistillation, splits: Sequence[WordSplit], train: Sequence[Snippet],
                    methods: Sequence[str], config: DistillationConfig, output_policy: str = "ntp",
                    budget_bytes: int = 8 * GB, store: CheckpointStore | None = None, shard: Shard = Shard(),
                    progress: Callable[[float, int], None] | None = None,
                    cancel: threading.Event | None = None) -> dict[str, NewTokenRows]:
    """Rows of `splits` per method, trained chunk by chunk; words already in `store` are not trained again.

    `progress(done_words, total_words)` after every training step (`done_words` is fractional within a chunk:
    its words times the share of the chunk's steps done), so a single large chunk still shows an ETA.
    Returns rows in the order of `splits`.
    """
    from ..methods import get_method

    chosen = [get_method(m) for m in dict.fromkeys(methods)]
    with_final = any(m.needs_lm_head(config) for m in chosen if m.trains) or not td.lm.tied
    done = store.finished() if store is not None else {}
    todo = [s for s in splits if not all(s.word in done.get(m.name, {}) for m in chosen)]
    todo_words = {t.word for t in todo}
    # The teacher caches hold what training reads of each snippet.
    chunks = plan_chunks(td.lm, todo, config.trained_part(s for s in train if s.word in todo_words), budget_bytes,
                         with_final)
    by_word: dict[str, list[Snippet]] = {}
    for s in train:
        by_word.setdefault(s.word, []).append(s)
    finished_words = len(splits) - len(todo)
    if progress is not None:
        progress(finished_words, len(splits))
    for number, chunk in enumerate(chunks):
        snippets = [s for split in chunk for s in by_word.get(split.word, [])]
        callback = None if progress is None else _step_progress(progress, finished_words, len(chunk), len(splits),
                                                                [m.name for m in chosen if m.trains])
        outcome = td.train(chunk, snippets, [m.name for m in chosen], config, output_policy, callback=callback,
                           cancel=cancel)
        if outcome.cancelled is not None:
            raise Cancelled(f"stopped in chunk {number + 1} of {len(chunks)}: {outcome.cancelled}")
        for method, rows in outcome.rows.items():
            done.setdefault(method, {}).update(_as_dict(rows))
        if store is not None:
            store.save(outcome.rows, f"{shard.rank:03d}-{_digest(chunk)}")
        finished_words += len(chunk)
        if progress is not None:
            progress(finished_words, len(splits))
    return {m.name: _assemble(m.name, done[m.name], splits) for m in chosen if splits}


def _step_progress(progress: Callable[[float, int], None], before: int, chunk_words: int, total_words: int,
                   trained: Sequence[str]) -> Callable[[StepRecord], None]:
    """A step callback that reports the chunk's words done so far, each trained method an equal share."""

    def report(record: StepRecord) -> None:
        if record.method not in trained:  # e.g. the output rows fitted for untied models
            return
        share = (trained.index(record.method) + record.step / max(record.total_steps, 1)) / len(trained)
        progress(before + chunk_words * share, total_words)

    return report


def _digest(chunk: Sequence[WordSplit]) -> str:
    import hashlib

    return hashlib.sha256("\n".join(s.word for s in chunk).encode()).hexdigest()[:16]
