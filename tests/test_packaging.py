"""The wheel: the packages it installs and the console script, read from a wheel built here."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    """Built from a copy of the sources (samples/ included, to see it left out), so that no
    build/ folder of an earlier build in the checkout leaks into it."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(REPO / name, source / name)
    for name in ("mrcnn", "ftmtl", "samples"):
        shutil.copytree(REPO / name, source / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                    "--disable-pip-version-check", "-q", "-w", str(out), str(source)],
                   check=True, cwd=source, timeout=300)
    (path,) = out.glob("ftmtl-*.whl")
    with zipfile.ZipFile(path) as archive:
        yield archive


def test_the_wheel_installs_only_our_two_packages(wheel):
    tops = {name.split("/")[0] for name in wheel.namelist() if not name.startswith("ftmtl-")}
    assert tops == {"mrcnn", "ftmtl"}, f"top-level names in the wheel: {sorted(tops)}"
    assert "ftmtl/cli.py" in wheel.namelist() and "ftmtl/detect_io.py" in wheel.namelist()


def test_the_console_script_runs_the_packaged_command_line(wheel):
    (entry_points,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    text = wheel.read(entry_points).decode()
    assert "inbreast = ftmtl.cli:main" in text


def test_the_checkout_entry_point_runs_the_same_command_line():
    done = subprocess.run([sys.executable, str(REPO / "samples" / "inbreast" / "inbreast.py"),
                           "--version"], capture_output=True, text=True, timeout=120,
                          cwd=REPO / "docs")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("inbreast ")
