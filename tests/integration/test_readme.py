"""The README's Python example runs as written (in a fresh folder, on the bundled model)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys

from tests.helpers import REPO

README = REPO / "README.md"


def test_readme_python_example_runs_as_written(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    assert blocks, "README has no Python example"
    example = blocks[0]
    assert "from tokdist_core import" in example  # the package root, not its modules
    proc = subprocess.run([sys.executable, "-c", example], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "[' Schopenhauer']"  # one token
    summary = ast.literal_eval(lines[-1])  # the printed dict of mean held-out hidden MSE per method
    assert set(summary) == {"subword_mean", "tokdist"} and summary["tokdist"] < summary["subword_mean"]
    assert (tmp_path / "out" / "model.safetensors").is_file()
