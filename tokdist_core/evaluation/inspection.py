"""Looking at one word's snippets: the loss of every training and held-out snippet, and user-written snippets.

The numbers add up to the ones reported elsewhere (tests/test_inspect.py):

* a training snippet's loss is the distillation loss the trainer computes for it (token-mean hidden MSE at the
  target layer, the student reading the teacher's prefix cache); the position-weighted mean over the word's
  training snippets is the trainer's loss for a step that holds all of them;
* a held-out snippet's loss is the hidden MSE at the target layer of a full forward (evaluate.py); the
  position-weighted mean over the word's held-out snippets is ``heldout_metrics``' ``hidden_mse`` for the word.

Words are independent (docs/method.md, step 5), so a word re-trained alone gets the row it would get beside
the others, and ``NewTokenRows.with_word_rows`` puts it in place of the old one.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from ..contexts import WordContexts
from ..contexts.mining import MAX_SNIPPET_LEN, boundary_matches, word_automaton
from ..foundations.models import LoadedModel
from ..foundations.rows import NewTokenRows
from ..foundations.snippet import Snippet
from ..foundations.vocab import WordSplit
from ..training import DistillationConfig, DistillationTrainer, StepRecord, TeacherCache
from .metrics import heldout_snippet_losses

PARTS = ("train", "heldout")
MAX_USER_SNIPPET_CHARS = 5_000
USER_SOURCE = "user"  # the source label of a snippet a person wrote
# Line breaks and tabs are ordinary text; other control, format (zero-width), surrogate, private-use and
# unassigned characters would tokenize into pieces a reader cannot see.
_ALLOWED_CONTROLS = {"\n", "\t"}
_ODD_CATEGORIES = ("Cc", "Cf", "Cs", "Co", "Cn")


@dataclass(frozen=True)
class SnippetLoss:
    """One snippet of the word with its loss under each method's rows."""

    part: str  # "train" or "heldout"
    index: int  # 0-based position in the word's training or held-out list
    snippet: Snippet
    positions: int  # aligned positions the loss averages over: the new token and every token after it
    losses: dict[str, float]  # method -> mean over positions of the squared error (mean over hidden)

    @property
    def label(self) -> str:
        """'train 3' or 'held-out 2' (1-based, as people count)."""
        return f"{'train' if self.part == 'train' else 'held-out'} {self.index + 1}"


@dataclass
class WordInspection:
    """Every snippet of one word, with per-method losses that average to the reported ones."""

    word: str
    target_layer: int
    methods: list[str]
    snippets: list[SnippetLoss] = field(default_factory=list)

    def part(self, part: str) -> list[SnippetLoss]:
        _check_part(part)
        return [s for s in self.snippets if s.part == part]

    def mean(self, method: str, part: str) -> float | None:
        """Position-weighted mean loss of `method` over the `part` snippets (None when there are none)."""
        chosen = self.part(part)
        total = sum(s.positions for s in chosen)
        if not total:
            return None
        return sum(s.losses[method] * s.positions for s in chosen) / total

    def worst_first(self, method: str) -> list[SnippetLoss]:
        """All snippets, highest `method` loss first (ties: training before held-out, then in order)."""
        if method not in self.methods:
            raise ValueError(f"method {method!r} was not inspected; choose one of {', '.join(self.methods)}")
        return sorted(self.snippets, key=lambda s: (-s.losses[method], PARTS.index(s.part), s.index))

    def to_json(self) -> dict:
        return {
            "word": self.word,
            "target_layer": self.target_layer,
            "methods": list(self.methods),
            "means": {m: {p: self.mean(m, p) for p in PARTS} for m in self.methods},
            "snippets": [{"id": s.label, "set": s.part, "index": s.index, "positions": s.positions,
                          "losses": dict(s.losses), "source": s.snippet.source} for s in self.snippets],
        }


def _check_part(part: str) -> None:
    if part not in PARTS:
        raise ValueError(f"part must be 'train' or 'heldout', got {part!r}")


def _check_snippets(word: str, snippets: Sequence[Snippet], part: str) -> list[Snippet]:
    snippets = list(snippets)
    others = sorted({s.word for s in snippets if s.word != word})
    if others:
        raise ValueError(f"{part} snippets of other words ({', '.join(map(repr, others))}) were given for {word!r}")
    return snippets


