"""The package's architecture, read from its imports: layers, no cycles, the CLI libraries kept in cli/.

Every import counts, at module level or inside a function (a lazy import still ties the
modules together), under ``TYPE_CHECKING`` too. The layers, lowest first:

    base    the top-level modules (config, errors, device, option_files, stored_checks, units, json_text, presets) and files/
    text, models          never import each other
    store
    train, score          never import each other
    analysis              measurements of trained models, and comparisons of training runs
    cli                   the only package that imports typer or rich

The checker runs on a small package written here first, so it is known to catch each kind of fault.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import rnnlm_cli

PACKAGE_DIR = Path(rnnlm_cli.__file__).resolve().parent

LAYERS = {"base": 0, "text": 1, "models": 1, "store": 2, "train": 3, "score": 3, "analysis": 4, "cli": 5}
UI_LIBRARIES = ("typer", "rich", "click")


def module_imports(package_dir: Path, package: str) -> dict[str, set[str]]:
    """Module name (dotted, without the package) -> the names it imports (package modules or libraries)."""
    modules = {_module_name(path, package_dir): path for path in package_dir.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    imported.add(_inside(alias.name, package) or alias.name.split(".")[0])
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(node, name, path.name == "__init__.py", package)
                if base is None:
                    continue
                inner = _inside(base, package)
                if inner is None:
                    imported.add(base.split(".")[0])
                    continue
                for alias in node.names:
                    # ``from pkg import sub`` imports the module pkg.sub when there is one
                    candidate = f"{inner}.{alias.name}" if inner else alias.name
                    imported.add(candidate if candidate in modules else inner)
        imported.discard(name)
        imported.discard("")
        graph[name] = imported
    return graph


def _module_name(path: Path, package_dir: Path) -> str:
    parts = path.relative_to(package_dir).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _inside(dotted: str, package: str) -> str | None:
    if dotted == package:
        return ""
    if dotted.startswith(package + "."):
        return dotted[len(package) + 1:]
    return None


def _absolute(node: ast.ImportFrom, module: str, is_init: bool, package: str) -> str | None:
    if not node.level:
        return node.module
    here = [package, *module.split(".")] if module else [package]
    if not is_init:
        here = here[:-1]
    here = here[: len(here) - (node.level - 1)]
    return ".".join(here + ([node.module] if node.module else []))


def layer_of(module: str) -> str:
    """The layer a module belongs to: its package, or base for the top-level modules."""
    if module == "__main__":
        return "cli"
    head = module.split(".")[0]
    return head if head in LAYERS and head not in ("base", "files") else "base"


def problems(graph: dict[str, set[str]]) -> list[str]:
    """Every breach of the rules above, one line each."""
    found: list[str] = []
    for module, imported in sorted(graph.items()):
        layer = layer_of(module)
        for target in sorted(imported):
            if target.split(".")[0] in UI_LIBRARIES and layer != "cli":
                found.append(f"{module} imports {target}: only cli/ may")
            if target not in graph:
                continue
            other = layer_of(target)
            if other != layer and LAYERS[other] >= LAYERS[layer]:
                found.append(f"{module} ({layer}) imports {target} ({other})")
    found += [f"import cycle: {' -> '.join(cycle)}" for cycle in _cycles(graph)]
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected group of modules (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in graph:
                continue
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_path_through(graph, group) for group in groups]


def _path_through(graph: dict[str, set[str]], group: list[str]) -> list[str]:
    start, members = group[0], set(group)
    path, seen = [start], {start}
    while True:
        step = sorted(t for t in graph[path[-1]] if t in members)
        if start in step and len(path) > 1:
            return path + [start]
        fresh = [t for t in step if t not in seen]
        if not fresh:
            return path + [step[0]]
        path.append(fresh[0])
        seen.add(fresh[0])


def _write(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / "pkg" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_the_checker_catches_each_kind_of_fault(tmp_path):
    package = _write(tmp_path, {
        "__init__.py": "",
        "errors.py": "",
        "text/__init__.py": "",
        "text/reading.py": "from pkg.errors import x\nfrom pkg.models import lm\n",
        "models/__init__.py": "",
        "models/lm.py": "def f():\n    from pkg.train import loop\n",
        "train/__init__.py": "",
        "train/loop.py": "from . import run\nimport rich\n",
        "train/run.py": "from .loop import g\nfrom pkg.score import evaluate\n",
        "score/__init__.py": "",
        "score/evaluate.py": "from ..cli import app\n",
        "cli/__init__.py": "",
        "cli/app.py": "import typer\n",
    })
    graph = module_imports(package, "pkg")
    assert graph["text.reading"] == {"errors", "models.lm"}
    assert graph["train.loop"] == {"train.run", "rich"}
    assert graph["score.evaluate"] == {"cli.app"}
    assert problems(graph) == [
        "models.lm (models) imports train.loop (train)",
        "score.evaluate (score) imports cli.app (cli)",
        "text.reading (text) imports models.lm (models)",
        "train.loop imports rich: only cli/ may",
        "train.run (train) imports score.evaluate (score)",
        "import cycle: train.loop -> train.run -> train.loop",
    ]


def test_the_package_keeps_its_layers_and_has_no_cycles():
    graph = module_imports(PACKAGE_DIR, "rnnlm_cli")
    assert {"cli.app", "text.reading", "train.run", "score.evaluate", "store.checkpoint"} <= set(graph)
    assert problems(graph) == []


@pytest.mark.parametrize("library", ["typer", "rich"])
def test_only_the_cli_package_imports_the_terminal_libraries(library):
    graph = module_imports(PACKAGE_DIR, "rnnlm_cli")
    users = sorted(module for module, imported in graph.items() if library in imported)
    assert users, f"nothing imports {library}: the check would pass for the wrong reason"
    assert all(layer_of(module) == "cli" for module in users), users
