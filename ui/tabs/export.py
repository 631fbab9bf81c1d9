"""Export tab (/export): the new rows (safetensors + JSON), the full model as a zip, a reproducing snippet."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from gradio.utils import get_upload_folder

from tokdist_core import META_FILE, REGISTRY, ROWS_FILE, atomic_path, reproduce_snippet

from . import widgets as W
from .jobs import HEAVY, Job, answer_when_done
from .runtime import Runtime, gpu, user_errors
from .state import SessionState

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


# --- where exports live, and how long -----------------------------------------------------------------
# Exports are written straight into Gradio's cache folder (GRADIO_TEMP_DIR, else <tmp>/gradio): Gradio copies a
# returned file into that folder unless it is already inside it (Block.move_resource_to_block_cache), so this
# keeps ONE copy per export instead of ours + Gradio's. Gradio then also deletes them (delete_cache, shutdown).
# Layout: <cache>/tokdist-exports/<32 hex>/{.tokdist-export.json, rows/new_rows.*, tokdist-<method>-model.zip}.
# An export is built in .building-<32 hex>/ (inside it every file is written under a .*.partial name and renamed,
# the model is saved into .unzipped-*/ and zipped) and the folder is renamed to <32 hex> when complete: a kill at
# any moment leaves no file under a final name, only dot-named temporaries that clean_stale_exports() removes.
EXPORT_DIRNAME = "tokdist-exports"
MARKER = ".tokdist-export.json"  # owner (host, pid, process start), creation time, state, reserved bytes
LOCK_FILE = ".lock"
LEGACY_ROOT = Path(tempfile.gettempdir()) / "tokdist-exports"  # before: Gradio copied each export out of it
EXPORT_MIN_KEEP_S = 10 * 60  # a finished export is never evicted for space before this (it may be downloading)
EXPORT_MAX_AGE_S = 2 * 3600  # anything older is removed whoever made it (Gradio's own delete_cache is ~1-2 h)
ORPHAN_GRACE_S = 60  # an export folder still without its marker after this was left by a crash
BUILDING_PREFIX = ".building-"
_EXPORT_DIR_RE = re.compile(r"^(\.building-)?[0-9a-f]{32}$")
_GRADIO_HASH_DIR_RE = re.compile(r"^[0-9a-f]{64}$")
_GRADIO_COPY_RE = re.compile(r"^\.?(tokdist-.+-model\.zip|new_rows\.safetensors|new_rows\.json)")
_thread_lock = threading.Lock()


def export_root() -> Path:
    """Folder of this app's exports: inside Gradio's cache folder, so Gradio serves them without a copy."""
    return Path(get_upload_folder()) / EXPORT_DIRNAME


def _process_start(pid: int) -> str | None:
    """Start time of `pid` (Linux /proc, in clock ticks): with the pid it tells a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _me() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "start": _process_start(os.getpid())}


def _owner_alive(marker: dict) -> bool | None:
    """True/False for a process on this host; None when it ran on another host (only age can tell)."""
    if marker.get("host") != socket.gethostname():
        return None
    pid = marker.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    except OSError:
        return None
    start = marker.get("start")
    return not (start is not None and _process_start(pid) not in (None, start))


def _read_marker(folder: Path) -> dict | None:
    try:
        data = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_marker(folder: Path, marker: dict) -> None:
    with atomic_path(folder / MARKER) as tmp:
        tmp.write_text(json.dumps(marker), encoding="utf-8")


def _tree_bytes(folder: Path) -> int:
    total = 0
    for dirpath, _, names in os.walk(folder):
        for name in names:
            with suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def _has_payload(folder: Path) -> bool:
    """Whether a finished export still holds a file to serve (Gradio's delete_cache may have removed them)."""
    return any(p.is_file() for p in folder.rglob("*") if p.name != MARKER)


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    """One reservation/clean-up at a time: across threads, and (flock, where available) across processes."""
    root.mkdir(parents=True, exist_ok=True)
    with _thread_lock, open(root / LOCK_FILE, "a") as handle:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: threads of this process only
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass
class _Export:
    path: Path
    marker: dict | None
    created: float

    @property
    def building(self) -> bool:
        return bool(self.marker) and self.marker.get("state") == "building"

    @property
    def finished(self) -> float:
        try:
            return float((self.marker or {}).get("finished", self.created))
        except (TypeError, ValueError):
            return self.created


