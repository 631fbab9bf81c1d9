"""Files that are whole or absent: every file the library writes goes through atomic_path."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PARTIAL_SUFFIX = ".partial"  # temporaries are named ".<final name>.<random>.partial" next to their final path
EXPORT_MARKER = "new_rows.json"  # every exported model folder holds it (export.rows writes it)


@contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `final`; on success it is renamed onto `final` (os.replace, atomic).

    The temporary name starts with a dot and ends with PARTIAL_SUFFIX, so a process killed mid-write leaves
    only a hidden `.partial` file, never a truncated file under the final name. On an exception it is removed.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    while True:  # created here ("x": never someone else's file), with the usual permissions (umask), unlike mkstemp
        tmp_path = final.with_name(f".{final.name}.{secrets.token_hex(4)}{PARTIAL_SUFFIX}")
        try:
            tmp_path.open("xb").close()
            break
        except FileExistsError:
            continue
    try:
        yield tmp_path
        os.replace(tmp_path, final)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def replace_refusal(final: str | Path) -> str | None:
    """Why an export may not replace `final` (None when it may): an existing file, or a non-empty folder
    that is not an earlier export (it holds no EXPORT_MARKER), whose files a replace would delete."""
    final = Path(final)
    if final.exists() and not final.is_dir():
        return f"{final} is an existing file; give a folder"
    if final.is_dir() and any(final.iterdir()) and not (final / EXPORT_MARKER).is_file():
        return (f"{final} exists and holds files that are not an earlier export (no {EXPORT_MARKER}); "
                "give a new or empty folder")
    return None


@contextmanager
def atomic_folder(final: str | Path) -> Iterator[Path]:
    """Yield a new hidden folder next to `final`; on success it replaces `final` whole (an export is whole
    or absent, never an old tokenizer beside new weights).

    A process killed while writing leaves a hidden `.partial` folder and `final` as it was. Replacing an
    existing folder is two renames: the old one moves to a hidden `.old` name, the new one takes its place,
    then the old one is removed. On an exception the temporary folder is removed and `final` is untouched.
    """
    final = Path(final)
    refusal = replace_refusal(final)
    if refusal:
        raise ValueError(refusal)
    final.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(4)
    tmp = final.with_name(f".{final.name}.{token}{PARTIAL_SUFFIX}")
    tmp.mkdir()
    try:
        yield tmp
        if final.exists():
            old = final.with_name(f".{final.name}.{token}.old")
            os.rename(final, old)
            os.rename(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
