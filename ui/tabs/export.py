"""Export tab (/export): the new rows (safetensors + JSON), a zip of the chosen formats (hf, peft, gguf), a
reproducing snippet."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from gradio.utils import get_upload_folder

from tokdist_core import (
    META_FILE,
    REGISTRY,
    ROWS_FILE,
    ExportStore,
    ExportStoreError,
    NewTokenRows,
    TokenDistillation,
    reproduce_snippet,
    zip_folder,
)

from ..components import widgets as W
from ..jobs import HEAVY, Job, answer_when_done
from ..runtime import Runtime, gpu, user_errors
from ..state import SessionState

INTRO = """
### 9 · Export
Take the result home. **New rows** are tiny: one vector per word plus a JSON note of which model and words they
belong to (load them with `tokdist_core.load_rows`); they are always exported. The **zip** holds the formats you
tick, with the new rows, a model card (README.md) and `reproduce.py`:

- **hf**: the full model as a Hugging Face folder with the words added to the tokenizer
  (`AutoModelForCausalLM.from_pretrained(folder)`; about 0.5 GB for SmolLM2-135M).
- **peft**: `peft/`, a TrainableTokens adapter of a few kilobytes: only the new rows, with the tokenizer. Load the
  original base, `base.resize_token_embeddings(len(tokenizer))`, then `PeftModel.from_pretrained(base, "peft")`;
  `merge_and_unload()` before generating (its card says why).
- **gguf**: `model.gguf` for llama.cpp (`llama-cli -m model.gguf`, `llama-server`): the bundled models' own GGUF
  file with the new tokens (about 0.1 GB for SmolLM2-135M; other models: convert the hf folder with llama.cpp).

The **Python snippet** redoes this run with the library.
"""


@dataclass
class ExportTab:
    method: gr.Dropdown
    include_model: gr.Checkbox
    formats: gr.CheckboxGroup
    button: gr.Button
    rows_files: gr.File
    model_zip: gr.File
    code: gr.Code
    details: gr.JSON


# --- where exports live ----------------------------------------------------------------------------------
# Exports are written straight into Gradio's cache folder (GRADIO_TEMP_DIR, else <tmp>/gradio): Gradio copies a
# returned file into that folder unless it is already inside it (Block.move_resource_to_block_cache), so this
# keeps ONE copy per export instead of ours + Gradio's. Gradio then also deletes them (delete_cache, shutdown).
# The folder's layout, locks, markers, cap and clean-up are the core's ExportStore.
EXPORT_DIRNAME = "tokdist-exports"
LEGACY_ROOT = Path(tempfile.gettempdir()) / "tokdist-exports"  # before: Gradio copied each export out of it
ZIP_LABEL = "Also build a zip of the model"
ROWS_ONLY_ADVICE = f"Untick '{ZIP_LABEL}' to export only the new rows: they are tiny and always allowed."
# What the zip can hold (the core's export formats; `rows` is always exported), with what each is for.
ZIP_FORMATS = {"hf": "hf · full model (transformers)", "peft": "peft · adapter of the new rows (kilobytes)",
               "gguf": "gguf · llama.cpp (bundled models)"}
DEFAULT_ZIP_FORMATS = ("hf",)  # a zip with no format ticked: the full model, the zip this tab built before formats
ZIP_CONTENTS = ".unzipped"  # the folder td.save writes inside the export's building folder: hidden, zipped, removed


def export_store() -> ExportStore:
    """This app's exports: inside Gradio's cache folder, so Gradio serves them without a copy."""
    return ExportStore(Path(get_upload_folder()) / EXPORT_DIRNAME)


def clean_stale_exports() -> int:
    """Remove what earlier app processes left of their exports, Gradio's copies of them and the earlier layout's
    folders (see ExportStore.clean_stale); call once at start-up (build_app). -> how many entries were removed."""
    return export_store().clean_stale(copies_in=Path(get_upload_folder()), legacy_root=LEGACY_ROOT)


def write_error(exc: OSError) -> gr.Error:
    return gr.Error(f"The server could not write the export ({exc.strerror or type(exc).__name__}). "
                    "Try again, or export only the new rows.")


def default_method(state: SessionState) -> str | None:
    """The method with the lowest mean held-out hidden MSE, else the last trained one in the registry's order."""
    if state.metrics:
        scored = {m: sum(v["hidden_mse"] for v in per.values()) / len(per) for m, per in state.metrics.items() if per}
        if scored:
            return min(scored, key=scored.get)
    ranked = sorted(state.rows, key=lambda m: (REGISTRY[m].trains, REGISTRY[m].order) if m in REGISTRY else (False, -1))
    return ranked[-1] if ranked else None


