"""The Python API: `TokenDistillation(model).run(...)` and `.compare(...)`."""

from __future__ import annotations

import copy
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase

from . import contexts as corpus
from . import estimate
from .contexts.sources import DataSpec
from .discovery import (
    Discovery,
    FrequencyList,
    candidates_from_frequency_list,
    candidates_from_tokenizer,
    discover_words,
)
from .estimate import JobEstimate
from .evaluation.attention import attention_to_word
from .evaluation.inspection import WordInspection, apply_snippet_edits, inspect_word, snippet_from_text
from .evaluation.metrics import heldout_metrics
from .evaluation.report import DomainReport, domain_report
from .evaluation.views import (
    Generation,
    check_word_in,
    fit_embedding_map,
    generate,
    layer_lens,
    nearest_neighbours,
    trajectory_paths,
)
from .export import export_model_zip, reproduce_snippet, save_rows
from .export.card import model_card
from .export.formats import estimate_export_bytes, save_formats
from .foundations.cancel import Cancelled
from .foundations.limits import DEFAULT_MODEL, MAX_SNIPPET_LEN
from .foundations.models import LoadedModel, load_model
from .foundations.rows import NewTokenRows, Trajectory
from .foundations.slots import add_tokens_on_slots, check_reuse_slots
from .foundations.snippet import Snippet
from .foundations.vocab import (
    WordError,
    WordSplit,
    add_tokens_to_model,
    prepare_splits,
    split_word,
)
from .methods import METHOD_NAMES, MethodContext, get_method
from .methods.runner import TrainOutcome, run_methods
from .results import Comparison, Skipped
from .training import (
    DEFAULT_TRAJECTORY_POINTS,
    DistillationConfig,
    OutputPolicy,
    StepRecord,
    TeacherCache,
    check_trajectory_points,
    new_output_rows,
)

Progress = Callable[[float, str], None]
_NO_WORDS = "no words given: pass at least one word (blank entries are ignored)"


def _check_output_policy(policy: OutputPolicy | str) -> None:
    OutputPolicy.parse(policy)  # ValueError naming OUTPUT_POLICIES


def method_losses(methods: Sequence[str], config: DistillationConfig) -> dict[str, list[str]]:
    """Per trained method among `methods`, the losses it trains with under `config` (for reports)."""
    return {m: list(get_method(m).losses_for(config)) for m in methods if get_method(m).trains}


def _evaluable(ctx: corpus.WordContexts | None) -> bool:
    """A word compare() can use: it has training and held-out snippets."""
    return ctx is not None and bool(ctx.train) and bool(ctx.heldout)


