"""A folder of exports on a server's disk: one sub-folder per export, built under a hidden name and renamed when
complete, a marker naming the process that owns it, a size cap that evicts old exports, and the clean-up of what
killed processes left behind. File management only: the caller (the app, a command line) passes its paths in.

Layout: <root>/<32 hex>/{.tokdist-export.json, rows/new_rows.*, tokdist-<method>-model.zip}. An export is built in
<root>/.building-<32 hex>/ (inside it every file is written under a .*.partial name and renamed, the model is saved
into .unzipped-*/ and zipped) and the folder is renamed to <32 hex> when complete: a kill at any moment leaves no file
under a final name, only dot-named temporaries that `ExportStore.clean_stale()` removes.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from ..foundations.files import atomic_path

MARKER = ".tokdist-export.json"  # owner (host, pid, process start), creation time, state, reserved bytes
LOCK_FILE = ".lock"
EXPORT_MIN_KEEP_S = 10 * 60  # a finished export is never evicted for space before this (it may be downloading)
EXPORT_MAX_AGE_S = 2 * 3600  # anything older is removed whoever made it (Gradio's own delete_cache is ~1-2 h)
ORPHAN_GRACE_S = 60  # an export folder still without its marker after this was left by a crash
BUILDING_PREFIX = ".building-"
_EXPORT_DIR_RE = re.compile(r"^(\.building-)?[0-9a-f]{32}$")
# A web server's cache may hold copies of exports in <sha256>/ folders (Gradio's does, with .staging names).
_CACHE_HASH_DIR_RE = re.compile(r"^[0-9a-f]{64}$")
_CACHE_COPY_RE = re.compile(r"^\.?(tokdist-.+-model\.zip|new_rows\.safetensors|new_rows\.json)")
_thread_lock = threading.Lock()  # one per process: every ExportStore of any root shares it


class ExportStoreError(ValueError):
    """A refusal whose message is fit for the user (it names no server path)."""


class ExportSpaceError(ExportStoreError):
    """The export would not fit under the cap; `need`, `free` and `cap` are bytes."""

    def __init__(self, message: str, need: int, free: int, cap: int) -> None:
        super().__init__(message)
        self.need, self.free, self.cap = need, free, cap


def process_start(pid: int) -> str | None:
    """Start time of `pid` (Linux /proc, in clock ticks): with the pid it tells a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def current_owner() -> dict:
    """This process as a marker names its owner: host, pid and process start."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "start": process_start(os.getpid())}


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
    return not (start is not None and process_start(pid) not in (None, start))


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
    for entry in _entries(root):
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
    except OSError:  # FileNotFoundError included: another process removed it first
        return False


def _prune(root: Path, now: float) -> int:
    return sum(_remove(e.path) for e in _exports(root) if _stale(e, now))


def _entries(folder: Path) -> list[os.DirEntry]:
    """The folder's entries, or none when it is missing or unreadable."""
    try:
        return list(os.scandir(folder))
    except OSError:
        return []


def _clean_legacy(folder: Path, now: float) -> int:
    """Entries of an earlier layout's folder, each needed only during its own request."""
    removed = 0
    for entry in _entries(folder):
        try:
            if now - entry.stat(follow_symlinks=False).st_mtime > EXPORT_MIN_KEEP_S:
                removed += _remove(Path(entry.path))
        except OSError:
            pass
    return removed


def _clean_cached_copies(cache: Path, now: float) -> int:
    """A web server's copies of earlier exports (<cache>/<sha256>/tokdist-*-model.zip, new_rows.*, and their
    .staging files) that a killed process never deleted; older than EXPORT_MAX_AGE_S, so no live server still
    serves them (Gradio's own delete_cache removes them after 1-2 h)."""
    removed = 0
    for entry in _entries(cache):
        if not _CACHE_HASH_DIR_RE.match(entry.name) or not entry.is_dir(follow_symlinks=False):
            continue
        try:
            here = 0
            for f in list(os.scandir(entry.path)):
                if (_CACHE_COPY_RE.match(f.name) and f.is_file(follow_symlinks=False)
                        and now - f.stat(follow_symlinks=False).st_mtime > EXPORT_MAX_AGE_S):
                    here += _remove(Path(f.path))
            if here and not os.listdir(entry.path):
                os.rmdir(entry.path)
            removed += here
        except OSError:
            pass
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