def export_method(state: SessionState, method: object) -> str:
    """The trained method to export (the best one when none is named), or a message saying what to do."""
    state.require_rows()
    if method is not None and not isinstance(method, str):
        raise gr.Error(f"The method must be a method name, got {method!r}.")
    method = (method or "").strip() or default_method(state)
    if method not in state.rows:
        raise gr.Error(f"{method!r} was not trained in this session; choose one of: {', '.join(state.rows)}.")
    return method


def zip_formats(include_model: object, formats: object) -> tuple[str, ...]:
    """The formats the zip holds, in a fixed order: () when no zip is wanted, DEFAULT_ZIP_FORMATS when none is
    ticked (an API call that leaves them out gets the zip it got before there were formats). Bad values: a gr.Error."""
    if include_model is not None and not isinstance(include_model, bool):
        raise gr.Error(f"'{ZIP_LABEL}' must be true or false, got {include_model!r}.")
    if not include_model:
        return ()
    chosen = [formats] if isinstance(formats, str) else formats
    if not isinstance(chosen, (list, tuple)):
        raise gr.Error(f"The zip's formats must be a list of {', '.join(ZIP_FORMATS)}, got {formats!r}.")
    unknown = [f for f in chosen if f not in ZIP_FORMATS]
    if unknown:
        raise gr.Error(f"Unknown zip format(s) {', '.join(map(repr, unknown))}; choose from {', '.join(ZIP_FORMATS)} "
                       "(the new rows are always exported).")
    return tuple(f for f in ZIP_FORMATS if f in chosen) or DEFAULT_ZIP_FORMATS


def zip_bytes(td: TokenDistillation, rows: NewTokenRows, formats: Sequence[str]) -> int:
    """Disk at the peak of building the zip: the unzipped folder plus the zip (never larger than the folder);
    a gr.Error with the core's reason when the model cannot take a format (gguf needs a GGUF base)."""
    if not formats:
        return 0
    try:
        return 2 * td.export_bytes(rows, formats)
    except ValueError as exc:
        raise gr.Error(f"Cannot export {' + '.join(formats)}: {exc}. Nothing was exported.") from exc


def build_zip(td: TokenDistillation, rows: NewTokenRows, formats: Sequence[str], zip_path: Path, reproduce: str,
              card: dict) -> None:
    """td.save's folder of `formats`, zipped to `zip_path` (members at the zip's root, as a Hugging Face folder)."""
    contents = zip_path.parent / ZIP_CONTENTS
    try:
        td.save(rows, contents, reproduce=reproduce, card=card, formats=formats)
        zip_folder(contents, zip_path)  # level 1, under a temporary name until whole
    finally:
        shutil.rmtree(contents, ignore_errors=True)


def run_export(rt: Runtime, method: str | None, include_model: bool | None, state: SessionState,
               formats: Sequence[str] | None = ()) -> tuple[list[str], str | None, str, dict]:
    method = export_method(state, method)
    formats = zip_formats(include_model, formats)
    rows = state.rows[method]
    td = rt.engine(state.model_name)
    code, settings = reproduce_code(rt, state, method, rows)
    need = zip_bytes(td, rows, formats)  # refuses a format the model cannot take before anything is reserved
    extra = {"training": state.train_config, "contexts": {k: v for k, v in state.context_settings.items() if k != "data"},
             "heldout_metrics": {w: {k: v for k, v in m.items() if not k.startswith("layer_")}
                                 for w, m in (state.metrics or {}).get(method, {}).items()}}
    store = export_store()
    try:
        building = store.reserve(need, rt.max_export_bytes, advice=ROWS_ONLY_ADVICE)
    except ExportStoreError as exc:
        raise gr.Error(str(exc)) from exc
    except OSError as exc:
        raise write_error(exc) from exc
    zip_name = ExportStore.model_zip_name(method)
    try:
        td.save_rows(rows, building / ExportStore.ROWS_DIR, extra=extra)
        if formats:
            build_zip(td, rows, formats, building / zip_name, code, {"settings": settings})
        out = store.publish(building)  # the whole export appears at once, complete
    except OSError as exc:  # e.g. disk full: say so without the server's paths
        store.discard(building)
        raise write_error(exc) from exc
    except BaseException:
        store.discard(building)
        raise
    files = [str(out / ExportStore.ROWS_DIR / ROWS_FILE), str(out / ExportStore.ROWS_DIR / META_FILE)]
    model_zip = str(out / zip_name) if formats else None
    details = {"method": method, "words": rows.words, "files": [Path(f).name for f in files],
               "model_zip": Path(model_zip).name if model_zip else None, "zip_formats": list(formats),
               "base_model": td.lm.source}
    return files, model_zip, code, details


