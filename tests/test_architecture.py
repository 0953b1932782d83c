"""The layout of course_lib: one-way layers (the import-linter contracts in pyproject.toml), no import
cycle, docstrings that name their chapter, and no chapter that spells another chapter's checkpoint."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "course_lib"
CHAPTER_REFERENCE = re.compile(r"\bchapters? \d\d\b|instructor page")


def test_layer_contracts_are_kept():
    lint_imports = Path(sys.executable).with_name("lint-imports")
    command = [str(lint_imports)] if lint_imports.exists() else [shutil.which("lint-imports") or "lint-imports"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the groups of modules that import each other in a circle."""
    index, low, stack, on_stack, groups, counter = {}, {}, [], set(), [], [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
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
    return groups


def test_no_import_cycle_between_modules():
    """Function-level imports count too (grimp sees them): a circle hidden inside a function is still one."""
    graph = grimp.build_graph("course_lib")
    modules = {m for m in graph.modules if m.startswith("course_lib")}
    edges = {
        m: {
            other
            for other in graph.find_modules_directly_imported_by(m)
            if other in modules and not m.startswith(other + ".")
        }  # a module importing its own package's __init__ is no cycle
        for m in modules
    }
    assert strongly_connected(edges) == []


def test_strongly_connected_finds_a_circle():
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def public_definitions():
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        yield path, None, tree
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
                yield path, node.name, node


def test_every_module_says_what_it_is_for():
    missing = [
        str(path.relative_to(REPO))
        for path, name, node in public_definitions()
        if name is None and not ast.get_docstring(node)
    ]
    assert missing == []


def test_every_public_function_and_class_names_its_chapter():
    missing = [
        f"{path.relative_to(REPO)}: {name}"
        for path, name, node in public_definitions()
        if name is not None and not CHAPTER_REFERENCE.search(ast.get_docstring(node) or "")
    ]
    assert missing == [], "name the chapter (e.g. 'chapter 04') in these docstrings"


def chapter_code(notebook: Path) -> str:
    cells = json.loads(notebook.read_text())["cells"]
    return "\n".join("".join(cell["source"]) for cell in cells if cell["cell_type"] == "code")


@pytest.mark.parametrize("notebook", sorted((REPO / "chapters").glob("[0-9][0-9]_*.ipynb")), ids=lambda p: p.name)
def test_a_chapter_spells_only_its_own_checkpoint_names(notebook):
    own = f"ch{notebook.name[:2]}_"
    names = re.findall(r"""checkpoint_path\(\s*f?["']([^"']+)["']""", chapter_code(notebook))
    assert all(name.startswith(own) for name in names), (
        f"{notebook.name} names {names}: reuse through course_lib.recipes"
    )
    others = sorted(set(re.findall(r"\bch\d\d_[a-z0-9_]+", chapter_code(notebook))) - set(names))
    assert [name for name in others if not name.startswith(own)] == []