def inspect_word(lm: LoadedModel, rows: Sequence[NewTokenRows], word: str, train: Sequence[Snippet],
                 heldout: Sequence[Snippet], config: DistillationConfig | None = None) -> WordInspection:
    """Per snippet of `word` (training and held-out), its loss under every method's rows for the word.

    `config` gives the target layer and precision (the run's settings); the losses are the distillation
    loss, whatever each method trained with, so that every method is measured the same way. A training
    snippet's loss covers what training read of it (`config.tokens_after`), a held-out one's the whole snippet.
    """
    config = config or DistillationConfig()
    config.validate(lm)
    chosen = [r for r in rows if word in r.words]
    if not chosen:
        raise ValueError(f"no rows for {word!r}: train the word first")
    train = _check_snippets(word, train, "training")
    heldout = _check_snippets(word, heldout, "held-out")
    if not train and not heldout:
        raise ValueError(f"{word!r} has no snippets to inspect")
    methods = [r.method for r in chosen]
    per_snippet: dict[tuple[str, int], dict[str, float]] = {}
    read = config.trained_part(train)
    if train:
        # The trainer's own code path: the teacher cache with its prefix keys/values, one word, over what
        # training read of each snippet (up to config.tokens_after tokens after the word).
        cache = TeacherCache(lm, read, [word], config.target_layer, with_final=False,
                             mixed_precision=config.mixed_precision)
        trainer = DistillationTrainer(lm, [word], replace(config, losses=("hidden_mse",)), cache)
        where = {id(s): i for i, s in enumerate(read)}
        order = [where[id(it.snippet)] for it in cache.items]
        for r in chosen:
            values = trainer.snippet_losses(r.input_rows[[r.index(word)]])
            for i, value in zip(order, values):
                per_snippet.setdefault(("train", i), {})[r.method] = value
    if heldout:
        evaluated = heldout_snippet_losses(lm, chosen, heldout, config.target_layer)
        for method, values in evaluated.items():
            for i, (value, _positions) in enumerate(values):
                per_snippet.setdefault(("heldout", i), {})[method] = value
    # Each snippet is shown whole; its positions are those its loss covers.
    snippets = [SnippetLoss(part, i, snip, len(counted.suffix) + 1, per_snippet[(part, i)])
                for part, pool, scored in (("train", train, read), ("heldout", heldout, heldout))
                for i, (snip, counted) in enumerate(zip(pool, scored))]
    return WordInspection(word=word, target_layer=config.target_layer, methods=methods, snippets=snippets)


# -- a snippet a person wrote ---------------------------------------------------------------------------------
def snippet_from_text(tokenizer, split: WordSplit, text: str, max_tokens: int = MAX_SNIPPET_LEN,
                      source: str = USER_SOURCE) -> Snippet:
    """The training snippet of `split.word` that `text` makes: its first whole-word occurrence is the word.

    The rules are the miner's (contexts/mining.py): a word boundary on both sides, the mid-sentence form
    (" word") after a plain space, and the text's tokenization must hold exactly the word's subword ids
    there. Raises ValueError saying what to change otherwise.
    """
    if not isinstance(text, str):
        raise ValueError(f"a snippet must be text, got {type(text).__name__}")
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n")).strip()
    shown = split.surface.strip()
    if not text:
        raise ValueError(f"the snippet is empty: write a sentence or two that uses {shown!r}")
    if len(text) > MAX_USER_SNIPPET_CHARS:
        raise ValueError(f"the snippet is {len(text):,} characters long; the limit is {MAX_USER_SNIPPET_CHARS:,}")
    odd = sorted({f"U+{ord(ch):04X}" for ch in text
                  if ch not in _ALLOWED_CONTROLS and unicodedata.category(ch) in _ODD_CATEGORIES})
    if odd:
        raise ValueError(f"the snippet contains control or invisible characters ({', '.join(odd)}); remove them")
    ids, start = _locate_word(tokenizer, split, text)
    if len(ids) > max_tokens:
        raise ValueError(f"the snippet is {len(ids)} tokens long; the limit is {max_tokens}: shorten it")
    if len(ids) < split.n_subwords + 2:
        raise ValueError(f"the snippet is too short: write a few words around {shown!r} so it has context")
    return Snippet(split.word, tuple(ids), start, split.n_subwords, source)


def _locate_word(tokenizer, split: WordSplit, text: str) -> tuple[list[int], int]:
    """(token ids of `text`, index of the word's first subword) for the first usable occurrence."""
    shown = split.surface.strip()
    matches = list(boundary_matches(text, word_automaton([split])))
    if not matches:
        raise ValueError(_why_absent(split, text))
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, return_attention_mask=False)
    ids, offsets = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    n = split.n_subwords
    for a, b, _words in matches:
        first = next((k for k, (_s, e) in enumerate(offsets) if e > a), None)
        if first is None:
            continue
        # A lone space token can end where the word starts, so the word may begin one token earlier.
        for j in (first, first - 1):
            if j >= 0 and j + n <= len(ids) and tuple(ids[j:j + n]) == split.ids and offsets[j + n - 1][1] == b:
                return ids, j
    pieces = " · ".join(split.pieces)
    raise ValueError(f"in this text the tokenizer does not read {shown!r} as its usual pieces ({pieces}); "
                     "rephrase the words right around it (e.g. put a space or punctuation after it)")


