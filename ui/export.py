"""Export tab (/export): the new rows (safetensors + JSON), the full model as a zip, a reproducing snippet."""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from tokdist_core.export import META_FILE, ROWS_FILE, reproduce_snippet, save_model, save_rows, zip_folder

from .figures import method_label
from .runtime import Runtime, gpu, user_errors
from .state import SessionState

INTRO = """
### 7 · Export
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


EXPORT_ROOT = Path(tempfile.gettempdir()) / "tokdist-exports"
EXPORT_MAX_AGE_S = 30 * 60  # Gradio copies outputs into its own cache, so ours only need to outlive the request


def _fresh_export_dir(method: str) -> Path:
    """A new folder for one export; folders older than EXPORT_MAX_AGE_S are removed (zips are ~0.3 GB)."""
    EXPORT_ROOT.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for old in EXPORT_ROOT.iterdir():
        try:
            if old.is_dir() and now - old.stat().st_mtime > EXPORT_MAX_AGE_S:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass  # another request may be pruning the same folder
    return Path(tempfile.mkdtemp(prefix=f"{method}-", dir=EXPORT_ROOT))


def default_method(state: SessionState) -> str | None:
    """The method with the lowest mean held-out hidden MSE, else the best-known trained one."""
    if state.metrics:
        scored = {m: sum(v["hidden_mse"] for v in per.values()) / len(per) for m, per in state.metrics.items() if per}
        if scored:
            return min(scored, key=scored.get)
    for m in ("tokdist_antp", "tokdist", "ntp"):
        if m in state.rows:
            return m
    return next(iter(state.rows), None)


def run_export(rt: Runtime, method: str | None, include_model: bool | None, state: SessionState
               ) -> tuple[list[str], str | None, str, dict]:
    state.require_rows()
    method = (method or "").strip() or default_method(state)
    if method not in state.rows:
        raise gr.Error(f"{method!r} was not trained in this session; choose one of: {', '.join(state.rows)}.")
    rows = state.rows[method]
    lm = rt.model(state.model_name)
    out = _fresh_export_dir(method)
    extra = {"training": state.train_config, "contexts": {k: v for k, v in state.context_settings.items() if k != "data"},
             "heldout_metrics": {w: {k: v for k, v in m.items() if not k.startswith("layer_")}
                                 for w, m in (state.metrics or {}).get(method, {}).items()}}
    save_rows(rows, lm, out / "rows", extra=extra)
    files = [str(out / "rows" / ROWS_FILE), str(out / "rows" / META_FILE)]

    model_zip = None
    if include_model:
        td = rt.engine(state.model_name)
        model, tokenizer = td.with_new_tokens(rows)  # private copies; the shared model is untouched
        folder = save_model(model, tokenizer, out / f"tokdist-{method}")
        del model, tokenizer
        model_zip = str(zip_folder(folder, out / f"tokdist-{method}-model.zip"))
        shutil.rmtree(folder, ignore_errors=True)  # keep only the zip on disk

    settings = state.context_settings
    data = settings.get("data", "auto")
    if data == "files":  # the uploaded temp paths mean nothing elsewhere: name the files instead
        data = [name.strip() for name in settings.get("label", "").split(",") if name.strip()]
    code = reproduce_snippet(state.model_name or rt.default_model, rows.words, method, state.train_config, data,
                             settings.get("snippet_len", 50), settings.get("snippets_per_token", 25),
                             mid_sentence=state.mid_sentence,
                             output_policy=state.train_config.get("output_policy", "ntp"))
    details = {"method": method, "words": rows.words, "files": [Path(f).name for f in files],
               "model_zip": Path(model_zip).name if model_zip else None, "base_model": lm.source}
    return files, model_zip, code, details


def build(rt: Runtime) -> ExportTab:  # noqa: ARG001
    gr.Markdown(INTRO, elem_classes="td-help")
    with gr.Row():
        method = gr.Dropdown(choices=[], label="Method to export", allow_custom_value=True, scale=2)
        include_model = gr.Checkbox(value=False, label="Also build the full model + tokenizer zip",
                                    info="About 0.5 GB for SmolLM2-135M; takes a little while.", scale=2)
        button = gr.Button("Export", variant="primary", elem_id="export-btn", scale=1)
    with gr.Row():
        rows_files = gr.File(label="New rows (safetensors + JSON)", file_count="multiple", interactive=False,
                             elem_id="rows-files")
        model_zip = gr.File(label="Full model + tokenizer (zip)", interactive=False)
    code = gr.Code(language="python", label="Python snippet that reproduces this run", interactive=False)
    with gr.Accordion("Details (JSON, as returned by the /export API)", open=False):
        details = gr.JSON()
    return ExportTab(method, include_model, button, rows_files, model_zip, code, details)


def method_choices(state: SessionState) -> list[tuple[str, str]]:
    return [(method_label(m), m) for m in state.rows]


def wire(rt: Runtime, tab: ExportTab, state: gr.State):
    @gpu(duration=120)
    def handler(method, include_model, st: SessionState):
        return run_export(rt, method, include_model, st)

    return tab.button.click(user_errors(handler), [tab.method, tab.include_model, state],
                            [tab.rows_files, tab.model_zip, tab.code, tab.details], api_name="export",
                            concurrency_id="gpu")