def _exports(root: Path) -> list[_Export]:
    out = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return out
    for entry in entries:
        if not _EXPORT_DIR_RE.match(entry.name) or not entry.is_dir(follow_symlinks=False):
            continue
        marker = _read_marker(Path(entry.path))
        try:
            created = float(marker["created"]) if marker else entry.stat(follow_symlinks=False).st_mtime
        except (KeyError, TypeError, ValueError, OSError):
            created = 0.0
        out.append(_Export(Path(entry.path), marker, created))
    return sorted(out, key=lambda e: e.created)


def _stale(export: _Export, now: float) -> bool:
    """Clearly ours (a marked export folder) and of no use: its process is gone, it is too old, or emptied."""
    age = now - export.created
    if export.marker is None:
        return age > ORPHAN_GRACE_S  # the marker is written right after mkdir: only a crash leaves none
    if age > EXPORT_MAX_AGE_S or _owner_alive(export.marker) is False:
        return True
    return not export.building and now - export.finished > EXPORT_MIN_KEEP_S and not _has_payload(export.path)


def _remove(path: Path) -> bool:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
        return True
    except FileNotFoundError:
        return False  # another process removed it first
    except OSError:
        return False


def _prune(root: Path, now: float) -> int:
    return sum(_remove(e.path) for e in _exports(root) if _stale(e, now))


def _entries(folder: Path) -> list[os.DirEntry]:
    """The folder's entries, or none when it is missing or unreadable."""
    try:
        return list(os.scandir(folder))
    except OSError:
        return []


def _clean_legacy(now: float) -> int:
    """Folders of the earlier layout (<tmp>/tokdist-exports/<method>-xxxx): only needed during their request."""
    removed = 0
    for entry in _entries(LEGACY_ROOT):
        try:
            if now - entry.stat(follow_symlinks=False).st_mtime > EXPORT_MIN_KEEP_S:
                removed += _remove(Path(entry.path))
        except OSError:
            pass
    return removed


def _clean_gradio_copies(cache: Path, now: float) -> int:
    """Gradio's copies of earlier exports (<cache>/<sha256>/tokdist-*-model.zip, new_rows.*, and its .staging
    files) that a killed process never deleted; older than EXPORT_MAX_AGE_S, so no live server still serves them
    (Gradio's own delete_cache removes them after 1-2 h)."""
    removed = 0
    for entry in _entries(cache):
        if not _GRADIO_HASH_DIR_RE.match(entry.name) or not entry.is_dir(follow_symlinks=False):
            continue
        try:
            here = 0
            for f in list(os.scandir(entry.path)):
                if (_GRADIO_COPY_RE.match(f.name) and f.is_file(follow_symlinks=False)
                        and now - f.stat(follow_symlinks=False).st_mtime > EXPORT_MAX_AGE_S):
                    here += _remove(Path(f.path))
            if here and not os.listdir(entry.path):
                os.rmdir(entry.path)
            removed += here
        except OSError:
            pass
    return removed


def clean_stale_exports() -> int:
    """Remove what earlier app processes left of their exports; call once at start-up (build_app). Safe to call
    again any time, also while other app processes share the temp dir. Returns how many entries were removed.

    Removed: export folders (under `export_root()`) whose owning process on this host is gone (killed mid-export:
    its dot-named temporaries, unzipped model folder and partial zip; or exited: what Gradio left), folders older
    than EXPORT_MAX_AGE_S or emptied by Gradio's delete_cache, crash leftovers without a marker; folders of the
    earlier <tmp>/tokdist-exports layout older than EXPORT_MIN_KEEP_S; Gradio's cache copies of earlier exports
    older than EXPORT_MAX_AGE_S. Never touched: exports of live processes that are young enough, anything else.
    """
    root, now = export_root(), time.time()
    removed = _clean_legacy(now) + _clean_gradio_copies(root.parent, now)
    if root.is_dir():
        with _locked(root):
            removed += _prune(root, now)
    return removed


