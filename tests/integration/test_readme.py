"""The README's examples run as written (in a fresh folder, on the bundled model): the Python example, and the
hand-offs of "Where to take the model next" (the command line, transformers, peft, llama.cpp)."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

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


NEXT_SECTION = "## Where to take the model next"
NOT_RUN = "shell"  # llama.cpp's own programs (llama-cli, llama-server, curl to it): not installed here


def section_blocks(title: str) -> list[tuple[str, str]]:
    """(language, code) of each fenced block under the README's `title` heading, up to the next heading."""
    text = README.read_text(encoding="utf-8")
    assert text.count(f"\n{title}\n") == 1, f"README has no section {title!r}"
    body = text.split(f"\n{title}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(\w+)\n(.*?)```", body, flags=re.S)


def test_readme_hand_offs_run_as_written(tmp_path, tokenizer):
    """transformers, peft and llama.cpp (its server in the xllamacpp wheel) read one distill export alike."""
    pytest.importorskip("peft")
    pytest.importorskip("xllamacpp")
    blocks = section_blocks(NEXT_SECTION)
    assert [lang for lang, _ in blocks] == ["bash", "python", "python", NOT_RUN, "python"]
    for lang, code in blocks:
        if lang == NOT_RUN:  # only llama.cpp's programs, whose Python twin runs below
            commands = [ln.strip() for ln in code.splitlines() if ln.strip()]
            assert commands and all(c.split()[0] in ("llama-cli", "llama-server", "curl") for c in commands)
    # This checkout's code and commands, as an installed `tokdist` gives them to a user.
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
           "PYTHONPATH": str(REPO)}
    outputs = []
    for lang, code in blocks:
        if lang == NOT_RUN:
            continue
        argv = ["bash", "-euo", "pipefail", "-c", code] if lang == "bash" else [sys.executable, "-c", code]
        proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{lang} block failed:\n{code}\n{proc.stderr[-3000:]}"
        outputs.append(proc.stdout.strip().splitlines())
    distilled, hf, peft, llama = outputs

    assert json.loads(distilled[-1])["words"] == [" Schopenhauer"]
    assert {p.name for p in (tmp_path / "schopenhauer").iterdir()} >= {"model.safetensors", "peft", "model.gguf"}
    # transformers: the word is one token, the new one, right after the base vocabulary.
    new_id = len(tokenizer)
    ids = ast.literal_eval(hf[0])
    base_ids = tokenizer("Yesterday Schopenhauer wrote", add_special_tokens=False).input_ids
    assert ids.count(new_id) == 1 and len(ids) == len(base_ids) - 2  # ' Sch' 'openh' 'auer' -> one token
    assert isinstance(ast.literal_eval(hf[1]), str)
    # peft: one trainable row; merged, it is the hf export's row for the new id.
    assert any(line.startswith("trainable params: 576 ||") for line in peft)
    assert peft[-1] == f"{new_id} True"
    # llama.cpp tokenizes the text like the exported tokenizer, new id included, and continues it.
    assert ast.literal_eval(llama[0]) == ids
    assert ast.literal_eval(llama[1]).strip()
