"""Held-out metrics, nearest neighbours, PCA, the per-layer lens and side-by-side generation.

Evaluation runs full forward passes (no prefix-cache trick), so it also cross-checks training.
"""

from __future__ import annotations

import math
import threading
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.decomposition import PCA
from transformers import DynamicCache

from .cancel import check_cancel
from .forward import autocast_for, embed_ids, output_logits, resolve_layer
from .models import LoadedModel
from .rows import NewTokenRows, Trajectory, tokenizer_with_words
from .snippet import Snippet

METRICS = ("hidden_mse", "hidden_cos", "next_token_kl", "norm_percentile", "seconds")
LOWER_IS_BETTER = {"hidden_mse": True, "hidden_cos": False, "next_token_kl": True}


def _pad(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids, mask


def _student_embeds(lm: LoadedModel, snippets: Sequence[Snippet], rows: NewTokenRows) -> tuple[torch.Tensor, torch.Tensor]:
    pad = lm.tokenizer.pad_token_id or 0
    ids, mask = _pad([list(s.prefix) + [pad] + list(s.suffix) for s in snippets], pad)
    ids, mask = ids.to(lm.device), mask.to(lm.device)
    embeds = embed_ids(lm.model, ids)
    scaled = rows.scaled_input(lm.model).to(embeds.device, embeds.dtype)
    for i, s in enumerate(snippets):
        embeds[i, s.start] = scaled[rows.index(s.word)]
    return embeds, mask


@dataclass
class _Aligned:
    """Teacher outputs at the aligned positions of one held-out batch (computed once, shared by methods)."""

    hidden: list[torch.Tensor]  # per layer [N, H] (N = aligned positions in the batch)
    log_probs: torch.Tensor  # [N, V] over the original vocabulary
    owner: list[int]  # batch row of each aligned position


def _aligned_index(snippets: Sequence[Snippet], student: bool) -> tuple[list[int], list[int]]:
    rows, cols = [], []
    for i, s in enumerate(snippets):
        first = s.start if student else s.start + s.n_subwords - 1
        for j in range(len(s.suffix) + 1):
            rows.append(i)
            cols.append(first + j)
    return rows, cols


@torch.no_grad()
def _aligned(lm: LoadedModel, snippets: Sequence[Snippet], student: bool, **inputs: torch.Tensor) -> _Aligned:
    """A full forward, keeping every layer's states and the next-token log-probs at the aligned positions."""
    with autocast_for(lm.device):
        out = lm.model(**inputs, output_hidden_states=True, use_cache=False)
    r, c = _aligned_index(snippets, student=student)
    return _Aligned(hidden=[h[r, c].float() for h in out.hidden_states],
                    log_probs=F.log_softmax(out.logits[r, c].float(), -1), owner=r)


def _teacher(lm: LoadedModel, snippets: Sequence[Snippet]) -> _Aligned:
    ids, mask = _pad([list(s.token_ids) for s in snippets], lm.tokenizer.pad_token_id or 0)
    return _aligned(lm, snippets, False, input_ids=ids.to(lm.device), attention_mask=mask.to(lm.device))


def _student(lm: LoadedModel, snippets: Sequence[Snippet], rows: NewTokenRows) -> _Aligned:
    embeds, mask = _student_embeds(lm, snippets, rows)
    return _aligned(lm, snippets, True, inputs_embeds=embeds, attention_mask=mask)


def norm_percentile(lm: LoadedModel, row: torch.Tensor) -> float:
    """Percentage of original input rows whose norm is below this row's norm."""
    weight = lm.model.get_input_embeddings().weight
    norms = weight[: min(len(lm.tokenizer), weight.shape[0])].detach().float().norm(dim=-1)
    return float((norms < row.float().norm()).float().mean() * 100)


def heldout_metrics(lm: LoadedModel, methods: Sequence[NewTokenRows], snippets: Sequence[Snippet],
                    target_layer: int = -1, batch_size: int = 16, cancel: threading.Event | None = None) -> dict:
    """Per method and word: hidden MSE/cos at the target layer, next-token KL, norm percentile, and
    per-layer MSE/cos curves, all over aligned positions of held-out snippets from the new token on.

    A set ``cancel`` flag raises Cancelled before the next batch."""
    layer = resolve_layer(lm.model, target_layer)
    sums: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(float)))
    curves: dict = defaultdict(lambda: defaultdict(lambda: None))
    counts: dict = defaultdict(int)
    ordered = sorted(snippets, key=lambda s: len(s.token_ids))
    for b in range(0, len(ordered), batch_size):
        check_cancel(cancel, f"stopped while evaluating ({b} of {len(ordered)} held-out snippets)")
        batch = ordered[b : b + batch_size]
        teacher = _teacher(lm, batch)
        words = [batch[i].word for i in teacher.owner]
        for w in set(words):
            counts[w] += sum(1 for x in words if x == w)
        for rows in methods:
            student = _student(lm, batch, rows)
            mse_layers = torch.stack([(s - t).pow(2).mean(-1) for s, t in zip(student.hidden, teacher.hidden)])
            cos_layers = torch.stack([F.cosine_similarity(s, t, dim=-1) for s, t in zip(student.hidden, teacher.hidden)])
            # Both distributions are over the original output rows (the plain model head), so KL compares like with like.
            kl = (teacher.log_probs.exp() * (teacher.log_probs - student.log_probs)).sum(-1)
            for w in set(words):
                sel = torch.tensor([x == w for x in words])
                acc = sums[rows.method][w]
                acc["hidden_mse"] += float(mse_layers[layer][sel].sum())
                acc["hidden_cos"] += float(cos_layers[layer][sel].sum())
                acc["next_token_kl"] += float(kl[sel].sum())
                prev = curves[rows.method][w]
                add = torch.stack([mse_layers[:, sel].sum(1), cos_layers[:, sel].sum(1)])
                curves[rows.method][w] = add if prev is None else prev + add
    report: dict = {}
    for rows in methods:
        per_word = {}
        for w in rows.words:
            n = counts.get(w, 0)
            if not n:
                continue
            acc = sums[rows.method][w]
            curve = curves[rows.method][w] / n
            per_word[w] = {
                "hidden_mse": acc["hidden_mse"] / n,
                "hidden_cos": acc["hidden_cos"] / n,
                "next_token_kl": acc["next_token_kl"] / n,
                "norm_percentile": norm_percentile(lm, rows.input_rows[rows.index(w)]),
                "layer_mse": curve[0].tolist(),
                "layer_cos": curve[1].tolist(),
                "positions": n,
            }
        report[rows.method] = per_word
    return report


