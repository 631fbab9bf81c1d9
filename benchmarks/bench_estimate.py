"""How close the app's job-time estimates are to the real time (what `--max-job-seconds` relies on).

Cases run one after another, as on a server. For each: the real seconds, the estimate the app shows
(the start-up probe times the correction learned so far, which starts at INITIAL_CORRECTION), the same
without the correction, and the estimate once this job was recorded too. Prints JSON; a ratio is estimate / real (1.0 is
exact, above 1 errs on the safe side).
"""

from __future__ import annotations

import argparse
import time

from benchmarks.common import PAPER_WORDS, emit, environment
from tokdist_core import estimate, snippets_of
from tokdist_core.api import TokenDistillation
from tokdist_core.training import DistillationConfig

# (label, words, snippets per word, held-out per word, snippet length, methods, epochs, batch)
CASES = [
    ("2 words, app defaults", PAPER_WORDS[1:3], 8, 4, 32, ["random", "subword_mean", "tokdist"], 8, 16),
    ("2 words, batch 1", PAPER_WORDS[1:3], 8, 4, 32, ["tokdist"], 4, 1),
    ("8 words x 25, paper snippets", PAPER_WORDS, 25, 4, 51, ["subword_mean", "tokdist"], 1, 16),
    ("2 words, all trained methods", PAPER_WORDS[1:3], 8, 4, 32, ["ntp", "tokdist", "tokdist_antp"], 2, 8),
]


def _timed_training(td: TokenDistillation, case: tuple) -> dict:
    _, words, n_train, n_held, length, methods, epochs, batch = case
    splits, _ = td.prepare_words(words)
    contexts = td.contexts(splits, "bundled", n_train, n_held, length, 0)
    train = snippets_of(contexts, splits)
    heldout = snippets_of(contexts, splits, "heldout")
    config = DistillationConfig(epochs=epochs, batch_size=batch)
    before = td.estimate_training(train, heldout, methods, config)
    correction = estimate.machine_speed(td.lm).correction  # the start value, then learned from the cases before
    start = time.perf_counter()
    td.train(splits, train, methods, config, heldout=heldout)
    real = time.perf_counter() - start
    td.record_job_time(before, real)
    after = td.estimate_training(train, heldout, methods, config)
    return {"case": case[0], "snippets": len(train), "heldout": len(heldout), "methods": methods,
            "epochs": epochs, "batch_size": batch, "real_s": round(real, 2),
            "uncorrected_estimate_s": round(before.seconds / correction, 2),
            "uncorrected_ratio": round(before.seconds / correction / real, 2),
            "estimate_s": round(before.seconds, 2), "ratio": round(before.seconds / real, 2),
            "estimate_after_this_job_s": round(after.seconds, 2)}


def _timed_generation(td: TokenDistillation, sequences: int, length: int) -> dict:
    from tokdist_core.contexts import generate_snippets

    split = td.prepare_words(["Krankenwagen"])[0][0]
    before = td.estimate_generation(sequences, length)
    start = time.perf_counter()
    generate_snippets(td.lm, split, sequences, length, 0)
    real = time.perf_counter() - start
    return {"case": f"generate {sequences} x {length} tokens", "estimate_s": round(before.seconds, 2),
            "real_s": round(real, 2), "ratio": round(before.seconds / real, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    td = TokenDistillation(args.model, device=args.device)
    start = time.perf_counter()
    speed = estimate.machine_speed(td.lm)
    probe_s = time.perf_counter() - start
    probe = {"seconds": round(probe_s, 2), "gflop_per_s": round(speed.flops_per_second / 1e9, 1),
             "seconds_per_pass": round(speed.seconds_per_pass, 4)}
    generation = _timed_generation(td, 32, 48)
    cases = [_timed_training(td, case) for case in CASES]
    emit({"benchmark": "estimate", "model": td.lm.source, "environment": environment(td.lm.device),
          "probe": probe, "generation": generation, "training": cases,
          "correction_after_all": round(estimate.machine_speed(td.lm).correction, 3)})


if __name__ == "__main__":
    main()
