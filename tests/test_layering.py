"""The packages' layering: ftmtl builds on mrcnn, never the other way, so that Mask R-CNN
(``mrcnn``) stays usable without the application (``ftmtl``)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _imported_modules(tree: ast.AST) -> list[str]:
    """Every module an ``import`` or ``from ... import`` names, wherever it stands (also inside
    functions). A relative import stays inside its package and is skipped."""
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def test_no_mrcnn_module_imports_ftmtl():
    files = sorted((REPO / "mrcnn").rglob("*.py"))
    assert len(files) > 20
    offending = {}
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        found = [name for name in _imported_modules(tree)
                 if name == "ftmtl" or name.startswith("ftmtl.")]
        if found:
            offending[str(path.relative_to(REPO))] = found
    assert not offending, f"mrcnn must not import ftmtl: {offending}"


def test_the_check_sees_imports_inside_functions():
    tree = ast.parse("def f():\n    from ftmtl import metrics\n    import ftmtl.model as m\n")
    assert _imported_modules(tree) == ["ftmtl", "ftmtl.model"]
