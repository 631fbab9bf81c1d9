"""Files that are whole or absent: every file the library writes goes through atomic_path."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PARTIAL_SUFFIX = ".partial"  # temporaries are named ".<final name>.<random>.partial" next to their final path


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
