"""A model card (README.md with Hub metadata) for every exported model folder: what was added, how, and how well."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..foundations.models import BUNDLED_MODELS, LoadedModel
from ..foundations.rows import NewTokenRows

TAGS = ["tokdist", "token-distillation", "vocabulary-adaptation", "new-tokens"]
SHOWN_WORDS = 200  # new tokens listed in the card's table (all of them are in new_rows.json)


def base_model_facts(lm: LoadedModel) -> dict[str, str]:
    """{"base_model", "license"} where known: the bundled models' own, a hub id, or a local folder's card."""
    kind, _, where = lm.source.partition(":")
    if kind == "bundled" and where in BUNDLED_MODELS:
        spec = BUNDLED_MODELS[where]
        return {k: v for k, v in (("base_model", spec.hub_id), ("license", spec.license)) if v}
    if kind == "hub":
        return {"base_model": where, **_card_facts(_cached_readme(where))}
    if kind == "local":
        return _card_facts(Path(where) / "README.md")
    return {}


def _cached_readme(repo_id: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "README.md")  # never a download: an export works offline
    return Path(found) if isinstance(found, str) else None


def _card_facts(readme: Path | None) -> dict[str, str]:
    """The license (and base_model) a model card's metadata states, if the card is there and parses."""
    from huggingface_hub import ModelCard

    if readme is None or not readme.is_file():
        return {}
    try:
        data = ModelCard.load(readme).data.to_dict()
    except Exception:  # a README without valid metadata states nothing
        return {}
    facts = {k: data[k] for k in ("license", "base_model") if isinstance(data.get(k), str)}
    return facts


def _cell(text: str) -> str:
    """Literal text in a table cell: HTML-escaped in <code> (words are user input: backticks, pipes, markup)."""
    return "<code>" + html.escape(text, quote=False).replace("|", "&#124;").replace("\n", " ") + "</code>"


def model_card(lm: LoadedModel, rows: NewTokenRows, *, settings: dict[str, Any] | None = None,
               report: dict[str, Any] | None = None, command: str | None = None, kind: str = "hf",
               slots: dict[str, dict] | None = None, formats: Sequence[str] = ()) -> str:
    """README.md text: Hub metadata (base_model, library_name, tags, license when known), the new tokens and
    their pieces, the method and its settings, the domain report's figures when there is one, how to load it
    (`kind` "hf": a model folder, "rows": the rows alone, "peft": a TrainableTokens adapter) and the command
    that reproduces it."""
    from huggingface_hub import ModelCard, ModelCardData

    facts = base_model_facts(lm)
    data = ModelCardData(library_name="peft" if kind == "peft" else "transformers", tags=[*TAGS, rows.method], **facts)
    tok = lm.tokenizer
    pieces = [[tok.decode([i]) for i in tok(rows.descriptions.get(w, w), add_special_tokens=False).input_ids]
              for w in rows.words[:SHOWN_WORDS]]  # a special token was read as its description
    lines = [f"# {facts.get('base_model', lm.name)} with {len(rows.words)} new token(s)", "",
             f"New tokens added to `{lm.source}` with tokdist-studio; their embedding rows come from the "
             f"`{rows.method}` method ({'shared input and output rows' if lm.tied else 'input and output rows'}).",
             "", "| new token | was read as |", "|---|---|"]
    lines += [f"| {_cell(repr(w))} | {_cell(' '.join(repr(p) for p in ps))} |"
              for w, ps in zip(rows.words, pieces)]
    if len(rows.words) > SHOWN_WORDS:
        lines.append(f"| ... | {len(rows.words) - SHOWN_WORDS} more in new_rows.json |")
    if slots:
        lines += ["", "## Reused slots", "", f"{len(slots)} new token(s) took ids the base vocabulary already had, "
                  "so the vocabulary size and every tensor shape are the base's:", "",
                  "| new token | id | was |", "|---|---|---|"]
        lines += [f"| {_cell(repr(w))} | {s['id']} | {_cell(repr(s['was']))} |" for w, s in list(slots.items())[:SHOWN_WORDS]]
    if settings:
        lines += ["", "## Settings", "", *[f"- {_cell(str(k))}: {_cell(str(v))}" for k, v in settings.items()]]
    if report:
        lines += ["", "## Held-out report", "",
                  f"{report['documents']} held-out documents: tokens {report['tokens_original']:,} -> "
                  f"{report['tokens_adapted']:,} ({report['tokens_saved_pct']:.2f} % saved).", "",
                  "| model | bits per byte | change |", "|---|---|---|",
                  f"| original tokenization | {report['original']['bits_per_byte']:.4f} | |"]
        lines += [f"| {_cell(name)} | {m['bits_per_byte']:.4f} | "
                  + ("" if m.get("bits_per_byte_change_pct") is None else f"{m['bits_per_byte_change_pct']:+.2f} %")
                  + " |" for name, m in report["methods"].items()]
    loading = {"peft": lambda: _peft_loading(lm, facts), "hf": _hf_loading, "rows": _rows_loading}[kind]()
    lines += ["", "## Loading", "", *loading]
    if "peft" in formats:
        lines += ["", "`peft/` holds a TrainableTokens adapter of the new rows alone; its README.md says how to load it."]
    if "gguf" in formats:
        lines += ["", "`model.gguf` is for llama.cpp: `llama-cli -m model.gguf` or `llama-server -m model.gguf`."]
    if command:
        lines += ["", "## Reproduce", "", "```bash", command, "```"]
    # Built as text, not through a Jinja template: the words are user input and must stay literal.
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n"))


def _rows_loading() -> list[str]:
    return ["The new rows alone (new_rows.safetensors, new_rows.json); with the base model loaded in tokdist-studio:",
            "", "```python", "from tokdist_core import TokenDistillation, load_rows", "",
            'rows = load_rows("path/to/this/folder")', "model, tokenizer = TokenDistillation(\"<base>\").with_new_tokens(rows)",
            "```"]


def _hf_loading() -> list[str]:
    return ["```python", "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
            'model = AutoModelForCausalLM.from_pretrained("path/to/this/folder")',
            'tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")', "```"]


def _peft_loading(lm: LoadedModel, facts: dict[str, str]) -> list[str]:
    base = facts.get("base_model", "<the base model>")
    lines = ["A peft TrainableTokens adapter: only the new rows, on the original base resized to this tokenizer.", "",
             "```python", "from peft import PeftModel", "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
             'tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")',
             f'base = AutoModelForCausalLM.from_pretrained("{base}")', "base.resize_token_embeddings(len(tokenizer))",
             'model = PeftModel.from_pretrained(base, "path/to/this/folder", is_trainable=True)  # only the new rows train',
             "merged = model.merge_and_unload()  # the same weights as the hf export", "```"]
    if lm.tied:
        lines += ["", "The base ties its input and output embeddings; peft does not tie the adapter to the output layer "
                  "(peft #2777), so until `merge_and_unload()` the new tokens are read with the distilled rows but "
                  "predicted with the resized base's rows. Merge before generating."]
    return lines