def heldout_snippet_losses(lm: LoadedModel, methods: Sequence[NewTokenRows], snippets: Sequence[Snippet],
                           target_layer: int = -1, batch_size: int = 16) -> dict[str, list[tuple[float, int]]]:
    """Per method, per snippet (in the given order): (hidden MSE at the target layer, aligned positions).

    The same full forward passes and batches as `heldout_metrics`, so a word's position-weighted mean over
    its snippets is that function's `hidden_mse` for the word."""
    layer = resolve_layer(lm.model, target_layer)
    order = sorted(range(len(snippets)), key=lambda i: len(snippets[i].token_ids))
    sums: dict[str, list[float]] = {rows.method: [0.0] * len(snippets) for rows in methods}
    counts = [len(s.suffix) + 1 for s in snippets]
    for b in range(0, len(order), batch_size):
        chosen = order[b : b + batch_size]
        batch = [snippets[i] for i in chosen]
        teacher = _teacher(lm, batch)
        owner = torch.tensor(teacher.owner)
        for rows in methods:
            student = _student(lm, batch, rows)
            mse = (student.hidden[layer] - teacher.hidden[layer]).pow(2).mean(-1)
            per_row = torch.zeros(len(batch), dtype=mse.dtype).index_add(0, owner, mse.cpu())
            for k, i in enumerate(chosen):
                sums[rows.method][i] = float(per_row[k])
    return {method: [(total / n, n) for total, n in zip(values, counts)] for method, values in sums.items()}


def readable_token(tokenizer, token_id: int) -> str:
    return tokenizer.decode([int(token_id)], clean_up_tokenization_spaces=False)


def nearest_neighbours(lm: LoadedModel, row: torch.Tensor, k: int = 10, exclude: Sequence[int] = ()) -> list[dict]:
    """Top-k original tokens by cosine similarity to `row` over the full input matrix."""
    weight = lm.model.get_input_embeddings().weight
    matrix = weight[: min(len(lm.tokenizer), weight.shape[0])].detach().float()
    sims = F.cosine_similarity(matrix, row.float().to(matrix.device).unsqueeze(0), dim=-1)
    if exclude:
        sims[list(exclude)] = -2.0
    top = torch.topk(sims, k)
    return [
        {"rank": r + 1, "token_id": int(i), "token": readable_token(lm.tokenizer, int(i)), "cosine": float(s)}
        for r, (s, i) in enumerate(zip(top.values.tolist(), top.indices.tolist()))
    ]


