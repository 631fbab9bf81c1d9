"""Contexts: the snippets each new word is learned from, split into disjoint train and held-out sets.

* ``sources``: typed text sources, parsed once from ``data`` (``parse_sources``), and the file readers;
* ``bundled``: the English text shipped as test data in the gensim wheel;
* ``documents``: ``(source_label, text)`` documents read lazily from the sources;
* ``mining``: one Aho-Corasick pass over the documents, snippet windows around the accepted occurrences;
* ``generation``: snippets the model writes, to top up words the text lacks.

``collect_contexts`` puts them together: mine, top up with generation, split per word.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..foundations.cancel import Cancelled
from ..foundations.snippet import Snippet
from ..foundations.vocab import WordSplit
from .bundled import BUNDLED_SOURCES, GENSIM_HINT, GENSIM_VERSION, bundled_available
from .documents import DocumentSplit, corpus_stats, iter_documents, iter_hf_dataset, until_cancelled
from .generation import GENERATE_BATCH, generate_snippets
from .mining import (
    MAX_OCCURRENCES_PER_WORD,
    MAX_SNIPPET_LEN,
    MAX_SNIPPETS_PER_TOKEN,
    check_seed,
    check_snippet_count,
    check_snippet_len,
    check_splits,
    mine_snippets,
    word_rng,
)
from .sources import (
    FILE_BUILDERS,
    HF_MAX_DOCUMENTS,
    BundledSource,
    CorpusError,
    DataSpec,
    FileSource,
    GeneratedSource,
    HFDataSource,
    Source,
    check_hub_dataset_id,
    parse_hf_spec,
    parse_sources,
)

if TYPE_CHECKING:  # models imports torch/transformers; only needed for type hints here
    from ..foundations.models import LoadedModel


@dataclass
class WordContexts:
    """Train and held-out snippets of one word; ``problem`` is set when the word cannot be evaluated/trained."""

    word: str
    train: list[Snippet]
    heldout: list[Snippet]
    sources: dict[str, int]  # snippets per source label over train + heldout
    problem: str | None = None  # e.g. "no occurrences in the corpus": never silently dropped
    note: str | None = None  # e.g. "only 7 of 35 snippets found": usable but fewer than asked

    @property
    def n_snippets(self) -> int:
        return len(self.train) + len(self.heldout)

    @property
    def ok(self) -> bool:
        return self.problem is None


def snippets_of(contexts: Mapping[str, WordContexts], splits: Iterable[WordSplit], part: str = "train"
                ) -> list[Snippet]:
    """The `part` ("train" or "heldout") snippets of the given words, in word order (words without contexts
    contribute none): the pool one training run or evaluation reads."""
    if part not in ("train", "heldout"):
        raise ValueError(f"part must be 'train' or 'heldout', got {part!r}")
    return [sn for s in splits if s.word in contexts for sn in getattr(contexts[s.word], part)]


def split_train_heldout(
    snippets: list[Snippet], snippets_per_token: int, heldout_per_token: int
) -> tuple[list[Snippet], list[Snippet]]:
    """Held-out first, train next, from an already shuffled list.

    With fewer snippets than asked, split proportionally, keeping at least one held-out snippet when there
    are two or more (and at least one for training).
    """
    k = len(snippets)
    if k >= snippets_per_token + heldout_per_token:
        n_held = heldout_per_token
    elif heldout_per_token == 0 or k == 0:
        n_held = 0
    else:
        n_held = round(k * heldout_per_token / (snippets_per_token + heldout_per_token))
        n_held = min(max(n_held, 1 if k >= 2 else 0), k - 1)
    heldout = snippets[:n_held]
    train = snippets[n_held : n_held + snippets_per_token]
    return train, heldout


def _word_contexts(word: str, snippets: list[Snippet], snippets_per_token: int, heldout_per_token: int,
                   corpus: str, generated: bool, notes: list[str]) -> WordContexts:
    """Split one word's shuffled snippets and say what is missing (`corpus`: the sources mined, or '')."""
    train, heldout = split_train_heldout(snippets, snippets_per_token, heldout_per_token)
    sources: dict[str, int] = {}
    for snip in train + heldout:
        sources[snip.source] = sources.get(snip.source, 0) + 1
    wanted = snippets_per_token + heldout_per_token
    problem = None
    if not snippets:
        problem = f"no occurrences in the corpus ({corpus})" if corpus else "generation produced no usable snippets"
        if corpus and not generated:
            problem += "; try data='auto' to top up with generated text"
    elif len(snippets) == 1 and heldout_per_token > 0:
        problem = "only 1 snippet found: used for training, none held out for evaluation"
    elif len(snippets) < wanted:
        notes = [*notes, f"only {len(snippets)} of {wanted} snippets: {len(train)} train / {len(heldout)} held-out"]
    return WordContexts(word=word, train=train, heldout=heldout, sources=sources, problem=problem,
                        note="; ".join(notes) or None)


