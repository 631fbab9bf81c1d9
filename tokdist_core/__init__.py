"""tokdist-studio core library: add new tokens to a causal LM and learn their embeddings.

    from tokdist_core import TokenDistillation, DistillationConfig

    td = TokenDistillation("smollm2-135m")
    model, tokenizer = td.run(["Schopenhauer"], data="auto", training=DistillationConfig(epochs=8))

The names below are the public face; everything else is an implementation detail. They load on first
use, so `import tokdist_core` (and `tokdist --help`) stays instant: torch is imported only when needed.
"""

from __future__ import annotations

from .foundations.lazy import lazy_exports

# public name -> module that defines it
_EXPORTS = {
    "TokenDistillation": "api", "method_losses": "api",
    "TrainOutcome": "methods.runner", "Comparison": "results", "Skipped": "results",
    "DistillationConfig": "training", "StepRecord": "training", "OutputPolicy": "training",
    "OUTPUT_POLICIES": "training", "FieldSpec": "training", "config_fields": "training",
    "NewTokenRows": "foundations.rows", "Trajectory": "foundations.rows",
    "HFDataSource": "contexts", "WordContexts": "contexts", "CorpusError": "contexts", "bundled_available": "contexts",
    "GENSIM_HINT": "contexts", "BundledSource": "contexts", "FileSource": "contexts", "GeneratedSource": "contexts",
    "parse_sources": "contexts", "parse_hf_spec": "contexts", "snippets_of": "contexts",
    "DocumentSplit": "contexts.documents", "iter_split_documents": "contexts.documents",
    "WordSplit": "foundations.vocab", "WordError": "foundations.vocab",
    "Snippet": "foundations.snippet",
    "LoadedModel": "foundations.models", "ModelLoadError": "foundations.models", "load_model": "foundations.models",
    "BUNDLED_MODELS": "foundations.models", "DEFAULT_MODEL": "foundations.limits",
    "Cancelled": "foundations.cancel", "atomic_path": "foundations.files",
    "METHOD_NAMES": "methods", "REGISTRY": "methods", "Method": "methods", "get_method": "methods",
    "JobEstimate": "estimate", "format_seconds": "estimate",
    "ROWS_FILE": "export", "META_FILE": "export", "load_rows": "export", "reproduce_snippet": "export",
    "zip_folder": "export",
    "Generation": "evaluation.views", "LOWER_IS_BETTER": "evaluation.metrics",
    "DomainReport": "evaluation.report", "domain_report": "evaluation.report", "report_figure": "evaluation.report",
    "ATTENTION_PARTS": "evaluation.attention", "ORIGINAL_PIECES": "evaluation.attention",
    "WordInspection": "evaluation.inspection", "SnippetLoss": "evaluation.inspection",
    "with_word_history": "evaluation.inspection", "apply_snippet_edits": "evaluation.inspection",
    "Discovery": "discovery", "Candidate": "discovery", "Rejection": "discovery", "DiscoveryError": "discovery",
    "FrequencyList": "discovery", "discover_words": "discovery", "candidates_from_tokenizer": "discovery",
    "candidates_from_frequency_list": "discovery", "read_frequency_list": "discovery",
    "ExportStore": "export.store", "ExportStoreError": "export.store", "ExportSpaceError": "export.store",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, globals(), _EXPORTS)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])