@dataclass
class EmbeddingMap:
    """Compare's 2-D PCA map of one word: the points it was fitted on and the fitted projection.

    Anything else drawn on the map (a trajectory) goes through `project`, so it lands in the same plane.
    """

    labels: list[str]
    kinds: list[str]  # "new row" (label = method), "subword", "neighbour of <method>"
    coords: np.ndarray  # [points, 2]
    pca: PCA | None  # None when there is a single point (it sits at the origin)

    def project(self, rows: torch.Tensor) -> np.ndarray:
        """[n, 2] map coordinates of input rows [n, hidden] (the embedding matrix's unscaled space)."""
        data = rows.detach().float().cpu().numpy()
        if self.pca is None:
            return np.zeros((data.shape[0], 2))
        coords = self.pca.transform(data)
        return np.pad(coords, ((0, 0), (0, 2 - coords.shape[1]))) if coords.shape[1] < 2 else coords

    def points(self) -> list[dict]:
        return [{"label": lab, "kind": kind, "x": float(x), "y": float(y)}
                for lab, kind, (x, y) in zip(self.labels, self.kinds, self.coords)]


def fit_embedding_map(lm: LoadedModel, methods: Sequence[NewTokenRows], word: str, subword_ids: Sequence[int],
                  neighbours: int = 8) -> EmbeddingMap:
    """The PCA of one word's new rows (every method), its subword rows and their nearest neighbours."""
    weight = lm.model.get_input_embeddings().weight.detach().float()
    points: list[tuple[str, str, torch.Tensor]] = []
    for rows in methods:
        points.append((rows.method, "new row", rows.input_rows[rows.index(word)].float().cpu()))
    for tid in subword_ids:
        points.append((readable_token(lm.tokenizer, tid), "subword", weight[tid].cpu()))
    seen = set(subword_ids)
    for rows in methods:
        for nb in nearest_neighbours(lm, rows.input_rows[rows.index(word)], neighbours, exclude=()):
            if nb["token_id"] not in seen:
                seen.add(nb["token_id"])
                points.append((nb["token"], f"neighbour of {rows.method}", weight[nb["token_id"]].cpu()))
    labels, kinds = [p[0] for p in points], [p[1] for p in points]
    data = torch.stack([p[2] for p in points])
    if data.shape[0] < 2:
        return EmbeddingMap(labels, kinds, np.zeros((data.shape[0], 2)), None)
    pca = PCA(n_components=min(2, data.shape[0], data.shape[1]), random_state=0).fit(data.numpy())
    emap = EmbeddingMap(labels, kinds, np.zeros((0, 2)), pca)
    emap.coords = emap.project(data)  # the same arithmetic as every later projection onto this map
    return emap


def pca_points(lm: LoadedModel, methods: Sequence[NewTokenRows], word: str, subword_ids: Sequence[int],
               neighbours: int = 8) -> list[dict]:
    """2-D PCA of one word's new rows (every method), its subword rows and their nearest neighbours."""
    return fit_embedding_map(lm, methods, word, subword_ids, neighbours).points()


def trajectory_paths(emap: EmbeddingMap, trajectories: Sequence[Trajectory], word: str) -> dict[str, dict]:
    """Per trajectory (method), `word`'s row at every recorded step: projected onto `emap`, and how far it
    has moved in row space (Euclidean, the embedding matrix's unscaled space)."""
    paths = {}
    for trajectory in trajectories:
        rows = trajectory.of(word).float()
        xy = emap.project(rows)
        steps_moved = (rows[1:] - rows[:-1]).norm(dim=-1)
        paths[trajectory.method] = {
            "steps": list(trajectory.steps),
            "x": [float(v) for v in xy[:, 0]],
            "y": [float(v) for v in xy[:, 1]],
            "distance_from_start": (rows - rows[0]).norm(dim=-1).tolist(),
            "path_length": float(steps_moved.sum()),
        }
    return paths


