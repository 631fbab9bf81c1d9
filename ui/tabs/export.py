"""Export tab (/export): the new rows (safetensors + JSON), the full model as a zip, a reproducing snippet."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from gradio.utils import get_upload_folder

from tokdist_core import META_FILE, REGISTRY, ROWS_FILE, ExportStore, ExportStoreError, reproduce_snippet

from ..components import widgets as W
from ..jobs import HEAVY, Job, answer_when_done
from ..runtime import Runtime, gpu, user_errors
from ..state import SessionState

INTRO = """
### 9 · Export
Take the result home. **New rows** are tiny: one vector per word plus a JSON note of which model and words they
belong to (load them with `tokdist_core.export.load_rows`). The **full model** is a normal Hugging Face folder
(zipped) with the words already added to the tokenizer. The **Python snippet** redoes this run with the library.
"""


@dataclass
class ExportTab:
    method: gr.Dropdown
    include_model: gr.Checkbox
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
ROWS_ONLY_ADVICE = ("Untick 'Also build the full model + tokenizer zip' to export only the new rows: they are tiny "
                    "and always allowed.")


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


def run_export(rt: Runtime, method: str | None, include_model: bool | None, state: SessionState
               ) -> tuple[list[str], str | None, str, dict]:
    method = export_method(state, method)
    rows = state.rows[method]
    td = rt.engine(state.model_name)
    extra = {"training": state.train_config, "contexts": {k: v for k, v in state.context_settings.items() if k != "data"},
             "heldout_metrics": {w: {k: v for k, v in m.items() if not k.startswith("layer_")}
                                 for w, m in (state.metrics or {}).get(method, {}).items()}}
    # Disk at the peak of a full-model export: the unzipped folder plus the zip (never larger than the folder).
    need = 2 * td.export_bytes(rows) if include_model else 0
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
        if include_model:
            td.export_model_zip(rows, building / zip_name)
        out = store.publish(building)  # the whole export appears at once, complete
    except OSError as exc:  # e.g. disk full: say so without the server's paths
        store.discard(building)
        raise write_error(exc) from exc
    except BaseException:
        store.discard(building)
        raise
    files = [str(out / ExportStore.ROWS_DIR / ROWS_FILE), str(out / ExportStore.ROWS_DIR / META_FILE)]
    model_zip = str(out / zip_name) if include_model else None

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
    details = {"method": method, "words": rows.words, "files": [Path(f).name for f in files],
               "model_zip": Path(model_zip).name if model_zip else None, "base_model": td.lm.source}
    return files, model_zip, code, details


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
        include_model = W.Checkbox(value=False, label="Also build the full model + tokenizer zip",
                                    info="About 0.3 GB for SmolLM2-135M; takes a little while. Download it soon: "
                                         "the server keeps exports for a limited time.", scale=2)
        button = gr.Button("Export", variant="primary", elem_id="export-btn", scale=1)
    with gr.Row():
        rows_files = gr.File(label="New rows (safetensors + JSON)", file_count="multiple", interactive=False,
                             elem_id="rows-files")
        model_zip = gr.File(label="Full model + tokenizer (zip)", interactive=False)
    code = gr.Code(language="python", label="Python snippet that reproduces this run", interactive=False)
    details = W.api_details("export")
    return ExportTab(method, include_model, button, rows_files, model_zip, code, details)


def wire(rt: Runtime, tab: ExportTab, state: gr.State):
    @gpu(duration=120)
    def handler(method, include_model, st: SessionState, progress=gr.Progress()):  # noqa: B008 - gradio injects it
        export_method(st, method)  # refuse at once, before waiting in line

        def work(job: Job) -> tuple[list[str], str | None, str, dict]:
            return run_export(rt, method, include_model, st)

        yield from answer_when_done(rt.jobs, st, "an export", work, 4, progress)

    return tab.button.click(user_errors(handler), [tab.method, tab.include_model, state],
                            [tab.rows_files, tab.model_zip, tab.code, tab.details], api_name="export", **HEAVY)
