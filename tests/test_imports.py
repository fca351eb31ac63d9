"""The package's imports, read with the standard library's `ast`: layers point one way, no module imports
itself back through others (imports inside functions count), and imports inside functions are few.

An import under `if TYPE_CHECKING:` is not an edge: it never runs.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import modelbuilder

ROOT = Path(modelbuilder.__file__).parent
PACKAGE = "modelbuilder"
# Modules whose imports inside functions are deliberate by design: the fork server's children import
# what it preloaded, and the torch-free prediction runtime imports onnxruntime only to predict.
DELIBERATE = {"modelbuilder.backends._preload", "modelbuilder.backends.local", "modelbuilder.results.runtime"}
MAX_LOCAL_IMPORTS = 30
FACES = ("cli", "server")
# What each part of the package must never import (docs/ARCHITECTURE.md, "Layers and imports"). The
# control plane learns of backends through register_launcher/register_provisioner, and the training
# engine gets a recipe, a folder and a Reporter: neither imports the other. The modules at the top
# (errors, names, config, demo_data) import no part at all.
NEVER = {
    "sdk": {"cli", "server"},
    "core": {"sdk", "cli", "server", "backends", "training"},
    "backends": {"sdk", "cli", "server"},
    "training": {"sdk", "cli", "server", "core", "backends"},
    "results": {"sdk", "cli", "server", "core", "backends", "training"},
    None: {"sdk", "cli", "server", "core", "backends", "training", "results"},
}
ENTRY_POINT = "modelbuilder.__main__"  # `python -m modelbuilder`: the CLI
# The imports between faces: `modelbuilder server` and `modelbuilder serve` start their servers (inside the
# commands, see there).
BETWEEN_FACES = {("modelbuilder.cli.server", "modelbuilder.server.serve"),
                 ("modelbuilder.cli.serve", "modelbuilder.server.model_server")}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the imported module of the package
    line: int
    local: bool  # inside a function


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The module `name` refers to: itself, or the package or module that defines it."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _targets(node: ast.Import | ast.ImportFrom, module: str) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:  # relative: from the importing module's package
        package = module.split(".") if MODULES[module].name == "__init__.py" else module.split(".")[:-1]
        base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
    # `from pkg import sub` imports the submodule `sub`; `from pkg import name` the package (its __init__).
    return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]


def _imports_of(module: str) -> Iterator[Import]:
    tree = ast.parse(MODULES[module].read_text())

    def walk(node: ast.AST, in_function: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for other in child.orelse:
                    yield from walk(other, in_function)
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                for name in _targets(child, module):
                    target = _resolve(name) if name.startswith(PACKAGE) else None
                    yield Import(module, target or name, child.lineno, in_function)
            yield from walk(child, in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef))

    yield from walk(tree, False)


IMPORTS = [found for module in MODULES for found in _imports_of(module)]
EDGES = {(i.module, i.target) for i in IMPORTS if i.target in MODULES and i.target != i.module}


def _part(module: str) -> str | None:
    """'core' for modelbuilder.core.runs; None for the modules at the top (errors, names, config, ...)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and f"{module}.__init__" in _INITS) else None


_INITS = {f"{name}.__init__" for name, path in MODULES.items() if path.name == "__init__.py"}


def _face(module: str) -> str | None:
    part = _part(module)
    return part if part in FACES else None


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    graph: dict[str, list[str]] = {m: [] for m in MODULES}
    for source, target in EDGES:
        graph[source].append(target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_the_checker_sees_the_package() -> None:
    assert len(MODULES) > 80
    assert ("modelbuilder.sdk.submit", "modelbuilder.core.services") in EDGES
    local = [i for i in IMPORTS if i.local and i.module == "modelbuilder.cli.train"]
    assert [i.target for i in local] == ["modelbuilder.training.engine"]  # a function-local edge is seen


def test_no_module_imports_itself_back_through_others() -> None:
    assert _cycles() == []


def test_nothing_outside_the_cli_imports_it() -> None:
    importers = {i.module for i in IMPORTS if _face(i.target) == "cli" and _face(i.module) != "cli"}
    assert importers <= {ENTRY_POINT}


def test_faces_do_not_import_each_other() -> None:
    crossing = {(i.module, i.target) for i in IMPORTS
                if _face(i.module) and _face(i.target) and _face(i.module) != _face(i.target)}
    assert crossing == BETWEEN_FACES


def test_no_part_imports_what_it_must_not() -> None:
    forbidden = [(i.module, i.target) for i in IMPORTS if i.module != ENTRY_POINT and i.target in MODULES
                 and _part(i.module) not in FACES and _part(i.target) in NEVER[_part(i.module)]]
    assert forbidden == []


def test_few_imports_inside_functions() -> None:
    local = [f"{i.module}:{i.line} {i.target}" for i in IMPORTS if i.local and i.module not in DELIBERATE]
    print(f"\n{len(local)} function-local imports outside {sorted(DELIBERATE)}:\n  " + "\n  ".join(local))
    assert len(local) < MAX_LOCAL_IMPORTS, local
