"""How long and how much memory a job will take, before it starts.

Work is counted in useful FLOPs (docs/method.md): F = 2 x decoder matmul parameters per token, plus the LM
head where a loss or metric needs logits, and in passes through the layer stack, each of which has a
fixed cost (kernel dispatch of every layer) that dominates small batches. A probe measures both for the
model once per process; finished jobs then correct the estimate by how long they really took, so it
learns the machine it runs on (and how busy it is).
"""

from __future__ import annotations

import math
import threading
import time
import weakref
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .contexts import GENERATE_BATCH
from .foundations.forward import autocast_for
from .foundations.models import LoadedModel
from .foundations.snippet import Snippet
from .training import TEACHER_BATCH_TOKENS, steps_per_epoch
from .training.batching import student_pass_tokens

# Forward + input-gradient backward of the frozen student: about two forwards of work, two passes.
STUDENT_PASSES = 2
# The probe's plain forward runs faster than real jobs (their backward passes, gathers, Adam steps):
# benchmarks/bench_estimate.py measured real / probe-only estimates of 1.1-1.45 on 2 CPU cores, 1.4 after
# four jobs. Estimates start there, on the safe side, and then follow the jobs this process finishes.
INITIAL_CORRECTION = 1.4
# One sampling step costs several plain passes (top-p sorts the vocabulary per sequence, the cache grows,
# logits processors run): with the correction above, 4 lands about 20 % over the real time on 2 CPU
# cores (benchmarks/bench_estimate.py).
PASSES_PER_DECODE_STEP = 4
EVAL_BATCH = 16
PROBE_SHAPE = (4, 64)  # batch x tokens of the probe forward that measures the matmul rate


@dataclass
class MachineSpeed:
    flops_per_second: float
    seconds_per_pass: float  # fixed cost of one pass through all layers
    correction: float = INITIAL_CORRECTION  # real / predicted seconds of finished jobs (moving average)


_speeds: weakref.WeakKeyDictionary[torch.nn.Module, MachineSpeed] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


@dataclass(frozen=True)
class JobEstimate:
    seconds: float
    flops: float
    passes: int
    memory_bytes: int  # teacher cache (prefix keys/values and targets) kept during training

    def describe(self) -> str:
        return f"about {format_seconds(self.seconds)}"


def format_seconds(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, math.ceil(seconds))} s"
    if seconds < 5400:
        return f"{math.ceil(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def layer_flops_per_token(lm: LoadedModel) -> float:
    """Forward FLOPs per token of the decoder layers (2 x non-embedding matmul parameters)."""
    layers = lm.model.get_decoder().layers
    return 2.0 * sum(p.numel() for layer in layers for p in layer.parameters() if p.ndim == 2)


def head_flops_per_token(lm: LoadedModel) -> float:
    return 2.0 * lm.embedding_rows * lm.hidden_size


def machine_speed(lm: LoadedModel) -> MachineSpeed:
    with _lock:
        speed = _speeds.get(lm.model)
    if speed is None:
        speed = _probe(lm)
        with _lock:
            speed = _speeds.setdefault(lm.model, speed)
    return speed


def _seconds(lm: LoadedModel, flops: float, passes: int) -> float:
    speed = machine_speed(lm)
    return (flops / speed.flops_per_second + passes * speed.seconds_per_pass) * speed.correction


def record_actual(lm: LoadedModel, estimate: JobEstimate, seconds: float) -> None:
    """Correct later estimates by how long a finished job really took (short ones say little)."""
    predicted = _seconds(lm, estimate.flops, estimate.passes)
    if seconds < 1.0 or predicted <= 0:
        return
    with _lock:
        speed = _speeds[lm.model]
        ratio = min(10.0, max(0.1, seconds / (predicted / speed.correction)))
        speed.correction = 0.5 * speed.correction + 0.5 * ratio


