"""The shape of the package: composer's own imports (in functions and ``TYPE_CHECKING`` blocks too)
form no cycle, between modules or between packages, and every package imports only the layers
below it (the order of :data:`LAYERS`, which follows the data flow; see docs/development.md)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "composer"

# Lowest first. A unit (a sub-package, or a top-level module of composer) may import units of its own
# layer's lower neighbours only: anything listed before it. Units in one entry may not import each other.
LAYERS: list[tuple[str, ...]] = [
    ("composer", "composer.errors", "composer.faults"),
    ("composer.fsutil", "composer.settings"),
    ("composer.audio",),
    ("composer.engine",),
    ("composer.prompt",),
    ("composer.arrangement",),
    ("composer.plan",),
    ("composer.render",),
    ("composer.assembly",),
    ("composer.export",),
    ("composer.job",),
    ("composer.api",),
    ("composer.studio",),
    ("composer.cli_render",),
    ("composer.cli",),
    ("composer.__main__",),
]


def modules(root: Path = ROOT) -> dict[str, Path]:
    """composer's modules by dotted name (a package by its own name)."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the composer modules it imports anywhere in its file.

    ``from composer.x import name`` is an import of ``composer.x.name`` when that is a module, else of
    ``composer.x``; relative imports are resolved against the importing module's package.
    """
    known = modules(root)
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parts, *([base] if base else [])])
                for alias in node.names:
                    targets.append(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
            graph[name] |= {t for t in targets if t in known and t != name}
    return graph


def unit(module: str) -> str:
    """The layer unit a module belongs to: composer's sub-package, or the top-level module itself."""
    return ".".join(module.split(".")[:2])


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    nodes = sorted(set(graph) | {t for ts in graph.values() for t in ts})
    for start in nodes:
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_another_that_imports_it_back() -> None:
    assert cycles(imports()) == []


def test_no_package_cycle() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for module, targets in imports().items():
        graph[unit(module)] |= {unit(t) for t in targets if unit(t) != unit(module)}
    assert cycles(graph) == []


def test_every_unit_has_a_layer() -> None:
    placed = {u for layer in LAYERS for u in layer}
    assert sorted({unit(m) for m in modules()} - placed) == []


@pytest.mark.parametrize("layer", range(len(LAYERS)), ids=lambda i: "+".join(LAYERS[i]))
def test_a_layer_imports_only_layers_below_it(layer: int) -> None:
    below = {u for lower in LAYERS[:layer] for u in lower}
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in imports().items()
        if unit(module) in LAYERS[layer]
        for target in targets
        if unit(target) != unit(module) and unit(target) not in below
    )
    assert wrong == []


def test_no_private_name_is_imported_from_another_module() -> None:
    wrong = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("composer"):
                wrong += [f"{name}: {node.module}.{a.name}" for a in node.names if a.name.startswith("_")
                          and not a.name.startswith("__")]  # fmt: skip
    assert wrong == []


# Third-party modules slow enough to import (or optional: ray, PIL) that composer imports them where they
# are used; a composer module that brings one in at import time may be imported lazily as well.
HEAVY = {"torch", "transformers", "tokenizers", "huggingface_hub", "safetensors", "ray", "PIL", "rich", "scipy",
         "numpy", "pydantic", "soundfile", "soxr", "pyloudnorm", "ruamel", "starlette", "uvicorn"}  # fmt: skip


def _top_level_imports(path: Path) -> set[str]:
    """Modules imported when ``path`` is imported (its top-level statements, not ``TYPE_CHECKING``)."""
    found: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def _brings_heavy(module: str, known: dict[str, Path], seen: set[str] | None = None) -> bool:
    """Does importing ``module`` (with its parent packages) import a :data:`HEAVY` module?"""
    seen = set() if seen is None else seen
    parts = module.split(".")
    for name in [".".join(parts[:i]) for i in range(1, len(parts) + 1)]:
        if name in seen or name not in known:
            continue
        seen.add(name)
        for target in _top_level_imports(known[name]):
            if target.split(".")[0] in HEAVY or _brings_heavy(target, known, seen):
                return True
    return False


def test_imports_inside_functions_are_only_of_heavy_modules() -> None:
    """Standard-library and light composer modules are imported at the top of the file; only a module
    that is slow to import (or optional) waits until a function needs it."""
    known = modules()
    wrong = []
    for name, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for function in [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]:
            for node in ast.walk(function):
                if isinstance(node, ast.Import):
                    targets = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module
                               for a in node.names]  # fmt: skip
                else:
                    continue
                wrong += [f"{name}.{function.name}: {t}" for t in targets
                          if t.split(".")[0] not in HEAVY and not _brings_heavy(t, known)]  # fmt: skip
    assert sorted(set(wrong)) == []


MAX_FUNCTION_LINES = 80


def test_no_function_is_longer_than_80_lines() -> None:
    long = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno is not None:
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name}: {lines} lines")
    assert long == []


def test_more_than_six_parameters_are_keyword_only() -> None:
    """Beyond six, a function's parameters are named at the call (``*``), so long calls cannot swap two
    values of one type. The CLI's commands are exempt: their parameters are the command's options."""
    wrong = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if any(isinstance(d, ast.Call) and getattr(d.func, "attr", "") == "command" for d in node.decorator_list):
                continue
            positional = [a.arg for a in node.args.posonlyargs + node.args.args if a.arg not in ("self", "cls")]
            if len(positional) > 6:
                wrong.append(f"{name}.{node.name}: {len(positional)} positional parameters")
    assert wrong == []
