"""Shared helpers for the benchmarks: matmul peak, FLOP counting, memory, JSON output."""

from __future__ import annotations

import json
import platform
import re
import resource
import sys
import time
from collections import Counter

import torch

PAPER_WORDS = ["Agassi", "Schopenhauer", "alchemy", "Andorra", "alkanes", "Aberdeen", "anarchism", "Aruba"]


def frequent_corpus_words(tokenizer, n: int, min_count: int) -> list[str]:
    """The n most frequent words of the bundled corpus that take two or more subwords (capitalised kept)."""
    from tokdist_core.contexts import iter_documents
    from tokdist_core.foundations.vocab import WordError, check_new_word

    counts = Counter(w for _, text in iter_documents("bundled") for w in re.findall(r"\b[A-Za-z]{4,}\b", text))
    words = []
    for word, count in counts.most_common():
        if count < min_count or len(words) == n:
            break
        try:
            check_new_word(tokenizer, " " + word)
        except WordError:
            continue
        words.append(word)
    return words


def matmul_peak_gflops(device: torch.device, dtype: torch.dtype, n: int = 2048, repeats: int = 10) -> float:
    """Measured dense matmul throughput on an n x n problem in the dtype the training computes in."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_memory_mb(device: torch.device) -> dict:
    out = {"host_max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.type == "cuda":
        out["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def environment(device: torch.device) -> dict:
    env = {"python": sys.version.split()[0], "torch": torch.__version__, "threads": torch.get_num_threads(),
           "machine": platform.machine(), "device": str(device)}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name()
    return env


def emit(result: dict) -> None:
    print(json.dumps(result, indent=2, ensure_ascii=False))
