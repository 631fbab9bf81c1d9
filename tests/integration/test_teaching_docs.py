"""Every ```python block of every docs/teaching/*.md runs as written, on the bundled model, offline.

Each page runs in its own subprocess (its blocks joined in order, as a reader would paste them), in a fresh
folder, with a time limit; any error fails the test with the page's name and the end of its stderr.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import REPO

ROOT = REPO
TEACHING = ROOT / "docs" / "teaching"
# The pages promise under a minute on 2 idle CPU cores; the limit leaves room for a busy test machine.
TIME_LIMIT_S = 300


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", page.read_text(encoding="utf-8"), flags=re.S | re.M)


PAGES = sorted(p for p in TEACHING.glob("*.md") if p.name != "README.md")


def test_the_index_links_every_page():
    index = (TEACHING / "README.md").read_text(encoding="utf-8")
    assert PAGES, "no teaching pages"
    missing = [p.name for p in PAGES if f"({p.name})" not in index]
    assert not missing, f"docs/teaching/README.md does not link {missing}"


@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(p)], ids=lambda p: p.name)
def test_every_python_block_runs(page: Path, tmp_path):
    code = "\n\n".join(python_blocks(page))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    start = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=TIME_LIMIT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{page.name}: its Python blocks ran longer than {TIME_LIMIT_S} s")
    seconds = time.monotonic() - start
    assert proc.returncode == 0, f"{page.name} failed after {seconds:.0f} s:\n{proc.stderr[-3000:]}"
    assert proc.stdout.strip(), f"{page.name}: the example printed nothing for the reader to compare with"
    print(f"{page.name}: {seconds:.1f} s")


def test_the_lens_page_has_a_worked_example():
    page = TEACHING / "lens.md"
    code = "\n".join(python_blocks(page))
    assert "from tokdist_core import" in code and ".attention(" in code and ".lens(" in code