@torch.no_grad()
def _probe(lm: LoadedModel) -> MachineSpeed:
    decoder = lm.model.get_decoder()
    vocab = min(len(lm.tokenizer), lm.embedding_rows)

    def timed(batch: int, length: int) -> float:
        ids = torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(0)).to(lm.device)
        best = math.inf
        for _ in range(2):  # the first pass warms up kernels and caches
            start = time.perf_counter()
            with autocast_for(lm.device, "auto"):
                decoder(input_ids=ids, use_cache=False)
            if lm.device.type == "cuda":
                torch.cuda.synchronize(lm.device)
            best = min(best, time.perf_counter() - start)
        return best

    fixed = timed(1, 2)
    batch, length = PROBE_SHAPE
    work = max(timed(batch, length) - fixed, 1e-6)
    return MachineSpeed(flops_per_second=layer_flops_per_token(lm) * batch * length / work, seconds_per_pass=fixed)


def teacher_cache_bytes(lm: LoadedModel, snippets: Sequence[Snippet], with_final: bool) -> int:
    """Memory the teacher cache of `snippets` holds: prefix keys/values (fp32 at most) and targets; with final
    states also those of the prefix and the aligned positions (an upper bound: at the last target layer the
    aligned ones are the targets themselves)."""
    config = lm.model.config.get_text_config()
    heads = int(getattr(config, "num_key_value_heads", None) or config.num_attention_heads)
    head_dim = int(getattr(config, "head_dim", None) or lm.hidden_size // config.num_attention_heads)
    per_prefix_token = lm.num_layers * 2 * heads * head_dim * 4  # keys + values, fp32 at most
    prefix = sum(s.start for s in snippets)
    aligned = sum(len(s.suffix) + 1 for s in snippets)
    return per_prefix_token * prefix + 4 * lm.hidden_size * (aligned + (prefix + aligned if with_final else 0))


def estimate_training(lm: LoadedModel, train: Sequence[Snippet], heldout: Sequence[Snippet],
                      trained_methods: int, all_methods: int, epochs: int, batch_size: int,
                      next_token_loss: bool, teacher_head_methods: int = 0) -> JobEstimate:
    """Teacher once, each trained method's epochs over the student positions, then held-out evaluation.

    `teacher_head_methods`: trained methods with a logit loss, which also apply the LM head to the teacher's
    cached final states in every step."""
    layer, head = layer_flops_per_token(lm), head_flops_per_token(lm)
    per_token = layer + (head if next_token_loss else 0.0)
    flops, passes = 0.0, 0
    if trained_methods and train:
        teacher_tokens = sum(len(s.token_ids) for s in train)
        flops += teacher_tokens * per_token
        budget = TEACHER_BATCH_TOKENS.get(lm.device.type, TEACHER_BATCH_TOKENS["cpu"])
        passes += math.ceil(teacher_tokens / budget)
        student_tokens = sum(len(s.suffix) + 1 for s in train)
        flops += trained_methods * epochs * student_tokens * STUDENT_PASSES * per_token
        flops += teacher_head_methods * epochs * student_tokens * head
        # A step takes batch_size snippets of every word; many words make a step several passes.
        steps = steps_per_epoch(Counter(s.word for s in train).values(), batch_size)
        student_passes = max(steps, math.ceil(student_tokens / student_pass_tokens(lm)))
        passes += trained_methods * epochs * student_passes * STUDENT_PASSES
    if heldout:  # full forwards of every held-out snippet, once as the teacher and once per method
        flops += (1 + all_methods) * sum(len(s.token_ids) for s in heldout) * (layer + head)
        passes += (1 + all_methods) * math.ceil(len(heldout) / EVAL_BATCH)
    memory = teacher_cache_bytes(lm, train, next_token_loss) if trained_methods else 0
    return JobEstimate(seconds=_seconds(lm, flops, passes), flops=flops, passes=passes, memory_bytes=memory)


def estimate_generation(lm: LoadedModel, sequences: int, snippet_len: int) -> JobEstimate:
    """Sampling `sequences` texts of `snippet_len` tokens, a batch at a time (an upper bound)."""
    flops = sequences * snippet_len * (layer_flops_per_token(lm) + head_flops_per_token(lm))
    passes = math.ceil(sequences / GENERATE_BATCH) * snippet_len * PASSES_PER_DECODE_STEP
    return JobEstimate(seconds=_seconds(lm, flops, passes), flops=flops, passes=passes, memory_bytes=0)
