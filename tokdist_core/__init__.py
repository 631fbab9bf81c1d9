"""tokdist-studio core library: add new tokens to a causal LM and learn their embeddings.

    from tokdist_core import TokenDistillation, DistillationConfig

    td = TokenDistillation("smollm2-135m")
    model, tokenizer = td.run(["Schopenhauer"], data="auto", training=DistillationConfig(epochs=8))

The names below are the public face; everything else is an implementation detail. They load on first
use, so `import tokdist_core` (and `tokdist --help`) stays instant: torch is imported only when needed.
"""

from __future__ import annotations

from .lazy import lazy_exports

# public name -> module that defines it
_EXPORTS = {
    "TokenDistillation": "api", "TrainOutcome": "api", "Comparison": "api", "Skipped": "api", "OUTPUT_POLICIES": "api",
    "method_losses": "api",
    "DistillationConfig": "training", "StepRecord": "training", "OutputPolicy": "training",
    "FieldSpec": "training", "config_fields": "training",
    "NewTokenRows": "rows", "Trajectory": "rows",
    "HFDataSource": "contexts", "WordContexts": "contexts", "CorpusError": "contexts", "bundled_available": "contexts",
    "GENSIM_HINT": "contexts", "BundledSource": "contexts", "FileSource": "contexts", "GeneratedSource": "contexts",
    "parse_sources": "contexts",
    "WordSplit": "vocab", "WordError": "vocab",
    "Snippet": "snippet",
    "LoadedModel": "models", "ModelLoadError": "models", "load_model": "models", "DEFAULT_MODEL": "models",
    "BUNDLED_MODELS": "models",
    "METHOD_NAMES": "methods", "REGISTRY": "methods", "Method": "methods", "get_method": "methods",
    "Cancelled": "cancel",
    "JobEstimate": "estimate", "format_seconds": "estimate",
    "ROWS_FILE": "export", "META_FILE": "export", "load_rows": "export", "reproduce_snippet": "export",
    "atomic_path": "export", "parse_hf_spec": "contexts", "Generation": "evaluate",
    "LOWER_IS_BETTER": "evaluate", "snippets_of": "contexts",
    "DomainReport": "report", "domain_report": "report", "report_figure": "report",
    "DocumentSplit": "contexts.documents", "iter_split_documents": "contexts.documents",
    "Discovery": "discovery", "Candidate": "discovery", "Rejection": "discovery", "DiscoveryError": "discovery",
    "FrequencyList": "discovery", "discover_words": "discovery", "candidates_from_tokenizer": "discovery",
    "candidates_from_frequency_list": "discovery", "read_frequency_list": "discovery",
    "ATTENTION_PARTS": "attention", "ORIGINAL_PIECES": "attention",
    "WordInspection": "inspection", "SnippetLoss": "inspection", "with_word_history": "inspection",
    "apply_snippet_edits": "inspection",
    "ExportStore": "export_store", "ExportStoreError": "export_store", "ExportSpaceError": "export_store",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, globals(), _EXPORTS)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])