def _why_absent(split: WordSplit, text: str) -> str:
    """Why the text has no whole-word occurrence of the word, in words a user can act on."""
    surface = split.surface[1:] if split.surface.startswith(" ") else split.surface
    if surface not in text:
        if surface.lower() in text.lower():
            return f"the snippet has {surface!r} only in another capitalisation; write it exactly as {surface!r}"
        return f"the snippet does not contain the word {surface!r}: write a sentence that uses it"
    if split.surface.startswith(" "):
        return (f"the snippet has {surface!r} only inside a longer word or not after a space; the new token is "
                f"{split.display!r}, the word after a space in mid-sentence (e.g. 'We read {surface} today.')")
    return (f"the snippet has {surface!r} only inside a longer word or right after a space; this new token is "
            "the word-initial form: put it at the start of the text or after punctuation or a line break")


def with_word_history(history: Sequence[StepRecord], word_history: Sequence[StepRecord], word: str
                      ) -> list[StepRecord]:
    """A run's step records with `word`'s losses replaced by those of its re-training alone (`retrain_word`),
    so its curve is the one its current rows came from; the other words' losses stay as they were.

    The word's losses go in at the steps of its own run; each record's `loss` stays the mean of its words.
    """
    new = {r.step: r.word_losses[word] for r in word_history if word in r.word_losses}
    merged = []
    for record in history:
        losses = {w: v for w, v in record.word_losses.items() if w != word}
        if record.step in new:
            losses[word] = new.pop(record.step)
        if losses:
            merged.append(replace(record, word_losses=losses, loss=sum(losses.values()) / len(losses)))
    by_step = {r.step: r for r in word_history}
    merged += [replace(by_step[step], word_losses={word: loss}, loss=loss) for step, loss in new.items()]
    return sorted(merged, key=lambda r: r.step)


def apply_snippet_edits(tokenizer, contexts: Mapping[str, WordContexts], splits: Sequence[WordSplit],
                        edits: Sequence[Sequence], max_tokens: int = MAX_SNIPPET_LEN) -> dict[str, WordContexts]:
    """Mined contexts with snippets a person wrote put in, in the order they were written (the Inspect tab's
    edits, replayed by `TokenDistillation.run`). Each edit is (word, index, text): `text` becomes a training
    snippet of `word` (as given or as trained, with or without its leading space) that replaces training
    snippet `index` (0-based), or is added after the others when `index` is None. Raises ValueError naming
    the edit that does not fit; `contexts` is not changed."""
    by_word = {s.word: s for s in splits} | {s.word.strip(): s for s in splits}
    out = dict(contexts)
    for n, edit in enumerate(edits, 1):
        if isinstance(edit, (str, bytes)) or not isinstance(edit, Sequence) or len(edit) != 3:
            raise ValueError(f"snippet edit {n}: expected (word, index or None, text), got {edit!r}")
        word, index, text = edit
        split = by_word.get(word) if isinstance(word, str) else None
        if split is None:
            raise ValueError(f"snippet edit {n}: {word!r} is not one of the new words")
        ctx = out.get(split.word)
        train = list(ctx.train) if ctx is not None else []
        if index is not None and (isinstance(index, bool) or not isinstance(index, int)
                                  or not 0 <= index < len(train)):
            raise ValueError(f"snippet edit {n}: {split.word!r} has {len(train)} training snippets, so index "
                             f"{index!r} does not name one (0-based, or None to add)")
        try:
            snip = snippet_from_text(tokenizer, split, text, max_tokens=max_tokens)
        except ValueError as exc:
            raise ValueError(f"snippet edit {n} ({split.word!r}): {exc}") from None
        sources = dict(ctx.sources) if ctx is not None else {}
        if index is None:
            train.append(snip)
        else:
            old = train[index].source
            sources[old] -= 1
            if not sources[old]:
                del sources[old]
            train[index] = snip
        sources[snip.source] = sources.get(snip.source, 0) + 1
        out[split.word] = (replace(ctx, train=train, sources=sources, problem=None) if ctx is not None
                           else WordContexts(split.word, train, [], sources))
    return out
