"""The docs stay true to the tree: docs/DESIGN.md's module map names every module, and no
doc or module points outside the repository, and their local links resolve."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("mrcnn", "ftmtl", "ftmtl/inbreast", "ftmtl/datasets")


@pytest.mark.parametrize("package", PACKAGES)
def test_the_module_map_names_every_module(package):
    design = (REPO / "docs" / "DESIGN.md").read_text(encoding="utf-8")
    modules = sorted(p.name for p in (REPO / package).glob("*.py") if p.name != "__init__.py")
    assert modules
    missing = [name for name in modules if f"`{name}`" not in design]
    assert not missing, f"docs/DESIGN.md's module map lacks {package}/{missing}"


def test_nothing_points_outside_the_repository():
    """The design spec the project started from is not part of the checkout: its parts the
    code relies on live in docs/method.md, and nothing refers to the original."""
    files = [p for pattern in ("*.py", "*.md", "*.ipynb", "*.sh")
             for p in REPO.rglob(pattern)
             if ".venv" not in p.parts and ".git" not in p.parts and "output" not in p.parts]
    assert len(files) > 50
    outside = [str(p.relative_to(REPO)) for p in files
               if p != Path(__file__) and ("../shared" in (text := p.read_text(
                   encoding="utf-8", errors="replace")) or "SPEC §" in text)]
    assert not outside, outside


def test_local_links_and_images_of_the_docs_exist():
    """A link or image in the README or docs that names a file of the repository finds it
    (the accuracy section shows a plot kept under docs/img)."""
    pages = [REPO / "README.md", REPO / "benchmarks" / "README.md",
             *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "samples").rglob("*.md"))]
    targets = [(page, match.group(1)) for page in pages
               for match in re.finditer(r"\]\(([^)#\s]+)(?:#[^)]*)?\)",
                                        page.read_text(encoding="utf-8"))
               if "://" not in match.group(1)]
    assert any(target.endswith(".png") for _, target in targets)
    missing = [f"{page.relative_to(REPO)}: {target}" for page, target in targets
               if not (page.parent / target).exists()]
    assert not missing, missing
