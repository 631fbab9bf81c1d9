"""The walls of the house: the import-linter contracts in pyproject.toml hold, our own contract type
catches a private reach-in, modules stay small, app.py goes through ui, and every import is declared."""

from __future__ import annotations

import ast
import importlib.metadata
import sys
import textwrap
from pathlib import Path

import grimp
import pytest
import tomllib
from importlinter.cli import lint_imports

from tests.helpers import REPO
from tests.import_contracts import PrivateNamesContract

MAX_CORE_MODULE_LINES = 450


def test_import_contracts_hold(monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    code = lint_imports(no_cache=True, no_logo=True)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "broken" in out and " 0 broken" in out


def _package(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def test_private_names_contract_catches_reach_ins_and_allows_public_names(tmp_path, monkeypatch):
    _package(tmp_path, {
        "walls/__init__.py": "",
        "walls/low.py": "def _helper():\n    pass\n\n\ndef helper():\n    pass\n",
        "walls/ok.py": "from .low import helper\nfrom . import low\n\nlow.helper()\n",
        "walls/from_import.py": "def f():\n    from .low import _helper  # inside a function: it counts\n",
        "walls/attribute.py": "from . import low\n\nlow._helper()\n",
        "walls/own.py": "def _mine():\n    pass\n\n\n_mine()\n",
    })
    monkeypatch.syspath_prepend(str(tmp_path))
    graph = grimp.build_graph("walls", cache_dir=None)
    contract = PrivateNamesContract(name="t", session_options={}, contract_options={"packages": ["walls"]})
    check = contract.check(graph, verbose=False)
    assert not check.kept
    assert sorted(check.metadata["reaches"]) == ["walls.attribute:3 uses walls.low._helper",
                                                 "walls.from_import:2 uses walls.low._helper"]


def test_no_core_module_is_over_450_lines():
    long = {str(p.relative_to(REPO)): n for p in (REPO / "tokdist_core").rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_CORE_MODULE_LINES}
    assert not long, f"split these modules, each has two jobs: {long}"


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_app_py_only_launches_through_ui_and_the_package_root():
    ours = {m for m in _imported_modules(REPO / "app.py") if m.split(".")[0] in ("tokdist_core", "ui")}
    assert ours and all(m == "tokdist_core" or m.split(".")[0] == "ui" for m in ours), ours


def test_every_third_party_import_is_a_declared_dependency():
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    declared_names = {d.split(";")[0].split("[")[0].split("=")[0].split(">")[0].split("<")[0].strip().lower()
                      .replace("_", "-") for d in declared}
    providers = importlib.metadata.packages_distributions()
    optional = {"spaces"}  # present only on Hugging Face Spaces (ZeroGPU); imported inside try/except
    files = [REPO / "app.py", *(REPO / "tokdist_core").rglob("*.py"), *(REPO / "ui").rglob("*.py")]
    missing = {}
    for path in files:
        for module in _imported_modules(path):
            top = module.split(".")[0]
            if top in sys.stdlib_module_names or top in ("tokdist_core", "ui") or top in optional:
                continue
            dists = {d.lower().replace("_", "-") for d in providers.get(top, [top])}
            if not dists & declared_names:
                missing.setdefault(top, str(path.relative_to(REPO)))
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


@pytest.mark.parametrize("package", ["tokdist_core", "ui"])
def test_the_build_finds_every_sub_package(package):
    from setuptools import find_packages

    found = set(find_packages(str(REPO), include=["tokdist_core*", "ui*"]))
    on_disk = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / package).rglob("__init__.py")}
    assert on_disk <= found, on_disk - found
