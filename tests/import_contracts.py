"""An import-linter contract type of our own: no module imports another module's private names.

`from .mining import _automaton` (or `mining._automaton` after `from . import mining`) couples a module to
another's internals: a helper that other modules need becomes a public name of its module instead.
Imports inside functions count, as do names a module takes from its own package's `__init__`.
"""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import grimp
from importlinter.application import output
from importlinter.domain import fields
from importlinter.domain.contract import Contract, ContractCheck


@dataclass(frozen=True)
class PrivateReach:
    importer: str
    line: int
    imported: str
    name: str

    def describe(self) -> str:
        return f"{self.importer}:{self.line} uses {self.imported}.{self.name}"


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _absolute(importer: str, is_package: bool, module: str | None, level: int) -> str:
    if level == 0:
        return module or ""
    parts = importer.split(".")
    base = parts if is_package else parts[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def private_reaches(module: str, path: Path, internal: set[str]) -> list[PrivateReach]:
    """Every private name `module` (source at `path`) takes from another internal module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    aliases: dict[str, str] = {}  # local name -> internal module it is bound to
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = _absolute(module, is_package, node.module, node.level)
            for alias in node.names:
                if f"{source}.{alias.name}" in internal:  # `from . import mining`: a module, not a name
                    aliases[alias.asname or alias.name] = f"{source}.{alias.name}"
                elif source in internal and source != module and _is_private(alias.name):
                    found.append(PrivateReach(module, node.lineno, source, alias.name))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in internal and alias.asname:
                    aliases[alias.asname] = alias.name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and _is_private(node.attr) and isinstance(node.value, ast.Name)
                and node.value.id in aliases and aliases[node.value.id] != module):
            found.append(PrivateReach(module, node.lineno, aliases[node.value.id], node.attr))
    return found


class PrivateNamesContract(Contract):
    """No module of `packages` imports a `_private` name of another internal module."""

    type_name = "private_names"
    packages = fields.ListField(subfield=fields.StringField())

    def check(self, graph: grimp.ImportGraph, verbose: bool) -> ContractCheck:
        internal = set(graph.modules)
        reaches: list[PrivateReach] = []
        for package in self.packages:  # type: ignore[attr-defined]
            for module in sorted({package, *graph.find_descendants(package)}):
                spec = importlib.util.find_spec(module)
                if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
                    continue
                reaches += private_reaches(module, Path(spec.origin), internal)
        return ContractCheck(kept=not reaches, metadata={"reaches": [r.describe() for r in reaches]})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for line in check.metadata["reaches"]:
            output.print_error(f"- {line}")
        output.new_line()
        output.print("Make the helper a public name of its module (no leading underscore) and import that.")
