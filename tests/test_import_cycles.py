"""No import circles among the project's modules (issue 23, item 11): read statically with `ast`, so every import
counts — module level, inside a function (a lazy import) and under `if TYPE_CHECKING:` — since each of them is a
dependency someone has to reason about, and a lazy import that hides a circle only moves the failure to run time.

Configuration is data that others read (`guardrail_server.config` imports no behaviour of the server); metrics are
written by whoever counts (`guardrail_server.metrics` declares them); everything else points one way."""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# folder on disk -> import name (tests/test_packaging.py keeps the installed ones equal to pyproject's list)
PACKAGES = {"guardrail_server": "guardrail_server", "guardrail_client": "guardrail_client",
            "invariants": "guardrail_invariants", "models": "guardrail_models", "bench": "bench"}


def project_modules(root: Path, packages: Mapping[str, str]) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the packages (a package is its `__init__`)."""
    modules: dict[str, Path] = {}
    for folder, name in packages.items():
        for path in sorted((root / folder).rglob("*.py")):
            parts = [name, *path.relative_to(root / folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _known(name: str, modules: Mapping[str, Path]) -> str | None:
    """The most specific project module `name` lies in (`a.b.func` -> `a.b`), or None outside the project."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str, path: Path, modules: Mapping[str, Path]) -> set[str]:
    """Project modules that `module` imports anywhere in its file."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(m for alias in node.names if (m := _known(alias.name, modules)))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            for alias in node.names:  # `from pkg import mod` imports the module pkg.mod; `from mod import f`, mod
                target = f"{base}.{alias.name}"
                hit = target if target in modules else _known(base, modules)
                if hit:
                    found.add(hit)
    found.discard(module)
    return found


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each as one closed path through it."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_path_through(c, graph) for c in components]


def _path_through(component: list[str], graph: Mapping[str, set[str]]) -> list[str]:
    """One circle inside a component, start == end, for the failure message (a -> b -> c -> a)."""
    members = set(component)
    start = component[0]

    def walk(v: str, seen: list[str]) -> Iterator[list[str]]:
        for w in sorted(graph[v] & members):
            if w == start:
                yield [*seen, w]
            elif w not in seen:
                yield from walk(w, [*seen, w])

    return next(walk(start, [start]), component)


def import_graph(root: Path, packages: Mapping[str, str]) -> dict[str, set[str]]:
    modules = project_modules(root, packages)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def test_the_project_has_no_import_cycles() -> None:
    graph = import_graph(ROOT, PACKAGES)
    assert len(graph) > 100, "the walk found too few modules to mean anything"
    found = [" -> ".join(c) for c in cycles(graph)]
    assert found == [], "import circles (move what both sides need to a module both import):\n  " + "\n  ".join(found)


def test_the_check_sees_lazy_type_checking_and_relative_imports(tmp_path: Path) -> None:
    """The three kinds of import that hid the circles issue 23 found, in a package of our own."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "config.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import auth\n")
    (pkg / "auth.py").write_text("from . import metrics\n")
    (pkg / "metrics.py").write_text("def f():\n    from pkg.config import X\n")
    (pkg / "sub" / "a.py").write_text("from ..sub import b\n")
    (pkg / "sub" / "b.py").write_text("import pkg.sub.a\n")
    (pkg / "leaf.py").write_text("import pkg.config\nimport os\n")
    found = cycles(import_graph(tmp_path, {"pkg": "pkg"}))
    assert sorted(found) == [["pkg.auth", "pkg.metrics", "pkg.config", "pkg.auth"], ["pkg.sub.a", "pkg.sub.b",
                                                                                      "pkg.sub.a"]]