@torch.no_grad()
def layer_lens(lm: LoadedModel, rows: NewTokenRows, snippet: Snippet, top_k: int = 5) -> list[dict]:
    """Per layer, at the word's position: how close the student's state is to the teacher's (after the
    last subword), and what each would predict next if decoding stopped there (logit lens)."""
    teacher = lm.model(input_ids=torch.tensor([snippet.token_ids], device=lm.device), output_hidden_states=True)
    embeds, mask = _student_embeds(lm, [snippet], rows)
    student = lm.model(inputs_embeds=embeds, attention_mask=mask, output_hidden_states=True)
    t_pos, s_pos = snippet.start + snippet.n_subwords - 1, snippet.start
    norm = lm.model.get_decoder().norm
    total = len(teacher.hidden_states) - 1
    out = []
    for layer, (th, sh) in enumerate(zip(teacher.hidden_states, student.hidden_states)):
        t, s = th[0, t_pos], sh[0, s_pos]
        # The last entry is already normed; earlier ones get the final norm before the head (logit lens).
        tn, sn = (t, s) if layer == total else (norm(t), norm(s))
        t_top = torch.topk(output_logits(lm.model, tn.unsqueeze(0))[0], top_k).indices.tolist()
        s_top = torch.topk(output_logits(lm.model, sn.unsqueeze(0))[0], top_k).indices.tolist()
        out.append({
            "layer": layer,
            "cosine": float(F.cosine_similarity(t.float(), s.float(), dim=0)),
            "mse": float((t.float() - s.float()).pow(2).mean()),
            "teacher_top": [readable_token(lm.tokenizer, i) for i in t_top],
            "student_top": [readable_token(lm.tokenizer, i) for i in s_top],
        })
    return out


@dataclass
class Generation:
    label: str
    text: str
    prompt_tokens: int
    new_tokens: int


@torch.no_grad()
def generate(lm: LoadedModel, prompt: str, rows: NewTokenRows | None, max_new_tokens: int = 30, seed: int = 0,
             temperature: float = 0.0, top_p: float = 0.95) -> Generation:
    """Continue `prompt` with the original split (rows=None) or with the words as new tokens.

    The shared model is not resized: new input rows enter as embeddings and new output rows as extra
    logits, so the model can also emit the new tokens.
    """
    if not prompt.strip():
        raise ValueError("Empty prompt: type some text that contains the word.")
    if not 1 <= max_new_tokens <= 512:
        raise ValueError("max_new_tokens must be between 1 and 512")
    if temperature < 0 or not math.isfinite(temperature):
        raise ValueError("temperature must be >= 0 (0 = greedy)")
    base_vocab = len(lm.tokenizer)
    rows_vocab = lm.model.get_output_embeddings().weight.shape[0]
    tokenizer = lm.tokenizer if rows is None else tokenizer_with_words(lm.tokenizer, tuple(rows.words))
    ids = tokenizer.encode(prompt, add_special_tokens=False)
    if lm.tokenizer.bos_token_id is not None and getattr(lm.tokenizer, "add_bos_token", False):
        ids = [lm.tokenizer.bos_token_id] + ids
    prompt_len = len(ids)
    scaled = rows.scaled_input(lm.model).to(lm.device) if rows is not None else None
    out_rows = rows.output_matrix().to(lm.device) if rows is not None else None
    new_ids = {tid: k for k, tid in enumerate(tokenizer.convert_tokens_to_ids(rows.words))} if rows else {}

    def embed(token_ids: list[int]) -> torch.Tensor:
        safe = torch.tensor([[t if t not in new_ids else 0 for t in token_ids]], device=lm.device)
        e = embed_ids(lm.model, safe)
        for j, t in enumerate(token_ids):
            if t in new_ids:
                e[0, j] = scaled[new_ids[t]].to(e.dtype)
        return e

    generator = torch.Generator(device="cpu").manual_seed(seed)
    cache = DynamicCache(config=lm.model.config)
    decoder = lm.model.get_decoder()
    generated: list[int] = []
    step_ids = ids
    eos = lm.tokenizer.eos_token_id
    for _ in range(max_new_tokens):
        with autocast_for(lm.device):
            hidden = decoder(inputs_embeds=embed(step_ids), cache=cache, use_cache=True).last_hidden_state[:, -1]
            logits = output_logits(lm.model, hidden, out_rows)[0].float().cpu()
        # Original ids beyond the tokenizer (padding rows) are never sampled.
        logits[base_vocab:rows_vocab] = -float("inf")
        if temperature == 0:
            nxt = int(logits.argmax())
        else:
            probs = torch.softmax(logits / temperature, -1)
            sorted_p, order = probs.sort(descending=True)
            keep = sorted_p.cumsum(0) - sorted_p < top_p
            sorted_p = sorted_p * keep
            nxt = int(order[torch.multinomial(sorted_p / sorted_p.sum(), 1, generator=generator)])
        if nxt >= rows_vocab:  # an extra logit: new token k
            nxt = tokenizer.convert_tokens_to_ids(rows.words[nxt - rows_vocab])
        if nxt == eos:
            break
        generated.append(nxt)
        step_ids = [nxt]
    text = tokenizer.decode(ids + generated, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    return Generation(label=rows.method if rows else "original split", text=text, prompt_tokens=prompt_len,
                      new_tokens=len(generated))
