"""Measures of the code's shape anyone can take (issue 30), kept true by this test.

* No import circles in ``pipeline/`` or ``bench/``: every import counts, those inside
  functions and under ``TYPE_CHECKING`` too (a circle that only lazy imports hide is
  still two modules that cannot be read apart).
* No module in ``pipeline/`` over 400 lines.
* No function body in ``pipeline/`` over 60 lines (a Typer command's signature, which
  declares its options, is not its body).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from support.images import REPO

MAX_MODULE_LINES = 400
MAX_BODY_LINES = 60


def _modules(package: Path) -> dict[str, Path]:
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(path: Path, known: dict[str, Path]) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        out.update(n for n in names if n in known)
    return out


def _circles(package: Path) -> list[list[str]]:
    """The import graph's strongly connected parts of more than one module (Tarjan)."""
    known = _modules(package)
    graph = {m: {t for t in _imports(p, known) if t != m and not m.startswith(t + ".")}
             for m, p in known.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while (w := stack.pop()) != v:
                part.append(w)
            if part:
                found.append(sorted([v, *part]))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


@pytest.mark.parametrize("package", ["pipeline", "bench"])
def test_no_import_circles(package: str) -> None:
    assert _circles(REPO / package) == []


def test_the_circle_finder_finds_a_circle(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from pkg.b import g\n")
    (pkg / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                              "    from pkg import a\n")
    (pkg / "c.py").write_text("import pkg.a\n")
    assert _circles(pkg) == [["pkg.a", "pkg.b"]]


def test_modules_and_functions_stay_small() -> None:
    too_long = []
    for name, path in _modules(REPO / "pipeline").items():
        source = path.read_text()
        if source.count("\n") > MAX_MODULE_LINES:
            too_long.append(f"{name}: {source.count(chr(10))} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                body = node.body[0] if not (
                    isinstance(node.body[0], ast.Expr)
                    and isinstance(node.body[0].value, ast.Constant)
                    and len(node.body) > 1) else node.body[1]
                lines = (node.end_lineno or 0) - body.lineno + 1
                if lines > MAX_BODY_LINES:
                    too_long.append(f"{name}.{node.name}: a body of {lines} lines")
    assert too_long == []


def _patched_privates(source: str) -> list[str]:
    """``setattr(x, "_name", ...)`` calls (monkeypatch's too) and assignments to
    ``x._name`` of something that is not ``self``: where a test would patch a private."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute | ast.Name)
                and (node.func.attr if isinstance(node.func, ast.Attribute)
                     else node.func.id) == "setattr"
                and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
                and isinstance(node.args[1].value, str)):
            name = node.args[1].value
            if name.startswith("_") and not name.startswith("__"):
                found.append(name)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if (isinstance(target, ast.Attribute) and target.attr.startswith("_")
                        and not target.attr.startswith("__")
                        and not (isinstance(target.value, ast.Name)
                                 and target.value.id in ("self", "cls"))):
                    found.append(target.attr)
    return sorted(found)


def test_no_test_patches_a_private_name() -> None:
    patched = {str(p.relative_to(REPO)): names for p in sorted((REPO / "tests").rglob("*.py"))
               if (names := _patched_privates(p.read_text()))}
    assert patched == {}


def test_the_private_patch_finder_finds_one() -> None:
    assert _patched_privates('monkeypatch.setattr(mod, "_cache", {})\nopt._direction = f\n'
                             'self._ok = 1\nsetattr(x, "__init__", g)\n') == [
        "_cache", "_direction"]


def test_every_package_is_in_pyproject_and_every_listed_one_exists() -> None:
    """setuptools installs the packages pyproject.toml lists, no others: a package left out
    would be missing from a wheel, and one listed that is gone fails every install."""
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"]) - {"pipeline._builtin_styles"}
    found = {".".join(p.parent.relative_to(REPO).parts)
             for p in (REPO / "pipeline").rglob("__init__.py")}
    assert listed == found
