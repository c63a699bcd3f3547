"""House rules checked on the source: no import cycles, no private names across modules, declared == imported.

The import graph is built from each module's *module-level* imports (``import x``, ``from x import
y``, relative imports resolved); imports inside functions (deliberately lazy, e.g. the CLI's) and
under ``if TYPE_CHECKING:`` are left out. ``from pkg import name``, where ``pkg`` is a package whose
``__init__`` re-exports ``name`` from a submodule, counts as an import of that submodule (a package
importing its own submodules is not a cycle by itself).
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("cryomine_core", "cryomine_scipion")


def _modules(package: str) -> dict[str, Path]:
    out = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if "tests" in parts:
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_package(name: str, modules: dict[str, Path]) -> bool:
    return modules.get(name, Path()).name == "__init__.py"


def _absolute(module: str, node: ast.ImportFrom, modules: dict[str, Path]) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if _is_package(module, modules) else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _top_level_imports(tree: ast.Module):
    """Import nodes executed at import time (module body, try/if blocks; not functions or TYPE_CHECKING)."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            test = ast.unparse(node.test)
            if "TYPE_CHECKING" not in test:
                stack.extend(node.body + node.orelse)
        elif isinstance(node, ast.Try):
            stack.extend(node.body + node.orelse + node.finalbody + [s for h in node.handlers for s in h.body])


def _reexports(modules: dict[str, Path]) -> dict[str, dict[str, str]]:
    """For each package: name -> the module its ``__init__`` imports it from."""
    out: dict[str, dict[str, str]] = {}
    for name, path in modules.items():
        if path.name != "__init__.py":
            continue
        table = {}
        for node in _top_level_imports(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                source = _absolute(name, node, modules)
                for alias in node.names:
                    table[alias.asname or alias.name] = source
        out[name] = table
    return out


def _resolve(target: str, name: str | None, modules, reexports, seen=()) -> str | None:
    if name is not None and f"{target}.{name}" in modules:
        return f"{target}.{name}"
    if target not in modules:
        return None
    if name is not None and target in reexports and name in reexports[target] and target not in seen:
        return _resolve(reexports[target][name], name, modules, reexports, (*seen, target)) or target
    return target


def import_graph(package: str) -> dict[str, set[str]]:
    modules = _modules(package)
    reexports = _reexports(modules)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        for node in _top_level_imports(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [_resolve(a.name, None, modules, reexports) for a in node.names]
            else:
                base = _absolute(module, node, modules)
                targets = [_resolve(base, a.name, modules, reexports) for a in node.names]
            graph[module] |= {t for t in targets if t and t != module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    colour = dict.fromkeys(graph, 0)
    stack: list[str] = []

    def visit(node):
        colour[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if colour.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if colour.get(nxt) == 0:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        colour[node] = 2
        return None

    sys.setrecursionlimit(max(10000, sys.getrecursionlimit()))
    for node in sorted(graph):
        if colour[node] == 0:
            found = visit(node)
            if found:
                return found
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    for package in PACKAGES:
        graph = import_graph(package)
        assert len(graph) > 20
        cycle = find_cycle(graph)
        assert cycle is None, f"import cycle in {package}: {' -> '.join(cycle)}"


def test_no_private_names_across_modules():
    """``from a import _b`` or ``a._b`` between modules: a private name used outside its module."""
    found = []
    for package in PACKAGES:
        modules = _modules(package)
        for module, path in modules.items():
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom):
                    source = _absolute(module, node, modules)
                    if source.split(".")[0] in PACKAGES:
                        found += [f"{module}: from {source} import {a.name}" for a in node.names
                                  if a.name.startswith("_") and not a.name.startswith("__")]
    assert not found, "private names imported across modules:\n" + "\n".join(found)


IMPORT_TO_DISTRIBUTION = {"yaml": "pyyaml", "sklearn": "scikit-learn", "torch_ctf": "torch-ctf",
                          "torch_grid_utils": "torch-grid-utils", "PIL": "pillow", "dynamotable": "dynamotable",
                          "imodmodel": "imodmodel", "pyworkflow": "scipion-pyworkflow", "pwem": "scipion-em",
                          "tomo": "scipion-em-tomo"}


def _declared() -> dict[str, set[str]]:
    """Distributions named in setup.py's requirement lists (parsed, not executed)."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    lists = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.List) and isinstance(node.targets[0], ast.Name):
            lists[node.targets[0].id] = {re.split(r"[<>=!~\[; ]", ast.literal_eval(e))[0].lower()
                                         for e in node.value.elts}
    return lists


def _imported(package: str) -> set[str]:
    names = set()
    for path in _modules(package).values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names.add(node.module.split(".")[0])
    third = {n for n in names if n not in sys.stdlib_module_names and n not in PACKAGES and n != "__future__"}
    return {IMPORT_TO_DISTRIBUTION.get(n, n).lower() for n in third}


def test_declared_dependencies_are_imported_and_imported_ones_declared():
    declared = _declared()
    core = declared["CORE_REQUIRES"]
    imported_core = _imported("cryomine_core")
    assert imported_core - core == set(), f"imported by cryomine_core but not declared: {imported_core - core}"
    assert core - imported_core == set(), f"declared but not imported by cryomine_core: {core - imported_core}"
    plugin = _imported("cryomine_scipion") - core
    scipion = declared["SCIPION_REQUIRES"]
    assert plugin - scipion == set(), f"imported by cryomine_scipion but not declared: {plugin - scipion}"


def test_column_names_are_defined_only_in_the_schema_module():
    """Every ``cm...``/``rln...`` STAR label is a constant of :mod:`cryomine_core.io.columns`, imported elsewhere."""
    label = re.compile(r"^(cm|rln)[A-Z]\w*$")
    found = []
    for package in PACKAGES:
        for module, path in _modules(package).items():
            if module == "cryomine_core.io.columns":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and label.match(node.value):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert not found, "column names written outside cryomine_core/io/columns.py:\n" + "\n".join(found)


def test_the_schema_module_imports_only_the_standard_library():
    tree = ast.parse((ROOT / "cryomine_core" / "io" / "columns.py").read_text())
    assert not [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]


def test_a_command_module_that_fails_to_import_is_loud(monkeypatch):
    """A broken or renamed command module must fail the CLI, not vanish from --help."""
    import importlib

    import pytest

    from cryomine_core import cli

    real = importlib.import_module

    def broken(name, *args):
        if name == "cryomine_core.cli.segment":
            raise ModuleNotFoundError("No module named 'cryomine_core.cli.segment'", name=name)
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", broken)
    with pytest.raises(ModuleNotFoundError):
        cli.build_parser()
    monkeypatch.setattr(importlib, "import_module", real)
    help_text = cli.build_parser().format_help()
    assert all(group in help_text for group in cli._GROUPS)