def _usage(exports: list[_Export]) -> int:
    """Bytes the exports take on disk now; an export still being built counts at least what it reserved."""
    total = 0
    for e in exports:
        size = _tree_bytes(e.path)
        if e.building:
            size = max(size, int(e.marker.get("reserved", 0) or 0))
        total += size
    return total


def _fmt(n: int) -> str:
    return f"{n / 1024**3:.1f} GiB" if n >= 1024**3 else f"{max(n, 0) / 1024**2:.0f} MiB"


def _space_error(need: int, free: int, cap: int) -> gr.Error:
    what = (f"building the full model zip needs about {_fmt(need)} for a moment (the model is saved unzipped, "
            f"then zipped: up to {_fmt(need // 2)} each)")
    tail = ("Untick 'Also build the full model + tokenizer zip' to export only the new rows: they are tiny and "
            "always allowed.")
    if need > cap:
        return gr.Error(f"The server's export space is too small for the full model: {what}, and this server "
                        f"allows {_fmt(cap)} for exports. {tail}")
    return gr.Error(f"The server's export space is full: {what}, and only {_fmt(free)} of the {_fmt(cap)} set "
                    f"aside for exports is free right now (recent exports are kept a few minutes for their "
                    f"downloads). {tail} Or try the zip again in a few minutes.")


def _write_error(exc: OSError) -> gr.Error:
    return gr.Error(f"The server could not write the export ({exc.strerror or type(exc).__name__}). "
                    "Try again, or export only the new rows.")


def _reserve_export_dir(need: int, cap: int) -> Path:
    """A new (.building-) export folder holding `need` bytes of the cap. Clean-up first; then the oldest finished
    exports older than EXPORT_MIN_KEEP_S are evicted while the cap would be exceeded; else a gr.Error.
    need=0 (rows only, a few KB) is always allowed."""
    root, now = export_root(), time.time()
    with _locked(root):
        _prune(root, now)
        if need:
            exports = _exports(root)
            used = _usage(exports)
            evictable = sorted((e for e in exports if not e.building and now - e.finished > EXPORT_MIN_KEEP_S),
                               key=lambda e: e.finished)
            while used + need > cap and evictable:
                victim = evictable.pop(0)
                size = _tree_bytes(victim.path)
                if _remove(victim.path):
                    used -= size
            if used + need > cap:
                raise _space_error(need, cap - used, cap)
        while True:
            out = root / f"{BUILDING_PREFIX}{secrets.token_hex(16)}"  # unguessable: Gradio serves its cache by path
            try:
                out.mkdir()
                break
            except FileExistsError:
                continue
        _write_marker(out, {**_me(), "created": now, "state": "building", "reserved": need})
    return out


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
    try:
        building = _reserve_export_dir(need, rt.max_export_bytes)
    except OSError as exc:
        raise _write_error(exc) from exc
    zip_name = f"tokdist-{method}-model.zip"
    try:
        td.save_rows(rows, building / "rows", extra=extra)
        if include_model:
            td.export_model_zip(rows, building / zip_name)
        _write_marker(building, {**(_read_marker(building) or _me()), "state": "done", "reserved": 0,
                                 "finished": time.time()})
        out = building.with_name(building.name.removeprefix(BUILDING_PREFIX))
        os.replace(building, out)  # the whole export appears at once, complete
    except OSError as exc:  # e.g. disk full: say so without the server's paths
        shutil.rmtree(building, ignore_errors=True)
        raise _write_error(exc) from exc
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    files = [str(out / "rows" / ROWS_FILE), str(out / "rows" / META_FILE)]
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
                             unapplied_edits=_not_in(state.context_settings.get("snippet_edits", []), trained_edits))
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
