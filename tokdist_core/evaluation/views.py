"""What the app shows of the new rows: nearest neighbours, the PCA map and trajectories on it, the
per-layer lens and side-by-side generation."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.decomposition import PCA
from transformers import DynamicCache

from ..foundations.forward import autocast_for, embed_ids, output_logits
from ..foundations.models import LoadedModel
from ..foundations.rows import NewTokenRows, Trajectory, tokenizer_with_words
from ..foundations.snippet import Snippet
from .metrics import student_embeds


def check_word_in(rows: Sequence[NewTokenRows], word: str) -> None:
    """ValueError unless every method of `rows` has a row for `word` (the message names their words)."""
    if not rows:
        raise ValueError("no rows given: train at least one method first")
    missing = [r.method for r in rows if word not in r.words]
    if missing:
        raise ValueError(f"{word!r} has no new row in {', '.join(missing)}; their words: "
                         f"{', '.join(repr(w) for w in rows[0].words)}")


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
    embeds, mask = student_embeds(lm, [snippet], rows)
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


def _check_generation(prompt: str, max_new_tokens: int, temperature: float) -> None:
    if not prompt.strip():
        raise ValueError("Empty prompt: type some text that contains the word.")
    if not 1 <= max_new_tokens <= 512:
        raise ValueError("max_new_tokens must be between 1 and 512")
    if temperature < 0 or not math.isfinite(temperature):
        raise ValueError("temperature must be >= 0 (0 = greedy)")


def read_as_described(text: str, descriptions: Mapping[str, str]) -> str:
    """`text` with each special token replaced by its description (with the space it took, lstrip)."""
    for token, description in descriptions.items():
        pattern = (r"\s?" if description.startswith(" ") else "") + re.escape(token)
        text = re.sub(pattern, lambda _m, d=description: d, text)
    return text


@torch.no_grad()
def generate(lm: LoadedModel, prompt: str, rows: NewTokenRows | None, max_new_tokens: int = 30, seed: int = 0,
             temperature: float = 0.0, top_p: float = 0.95, descriptions: Mapping[str, str] | None = None
             ) -> Generation:
    """Continue `prompt` with the original split (rows=None: each special token of `descriptions` replaced by
    its description, as the original model read it) or with the words as new tokens.

    The shared model is not resized: new input rows enter as embeddings and new output rows as extra
    logits, so the model can also emit the new tokens.
    """
    _check_generation(prompt, max_new_tokens, temperature)
    if rows is None:
        prompt = read_as_described(prompt, descriptions or {})
    base_vocab = len(lm.tokenizer)
    rows_vocab = lm.model.get_output_embeddings().weight.shape[0]
    tokenizer = lm.tokenizer if rows is None else tokenizer_with_words(lm.tokenizer, tuple(rows.words), rows.descriptions)
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
    # The base's special tokens (bos...) are dropped; new special tokens from a description stay visible.
    special = set(lm.tokenizer.all_special_ids)
    text = tokenizer.decode([i for i in ids + generated if i not in special], clean_up_tokenization_spaces=False)
    return Generation(label=rows.method if rows else "original split", text=text, prompt_tokens=prompt_len,
                      new_tokens=len(generated))
