"""The house rules of docs/architecture.md, checked: imports point down (the import-linter contracts in
pyproject.toml), no import circles, no HTTP server in the serving domain, modules stay small."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "mullama"
MAX_LINES = 420  # "about 400": split a module by concern before it grows past this


def test_import_linter_contracts_are_kept() -> None:
    # in a process of its own: import-linter configures logging, which would silence other tests' loggers
    proc = subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
                           "sys.exit(lint_imports_command())", "--no-cache"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), direct imports only."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.find_modules_directly_imported_by(node):
            if not nxt.startswith("mullama"):
                continue
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph.modules):
        if module.startswith("mullama") and module not in index:
            visit(module)
    return found


def test_no_import_circles() -> None:
    graph = grimp.build_graph("mullama", include_external_packages=False)
    # a package's __init__ re-exporting its own modules is no circle between modules
    for module in list(graph.modules):
        for sub in graph.find_modules_directly_imported_by(module):
            if sub.startswith(module + "."):
                graph.remove_import(importer=module, imported=sub)
    assert _cycles(graph) == []


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


@pytest.mark.parametrize("path", sorted((PACKAGE / "serving").glob("*.py")), ids=lambda p: p.name)
def test_the_serving_domain_has_no_http_server(path: Path) -> None:
    assert not {n for n in _imports(path) if n == "aiohttp.web" or n.startswith("aiohttp.web.")}


@pytest.mark.parametrize("path", sorted(p for p in PACKAGE.rglob("*.py")
                                         if p.relative_to(PACKAGE).parts[0] not in ("runner", "cli", "engine.py")),
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_only_the_runner_and_the_cli_import_the_extension(path: Path) -> None:
    """import-linter cannot see the compiled ``mullama._engine``; the contract in pyproject.toml covers
    ``mullama.engine``, this covers the extension itself."""
    assert not {n for n in _imports(path) if n in ("mullama._engine", "mullama.engine")}


def test_modules_stay_small() -> None:
    sizes = {str(p.relative_to(ROOT)): len(p.read_text().splitlines())
             for p in [*PACKAGE.rglob("*.py"), *(ROOT / "tests").rglob("*.py"), *(ROOT / "runner_ext").glob("*.[ch]*")]}
    assert {p: n for p, n in sizes.items() if n > MAX_LINES} == {}