def _space_error(need: int, free: int, cap: int, advice: str) -> ExportSpaceError:
    what = (f"building the zip needs about {_fmt(need)} for a moment (the export is saved unzipped, "
            f"then zipped: up to {_fmt(need // 2)} each)")
    if need > cap:
        parts = [f"The server's export space is too small for this zip: {what}, and this server allows "
                 f"{_fmt(cap)} for exports.", advice]
    else:
        parts = [f"The server's export space is full: {what}, and only {_fmt(free)} of the {_fmt(cap)} set aside "
                 "for exports is free right now (recent exports are kept a few minutes for their downloads).",
                 advice, "Or try the zip again in a few minutes."]
    return ExportSpaceError(" ".join(p for p in parts if p), need, free, cap)


@dataclass(frozen=True)
class ExportStore:
    """The exports under `root`, shared by every thread and process that uses the same root."""

    root: Path
    ROWS_DIR: ClassVar[str] = "rows"  # an export's new rows (ROWS_FILE and META_FILE) live in this sub-folder

    @staticmethod
    def model_zip_name(method: str) -> str:
        """The file name of an export's full model zip (the clean-up of cached copies knows it by this name)."""
        return f"tokdist-{method}-model.zip"

    def clean_stale(self, copies_in: Path | None = None, legacy_root: Path | None = None) -> int:
        """Remove what earlier processes left of their exports; call once at start-up. Safe to call again any
        time, also while other processes share the root. Returns how many entries were removed.

        Removed: export folders whose owning process on this host is gone (killed mid-export: its dot-named
        temporaries, unzipped model folder and partial zip; or exited), folders older than EXPORT_MAX_AGE_S or
        emptied by a web server's cache clean-up, crash leftovers without a marker; entries of `legacy_root` (an
        earlier layout) older than EXPORT_MIN_KEEP_S; copies of exports in the web server's cache `copies_in`
        older than EXPORT_MAX_AGE_S. Never touched: exports of live processes that are young enough, anything else.
        """
        now = time.time()
        removed = _clean_legacy(legacy_root, now) if legacy_root is not None else 0
        removed += _clean_cached_copies(copies_in, now) if copies_in is not None else 0
        if self.root.is_dir():
            with _locked(self.root):
                removed += _prune(self.root, now)
        return removed

    def reserve(self, need: int, cap: int, advice: str = "") -> Path:
        """A new (.building-) export folder holding `need` bytes of the cap. Clean-up first; then the oldest
        finished exports older than EXPORT_MIN_KEEP_S are evicted while the cap would be exceeded; else an
        ExportSpaceError whose message ends with `advice` (what the user can do instead). need=0 (rows only, a few
        KB) is always allowed."""
        root, now = self.root, time.time()
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
                    raise _space_error(need, cap - used, cap, advice)
            while True:
                out = root / f"{BUILDING_PREFIX}{secrets.token_hex(16)}"  # unguessable: a web cache serves by path
                try:
                    out.mkdir()
                    break
                except FileExistsError:
                    continue
            _write_marker(out, {**current_owner(), "created": now, "state": "building", "reserved": need})
        return out

    def publish(self, building: Path) -> Path:
        """Mark a reserved export done and rename it to its final name: the whole export appears at once."""
        _write_marker(building, {**(_read_marker(building) or current_owner()), "state": "done", "reserved": 0,
                                 "finished": time.time()})
        out = building.with_name(building.name.removeprefix(BUILDING_PREFIX))
        os.replace(building, out)
        return out

    @staticmethod
    def discard(building: Path) -> None:
        """Remove a reserved export that failed, with whatever it holds."""
        shutil.rmtree(building, ignore_errors=True)