def reproduce_code(rt: Runtime, state: SessionState, method: str, rows: NewTokenRows) -> tuple[str, dict]:
    """The Python snippet that redoes the run behind `rows`, and its settings for the model card."""
    # The settings that produced these rows, recorded when the run started.
    run = state.train_config
    settings = run.get("contexts", state.context_settings)
    data = settings.get("data", "auto")
    trained_edits = settings.get("snippet_edits", [])  # the Inspect tab's snippets that these rows learned from
    if data == "files":  # the uploaded temp paths mean nothing elsewhere: name the files instead
        data = [name.strip() for name in settings.get("label", "").split(",") if name.strip()]
    code = reproduce_snippet(run.get("model") or state.model_name or rt.default_model, rows.words, method, run, data,
                             settings.get("snippet_len", 50), settings.get("snippets_per_token", 25),
                             mid_sentence=run.get("mid_sentence", state.mid_sentence),
                             output_policy=run.get("output_policy", "ntp"), snippet_edits=trained_edits,
                             heldout_per_token=settings.get("heldout_per_token", 0),
                             contexts_seed=settings.get("seed"),
                             unapplied_edits=_not_in(state.context_settings.get("snippet_edits", []), trained_edits),
                             descriptions=rows.descriptions)
    card_settings = {"method": method, "data": data, "snippets_per_token": settings.get("snippets_per_token", 25),
                     "snippet_len": settings.get("snippet_len", 50),
                     **{k: v for k, v in run.items() if k not in ("contexts", "methods", "method_losses", "model", "words")}}
    if method in run.get("method_losses", {}):
        card_settings["losses"] = run["method_losses"][method]
    return code, card_settings


def _not_in(edits: list, trained: list) -> list:
    """The snippet edits made since the rows were trained (a multiset difference: edits may repeat)."""
    left, out = list(trained), []
    for edit in edits:
        if edit in left:
            left.remove(edit)
        else:
            out.append(edit)
    return out


def build(rt: Runtime) -> ExportTab:  # noqa: ARG001
    gr.Markdown(INTRO, elem_classes="td-help")
    with gr.Row():
        method = gr.Dropdown(choices=[], label="Method to export", allow_custom_value=True, scale=2)
        include_model = W.Checkbox(value=False, label=ZIP_LABEL, elem_id="export-zip",
                                    info="In the formats ticked below (hf when none is). hf is about 0.3 GB zipped for "
                                         "SmolLM2-135M and takes a little while. Download it soon: the server keeps "
                                         "exports for a limited time.", scale=2)
        button = gr.Button("Export", variant="primary", elem_id="export-btn", scale=1)
    formats = W.CheckboxGroup(choices=[(label, name) for name, label in ZIP_FORMATS.items()],
                              value=[], label="Formats in the zip", elem_id="export-formats",
                              info="Ticking one ticks the zip above. The new rows are always exported.")
    with gr.Row():
        rows_files = gr.File(label="New rows (safetensors + JSON)", file_count="multiple", interactive=False,
                             elem_id="rows-files")
        model_zip = gr.File(label="Zip of the formats ticked", interactive=False, elem_id="model-zip")
    code = gr.Code(language="python", label="Python snippet that reproduces this run", interactive=False)
    details = W.api_details("export")
    return ExportTab(method, include_model, formats, button, rows_files, model_zip, code, details)


def wire(rt: Runtime, tab: ExportTab, state: gr.State):
    @gpu(duration=120)
    def handler(method, include_model, st: SessionState, formats=(),
                progress=gr.Progress()):  # noqa: B008 - gradio injects it
        export_method(st, method)  # refuse at once, before waiting in line
        zip_formats(include_model, formats)

        def work(job: Job) -> tuple[list[str], str | None, str, dict]:
            return run_export(rt, method, include_model, st, formats)

        yield from answer_when_done(rt.jobs, st, "an export", work, 4, progress)

    # The page keeps the two in step (a zip <=> a format ticked), so what it shows is what it builds; the API's
    # callers get DEFAULT_ZIP_FORMATS for a zip without formats instead.
    page_only = {"api_visibility": "private", "show_progress": "hidden", "queue": False}
    tab.formats.input(lambda chosen: bool(chosen), [tab.formats], [tab.include_model], **page_only)
    tab.include_model.input(lambda wanted, chosen: (chosen or list(DEFAULT_ZIP_FORMATS)) if wanted else [],
                            [tab.include_model, tab.formats], [tab.formats], **page_only)
    return tab.button.click(user_errors(handler), [tab.method, tab.include_model, state, tab.formats],
                            [tab.rows_files, tab.model_zip, tab.code, tab.details], api_name="export", **HEAVY)