def _plan(sources: list[Source]) -> tuple[list[Source], bool, list[str]]:
    """-> (the text sources to mine, whether to top up with generation, notes for every word)."""
    generate = any(isinstance(s, GeneratedSource) for s in sources)
    corpus = [s for s in sources if not isinstance(s, GeneratedSource)]
    notes: list[str] = []
    if any(isinstance(s, BundledSource) and s.optional for s in corpus) and not bundled_available():
        corpus = [s for s in corpus if not isinstance(s, BundledSource)]
        notes.append(f"bundled corpus unavailable ({GENSIM_HINT})" + ("" if corpus else "; generated snippets only"))
    return corpus, generate, notes


def _top_up(lm: LoadedModel, split: WordSplit, snippets: list[Snippet], wanted: int, snippet_len: int, seed: int,
            cancel: threading.Event | None) -> str | None:
    """Add generated snippets up to ``wanted``; -> the reason when generation was stopped, else None."""
    try:
        snippets.extend(generate_snippets(lm, split, wanted - len(snippets), snippet_len, seed, cancel))
    except Cancelled as exc:
        return str(exc)
    return None


def collect_contexts(
    lm: LoadedModel,
    splits: list[WordSplit],
    data: DataSpec | Iterable[DataSpec] = "auto",
    snippets_per_token: int = 25,
    heldout_per_token: int = 10,
    snippet_len: int = 50,
    seed: int = 0,
    text_column: str = "text",
    progress: Callable[[float, str], None] | None = None,
    max_documents: int | None = None,
    cancel: threading.Event | None = None,
    document_split: DocumentSplit | None = None,
) -> dict[str, WordContexts]:
    """Mine (and/or generate) snippets for each word and split them into disjoint train / held-out sets.

    ``data``: "auto" (bundled corpus, topped up with generated snippets), "bundled", "generated", file
    path(s), folder(s), "hf:<name>[:config][:split]", typed sources (``BundledSource``, ``FileSource``,
    ``HFDataSource``, ``GeneratedSource``), or a list mixing these ("generated" in a list means top up with
    generation). Deterministic for a seed.

    A set ``cancel`` flag stops the work at the next document batch or generated token: stopped while
    mining, it raises Cancelled; stopped while generating, the words finished so far keep their
    snippets and the others get a ``problem`` saying they were not collected.

    ``document_split``: mine only its training documents (the held-out ones are kept for a report).
    """
    splits = check_splits(splits)
    if not splits:
        raise ValueError("No words given.")
    check_snippet_count("snippets_per_token", snippets_per_token, 1)
    check_snippet_count("heldout_per_token", heldout_per_token, 0)
    check_snippet_len(snippet_len, splits)
    check_seed(seed)
    corpus, generate, notes = _plan(parse_sources(data))
    report = progress or (lambda _f, _m: None)
    wanted = snippets_per_token + heldout_per_token
    mined_from = ", ".join(s.spec for s in corpus)

    mined: dict[str, list[Snippet]] = {s.word: [] for s in splits}
    if corpus:
        report(0.0, f"Reading and mining {mined_from}")
        documents = iter_documents(corpus, text_column=text_column, max_documents=max_documents)
        if document_split is not None:
            documents = document_split.select(documents, "train")
        documents = until_cancelled(documents, cancel)
        mined = mine_snippets(documents, lm.tokenizer, splits, snippet_len, max_per_word=wanted, seed=seed)
        report(0.3 if generate else 0.9, f"Mined {sum(map(len, mined.values()))} snippets from {mined_from}")

    result: dict[str, WordContexts] = {}
    to_generate = [s for s in splits if generate and len(mined[s.word]) < wanted]
    stopped: str | None = None
    for i, split in enumerate(splits):
        snippets = list(mined[split.word])
        if split in to_generate:
            if stopped is None:
                report(0.3 + 0.65 * to_generate.index(split) / len(to_generate),
                       f"Generating snippets for {split.display!r}")
                stopped = _top_up(lm, split, snippets, wanted, snippet_len, seed, cancel)
            if stopped is not None:
                result[split.word] = WordContexts(split.word, [], [], {}, problem=f"not collected: {stopped}")
                continue
            # Mix sources so that held-out and train both see corpus and generated text.
            word_rng(seed, split.word, "split").shuffle(snippets)
        result[split.word] = _word_contexts(split.word, snippets, snippets_per_token, heldout_per_token, mined_from,
                                            generate, notes)
        if not generate:
            report(0.9 + 0.1 * (i + 1) / len(splits), f"Split {split.display!r}")
    report(1.0, "Contexts ready")
    return result


__all__ = [
    "snippets_of",
    "BUNDLED_SOURCES",
    "FILE_BUILDERS",
    "GENERATE_BATCH",
    "GENSIM_HINT",
    "GENSIM_VERSION",
    "HF_MAX_DOCUMENTS",
    "MAX_OCCURRENCES_PER_WORD",
    "MAX_SNIPPETS_PER_TOKEN",
    "MAX_SNIPPET_LEN",
    "BundledSource",
    "CorpusError",
    "DataSpec",
    "FileSource",
    "GeneratedSource",
    "HFDataSource",
    "Source",
    "WordContexts",
    "bundled_available",
    "check_hub_dataset_id",
    "collect_contexts",
    "corpus_stats",
    "generate_snippets",
    "iter_documents",
    "iter_hf_dataset",
    "mine_snippets",
    "parse_hf_spec",
    "parse_sources",
    "split_train_heldout",
]