class TokenDistillation:
    """Add new tokens to a causal LM and learn their embeddings; the base model is never modified."""

    def __init__(self, model: str | LoadedModel = DEFAULT_MODEL, device: str = "auto") -> None:
        self.lm = model if isinstance(model, LoadedModel) else load_model(model, device=device)

    # -- words and contexts -------------------------------------------------------------------------
    def prepare_words(self, new_tokens: str | Sequence[str], mid_sentence: bool = True,
                      describe: Mapping[str, str] | Sequence[str] | None = None) -> tuple[list[WordSplit], list[Skipped]]:
        """Normalize and split the words; those that cannot become new tokens are returned with a reason.
        `describe`: special tokens and the text each stands for ({token: text} or "TOKEN=TEXT" entries), read
        by the original model as that text; any problem with them raises WordError (vocab.described_split)."""
        splits, rejected = prepare_splits(self.lm.tokenizer, new_tokens, mid_sentence, describe)
        return splits, [Skipped(w, r) for w, r in rejected]

    def contexts(self, splits: Sequence[WordSplit], data: str | list[str] = "auto", snippets_per_token: int = 25,
                 heldout_per_token: int = 10, snippet_len: int = 50, seed: int = 0,
                 progress: Progress | None = None, cancel: threading.Event | None = None,
                 document_split: corpus.DocumentSplit | None = None) -> dict[str, corpus.WordContexts]:
        """Snippets per word (see contexts.collect_contexts); `document_split` mines only its training part."""
        return corpus.collect_contexts(self.lm, list(splits), data=data, snippets_per_token=snippets_per_token,
                                       heldout_per_token=heldout_per_token, snippet_len=snippet_len, seed=seed,
                                       progress=progress, cancel=cancel, document_split=document_split)

    # -- which words to add ---------------------------------------------------------------------------
    def discover(self, data: DataSpec | list[DataSpec] | None = None, *, top: int = 50, min_count: int = 2,
                 min_chars: int = 3, max_words: int = 1, from_tokenizer: str | PreTrainedTokenizerBase | None = None,
                 frequency_list: str | Path | FrequencyList | None = None, max_documents: int | None = None,
                 text_column: str = "text", stop_words: str | Sequence[str] | None = "english",
                 cancel: threading.Event | None = None,
                 document_split: corpus.DocumentSplit | None = None, keep_numbers: bool = False) -> Discovery:
        """Candidate new tokens ranked by tokens saved under this model's tokenizer (see tokdist_core.discovery).

        Words (``max_words`` 2 or 3: also phrases) counted in ``data`` ("bundled" when not given); or
        ``from_tokenizer``: another tokenizer's vocabulary (counted in ``data`` when given); or
        ``frequency_list``: a word<TAB>count or JSONL file, which brings its own counts.
        ``document_split``: count only its training documents. ``keep_numbers``: keep words with digits
        that this tokenizer reads digit by digit (left out by default, docs/method.md)."""
        tokenizer, name = self.lm.tokenizer, self.lm.name
        if from_tokenizer is not None and frequency_list is not None:
            raise ValueError("give from_tokenizer or frequency_list, not both")
        if frequency_list is not None:
            if data is not None:
                raise ValueError("a frequency list brings its own counts: do not also give data")
            return candidates_from_frequency_list(tokenizer, frequency_list, top, min_count, min_chars, name,
                                                  keep_numbers)
        if from_tokenizer is not None:
            return candidates_from_tokenizer(tokenizer, from_tokenizer, data, top, min_count, min_chars,
                                             max_documents, text_column, cancel, name, document_split, keep_numbers)
        return discover_words(tokenizer, "bundled" if data is None else data, top, min_count, min_chars, max_words,
                              max_documents, text_column, stop_words, cancel, name, document_split, keep_numbers)

    # -- estimates: what a job will cost before it starts ----------------------------------------------
    def estimate_training(self, train: Sequence[Snippet], heldout: Sequence[Snippet], methods: Sequence[str],
                          training: DistillationConfig | None = None) -> JobEstimate:
        """Time and teacher-cache memory of training `methods` on `train`, then evaluating on `heldout`."""
        config = training or DistillationConfig()
        chosen = [get_method(m) for m in dict.fromkeys(methods)]
        trained = [m for m in chosen if m.trains]
        next_token = any(m.needs_lm_head(config) for m in trained) or not self.lm.tied
        # The logit losses also apply the LM head to the teacher's final states in every step.
        teacher_heads = sum(any(name in ("logit_mse", "logit_kl") for name in m.losses_for(config)) for m in trained)
        return estimate.estimate_training(self.lm, config.trained_part(train), heldout, len(trained), len(chosen),
                                          config.passes, config.step_batch_size(Counter(s.word for s in train).values()),
                                          next_token,
                                          teacher_head_methods=teacher_heads)

    def training_steps(self, train: Sequence[Snippet], training: DistillationConfig | None = None) -> int:
        """Optimizer steps one trained method takes on `train` (see DistillationConfig.total_steps)."""
        config = training or DistillationConfig()
        return config.total_steps(Counter(s.word for s in train).values())

    def estimate_generation(self, sequences: int, snippet_len: int) -> JobEstimate:
        """Upper bound on the time to generate `sequences` snippets of `snippet_len` tokens."""
        return estimate.estimate_generation(self.lm, sequences, snippet_len)

    def record_job_time(self, job: JobEstimate, seconds: float) -> None:
        """Tell the estimator how long an estimated job really took; later estimates learn from it."""
        estimate.record_actual(self.lm, job, seconds)

    def evaluate(self, rows: Sequence[NewTokenRows], heldout: Sequence[Snippet], target_layer: int = -1,
                 cancel: threading.Event | None = None) -> dict[str, dict[str, dict]]:
        """Held-out metrics per method and word (see evaluate.heldout_metrics)."""
        return heldout_metrics(self.lm, list(rows), heldout, target_layer, cancel=cancel)

    # -- training -----------------------------------------------------------------------------------
    def output_rows(self, splits: Sequence[WordSplit], train: Sequence[Snippet], policy: OutputPolicy | str,
                    config: DistillationConfig, cache: TeacherCache | None = None,
                    cancel: threading.Event | None = None) -> torch.Tensor | None:
        """New LM-head rows for untied models (None for tied ones, which share the input rows)."""
        return new_output_rows(self.lm, splits, train, policy, config, cache, cancel)

    def train(self, splits: Sequence[WordSplit], train: Sequence[Snippet], methods: Sequence[str] = ("tokdist",),
              training: DistillationConfig | None = None, output_policy: str = "ntp",
              callback: Callable[[StepRecord], None] | None = None, cancel: threading.Event | None = None,
              on_method_done: Callable[[NewTokenRows, float], None] | None = None,
              heldout: Sequence[Snippet] | None = None, record_trajectory: bool = False,
              trajectory_points: int = DEFAULT_TRAJECTORY_POINTS) -> TrainOutcome:
        """Run each method, then (with `heldout`) evaluate the finished ones.

        A cancel keeps the methods that finished and says where it stopped (`outcome.cancelled`); a cancel
        during the evaluation leaves `outcome.metrics` None.

        `record_trajectory=True` also keeps each trained method's rows during training in
        `outcome.trajectories[method]` (a Trajectory; baselines do not train and have none): the start (the
        subword mean), then at most `trajectory_points` - 1 evenly spaced steps ending with the final rows.
        Off by default: it costs points x words x hidden x 4 bytes per method (101 points of SmolLM2: 233 KB
        per word). The trained rows are the same with and without it.
        """
        config = training or DistillationConfig()
        config.validate(self.lm)
        _check_output_policy(output_policy)
        if record_trajectory:
            check_trajectory_points(trajectory_points)
        chosen = [get_method(m) for m in dict.fromkeys(methods)]
        if not chosen:
            raise ValueError("choose at least one method")
        splits = list(splits)
        ctx = MethodContext(lm=self.lm, splits=splits, train_snippets=list(train), config=config,
                            callback=callback, cancel=cancel,
                            trajectory_points=trajectory_points if record_trajectory else 0)
        outcome = run_methods(ctx, chosen, output_policy, on_method_done)
        if heldout and outcome.rows and outcome.cancelled is None:
            try:
                outcome.metrics = self.evaluate(list(outcome.rows.values()), heldout, config.target_layer, cancel)
            except Cancelled as exc:
                outcome.cancelled = str(exc)
        return outcome

    # -- end-to-end ---------------------------------------------------------------------------------
    def compare(self, new_tokens: str | Sequence[str] = (), data: str | list[str] = "auto",
                methods: Sequence[str] = METHOD_NAMES, training: DistillationConfig | None = None,
                snippet_len: int = 50, snippets_per_token: int = 25, heldout_per_token: int = 10,
                seed: int | None = None, mid_sentence: bool = True, output_policy: str = "ntp",
                callback: Callable[[StepRecord], None] | None = None, cancel: threading.Event | None = None,
                progress: Progress | None = None, describe: Mapping[str, str] | Sequence[str] | None = None) -> Comparison:
        """Collect contexts, run every method and evaluate each on held-out snippets (`describe`: see prepare_words)."""
        config = training or DistillationConfig()
        if seed is not None:
            config = replace(config, seed=seed)
        methods = self._check_compare(config, methods, output_policy, heldout_per_token)
        splits, skipped = self.prepare_words(new_tokens, mid_sentence=mid_sentence, describe=describe)
        if not splits and not skipped:
            raise ValueError(_NO_WORDS)
        if progress:
            progress(0.0, "collecting contexts")
        contexts = (self.contexts(splits, data, snippets_per_token, heldout_per_token, snippet_len, config.seed,
                                  cancel=cancel) if splits else {})
        usable = [s for s in splits if _evaluable(contexts.get(s.word))]
        skipped += [Skipped(s.word, (contexts.get(s.word) and contexts[s.word].problem)
                            or "not enough snippets for training and held-out evaluation")
                    for s in splits if s not in usable]
        comparison = Comparison(
            model=self.lm.describe(),
            config={**config.to_dict(), "methods": list(methods), "data": data, "snippet_len": snippet_len,
                    "snippets_per_token": snippets_per_token, "heldout_per_token": heldout_per_token,
                    "mid_sentence": mid_sentence, "output_policy": output_policy,
                    "descriptions": {s.word: s.description for s in splits if s.description},
                    "method_losses": method_losses(methods, config)},
            splits=usable, contexts={s.word: contexts[s.word] for s in usable}, skipped=skipped,
        )
        if not usable:
            return comparison
        train = corpus.snippets_of(contexts, usable)
        heldout = corpus.snippets_of(contexts, usable, "heldout")
        if progress:
            progress(0.1, "training")
        outcome = self.train(usable, train, methods, config, output_policy, callback, cancel)
        comparison.rows, comparison.histories = outcome.rows, outcome.histories
        comparison.seconds, comparison.cancelled = outcome.seconds, outcome.cancelled
        if progress:
            progress(0.9, "evaluating on held-out snippets")
        if outcome.rows:  # a stopped run still reports the methods that finished
            comparison.metrics = self.evaluate(list(outcome.rows.values()), heldout, config.target_layer)
        if progress:
            progress(1.0, "done")
        return comparison

    def _check_compare(self, config: DistillationConfig, methods: str | Sequence[str], output_policy: str,
                       heldout_per_token: object) -> list[str]:
        """compare()'s arguments, checked before any work; -> the methods, without repeats."""
        config.validate(self.lm)
        methods = [methods] if isinstance(methods, str) else list(dict.fromkeys(methods))
        if not methods:
            raise ValueError("choose at least one method")
        for m in methods:
            get_method(m)
        _check_output_policy(output_policy)
        if isinstance(heldout_per_token, bool) or not isinstance(heldout_per_token, int) or heldout_per_token < 1:
            raise ValueError("compare evaluates every method on held-out snippets: heldout_per_token must be "
                             f"an integer of at least 1, got {heldout_per_token!r}")
        return methods

    def run(self, new_tokens: str | Sequence[str] = (), data: str | list[str] = "auto",
            training: DistillationConfig | None = None, snippet_len: int = 50, snippets_per_token: int = 25,
            out_path: str | Path | None = None, save: bool = False, method: str = "tokdist",
            mid_sentence: bool = True, output_policy: str = "ntp", snippet_edits: Sequence[Sequence] = (),
            heldout_per_token: int = 0, contexts_seed: int | None = None,
            describe: Mapping[str, str] | Sequence[str] | None = None):
        """Learn rows for `new_tokens` and return (model, tokenizer): copies with the tokens added.

        Words that cannot be added raise WordError listing every reason; with save=True the result is
        written to out_path with save_pretrained. `snippet_edits`: snippets a person wrote, as
        (word, index or None, text), put into the mined training snippets in order (see
        inspection.apply_snippet_edits; the app's Inspect tab records them). `heldout_per_token` and
        `contexts_seed` (default: the training seed) mine as `contexts` does: held-out snippets are set aside
        first, so they decide which snippets train; none are evaluated here. `describe`: see prepare_words.
        """
        config = training or DistillationConfig()
        if save and out_path is None:
            raise ValueError("save=True needs out_path (the folder to write the model and tokenizer to)")
        if save and Path(out_path).exists() and not Path(out_path).is_dir():
            raise ValueError(f"out_path {str(out_path)!r} is an existing file; give a folder")
        config.validate(self.lm)
        get_method(method)
        _check_output_policy(output_policy)
        splits, skipped = self.prepare_words(new_tokens, mid_sentence=mid_sentence, describe=describe)
        if skipped:
            raise WordError("; ".join(f"{s.word!r}: {s.reason}" for s in skipped))
        if not splits:
            raise ValueError(_NO_WORDS)
        seed = config.seed if contexts_seed is None else contexts_seed
        contexts = self.contexts(splits, data, snippets_per_token, heldout_per_token, snippet_len, seed)
        if snippet_edits:
            contexts = apply_snippet_edits(self.lm.tokenizer, contexts, splits, snippet_edits)
        missing = [f"{w!r}: {c.problem or 'no snippets'}" for w, c in contexts.items() if not c.train]
        if missing and get_method(method).trains:
            raise WordError("no training snippets for " + "; ".join(missing))
        train = corpus.snippets_of(contexts, splits)
        rows = self.train(splits, train, [method], config, output_policy).rows[method]
        model, tokenizer = self.with_new_tokens(rows)
        if save:
            script = reproduce_snippet(self.lm.name, rows.words, method, config.to_dict(), data, snippet_len,
                                       snippets_per_token, mid_sentence=mid_sentence, output_policy=str(output_policy),
                                       snippet_edits=snippet_edits, heldout_per_token=heldout_per_token,
                                       contexts_seed=contexts_seed, descriptions=rows.descriptions)
            self.save(rows, out_path, reproduce=script, model=(model, tokenizer))
        return model, tokenizer

    def with_new_tokens(self, rows: NewTokenRows, reuse_slots: str = "none"):
        """Copies of the base model and tokenizer with the words added and their rows written; `reuse_slots`
        "reserved" or "untrained" puts them on slots the vocabulary has (foundations.slots), so nothing grows."""
        model, tokenizer = copy.deepcopy(self.lm.model), copy.deepcopy(self.lm.tokenizer)
        if check_reuse_slots(reuse_slots) != "none":
            return model, add_tokens_on_slots(model, tokenizer, rows.words, rows.input_rows, rows.output_rows,
                                              reuse_slots, rows.descriptions)[0]
        add_tokens_to_model(model, tokenizer, rows.words, rows.input_rows, rows.output_rows, rows.descriptions)
        return model, tokenizer

    def domain_report(self, documents: Sequence[str], rows: Sequence[NewTokenRows], cancel: threading.Event | None = None,
                      progress: Progress | None = None, max_length: int | None = None) -> DomainReport:
        """On held-out `documents`: tokens the new words save and bits per byte of the original model vs each
        method's rows (see report.domain_report); the base model is not copied or changed."""
        return domain_report(self.lm, documents, rows, max_length=max_length, cancel=cancel, progress=progress)

    # -- looking inside: what the app's Compare, Generate and Lens tabs show ------------------------
    def split(self, word: str, rows: Sequence[NewTokenRows] = ()) -> WordSplit:
        """How the tokenizer cuts `word`, or a special token of `rows` its description (WordError for non-words)."""
        text = next((r.descriptions[word] for r in rows if word in r.descriptions), word)
        return replace(split_word(self.lm.tokenizer, text), word=word, description="" if text == word else text)

    def neighbours(self, rows: NewTokenRows, word: str, k: int = 10) -> list[dict]:
        """The k original tokens whose input rows are closest (cosine) to `word`'s new row."""
        return nearest_neighbours(self.lm, rows.input_rows[rows.index(word)], k)

    def embedding_map(self, rows: Sequence[NewTokenRows], word: str) -> list[dict]:
        """2-D PCA points: each method's new row for `word`, its subwords and their nearest tokens."""
        check_word_in(rows, word)
        return fit_embedding_map(self.lm, list(rows), word, list(self.split(word, rows).ids)).points()

    def trajectory_map(self, rows: Sequence[NewTokenRows], trajectories: Mapping[str, Trajectory] | Sequence[Trajectory],
                       word: str) -> dict:
        """Compare's embedding map of `word` (the same points and the same PCA fit as `embedding_map`) with
        each trajectory's path through training projected onto it.

        -> {"word", "points": embedding_map's points, "paths": {method: {"steps", "x", "y",
        "distance_from_start" (per step, row space), "path_length" (row space)}}}. A path starts at the
        subword mean (step 0) and ends at the method's final row, i.e. on that method's "new row" point.
        """
        chosen = list(trajectories.values()) if isinstance(trajectories, Mapping) else list(trajectories)
        if not chosen:
            raise ValueError("no training trajectories: train a method that trains (e.g. tokdist) with "
                             "record_trajectory=True; baselines such as subword_mean have no path")
        rows = list(rows)
        check_word_in(rows, word)
        methods = {r.method for r in rows}
        for trajectory in chosen:
            if trajectory.method not in methods:
                raise ValueError(f"trajectory of {trajectory.method!r} has no final rows among "
                                 f"{sorted(methods)}: pass the rows of the same run")
            trajectory.of(word)  # ValueError naming the trajectory's words
        emap = fit_embedding_map(self.lm, rows, word, list(self.split(word, rows).ids))
        return {"word": word, "points": emap.points(), "paths": trajectory_paths(emap, chosen, word)}

    def lens(self, rows: NewTokenRows, snippet: Snippet, top_k: int = 5) -> list[dict]:
        """Per layer at the word: cosine of the new token's state to the original pieces', and both top-k next tokens."""
        return layer_lens(self.lm, rows, snippet, top_k=top_k)

    def attention(self, rows: NewTokenRows | Sequence[NewTokenRows], snippets: Snippet | Sequence[Snippet],
                  cancel: threading.Event | None = None) -> dict:
        """Per layer, the share of attention the positions after the word give to it (the new token, or the
        original pieces added up) versus the prefix and the later positions; averaged over heads, positions
        and snippets (see attention.attention_to_word). The shared model keeps its own attention settings."""
        methods = [rows] if isinstance(rows, NewTokenRows) else list(rows)
        chosen = [snippets] if isinstance(snippets, Snippet) else list(snippets)
        return attention_to_word(self.lm, methods, chosen, cancel=cancel)

    def generate(self, prompt: str, rows: NewTokenRows | None = None, max_new_tokens: int = 30, seed: int = 0,
                 temperature: float = 0.0, descriptions: Mapping[str, str] | None = None) -> Generation:
        """Continue `prompt`, reading the words as their original pieces (rows=None; a special token of
        `descriptions` as its description) or as the new tokens."""
        return generate(self.lm, prompt, rows, max_new_tokens, seed, temperature, descriptions=descriptions)

    # -- one word's snippets: what the app's Inspect tab shows ------------------------------------------
    def snippet_losses(self, rows: Sequence[NewTokenRows], word: str, train: Sequence[Snippet],
                       heldout: Sequence[Snippet], training: DistillationConfig | None = None) -> WordInspection:
        """Per training and held-out snippet of `word`, its loss under each method's rows (see inspection.py):
        the position-weighted means are the trainer's loss over all of them and heldout_metrics' hidden_mse."""
        return inspect_word(self.lm, list(rows), word, train, heldout, training)

    def snippet_from_text(self, word: str | WordSplit, text: str, max_tokens: int = MAX_SNIPPET_LEN) -> Snippet:
        """A training snippet of `word` from text a person wrote (ValueError saying what to fix otherwise)."""
        split = word if isinstance(word, WordSplit) else self.split(word)
        return snippet_from_text(self.lm.tokenizer, split, text, max_tokens=max_tokens)

    def retrain_word(self, split: WordSplit, train: Sequence[Snippet], methods: Sequence[str] = ("tokdist",),
                     training: DistillationConfig | None = None, output_policy: str = "ntp",
                     heldout: Sequence[Snippet] | None = None, callback: Callable[[StepRecord], None] | None = None,
                     cancel: threading.Event | None = None, record_trajectory: bool = False) -> TrainOutcome:
        """Train one word alone on its snippets; its rows equal the ones it gets beside other words (words are
        independent), so `NewTokenRows.with_word_rows` can put them into an earlier run's rows and
        `with_word_history` its loss curve into that run's step records."""
        train = list(train)
        if not train:
            raise ValueError(f"{split.display!r} has no training snippets")
        others = sorted({s.word for s in [*train, *(heldout or [])] if s.word != split.word})
        if others:
            raise ValueError(f"snippets of other words ({', '.join(map(repr, others))}) given for {split.word!r}")
        return self.train([split], train, methods, training, output_policy, callback=callback, cancel=cancel,
                          heldout=heldout, record_trajectory=record_trajectory)

    # -- export -------------------------------------------------------------------------------------
    def save(self, rows: NewTokenRows, out_path: str | Path, reproduce: str | None = None,
             model: tuple | None = None, card: dict | None = None, formats: str | Sequence[str] = ("hf",),
             reuse_slots: str = "none") -> Path:
        """An export folder, whole or absent (an earlier export is replaced whole): the rows alone, a model card
        (model_card(**card)), reproduce.py if given and each of `formats` (export.formats: hf, rows, peft, gguf).
        `model`: the (model, tokenizer) with the words added, if at hand; else with_new_tokens(rows, reuse_slots)."""
        return save_formats(self.lm, rows, out_path, model or self.with_new_tokens(rows, reuse_slots), formats,
                            reproduce, card)

    def save_rows(self, rows: NewTokenRows, folder: str | Path, extra: dict | None = None) -> Path:
        """The new rows alone (safetensors + JSON naming the words and base model); load with load_rows."""
        return save_rows(rows, self.lm, folder, extra=extra)

    def export_model_zip(self, rows: NewTokenRows, zip_path: str | Path) -> Path:
        """A zipped save_pretrained folder of the model and tokenizer with the words added, and its model card."""
        # Private copies of the model; the shared one is untouched.
        return export_model_zip(*self.with_new_tokens(rows), zip_path, card=model_card(self.lm, rows))

    def export_bytes(self, rows: NewTokenRows, formats: str | Sequence[str] = ("hf",)) -> int:
        """An upper bound on what save(rows, ..., formats=formats) writes (ValueError for a format it refuses)."""
        return estimate_export_bytes(self.lm, rows, formats)
