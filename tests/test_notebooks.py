"""The notebooks run top to bottom without an error, at toy sizes (FTMTL_NOTEBOOK_QUICK=1).

They run in order in one output folder, as a reader would run them: 03 then looks inside the
model 02 trained (without 02, e.g. with -m "not slow" or split over xdist workers, it falls back
to a freshly initialised one). Each notebook runs in its own kernel (the venv's "python3") with
the notebooks/ folder as working directory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
CELL_TIMEOUT_S = 300
ORDER = ("01_inspect_data.ipynb", "02_train_and_detect.ipynb", "03_inspect_model.ipynb",
         "04_evaluate.ipynb")
TRAINING = {"02_train_and_detect.ipynb", "04_evaluate.ipynb"}


@pytest.fixture(scope="module")
def output_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("notebook_output")


def execute(name: str, output_dir: Path) -> nbformat.NotebookNode:
    """Run one notebook in a fresh kernel; nbclient raises CellExecutionError on any error."""
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    env = {**os.environ, "FTMTL_NOTEBOOK_QUICK": "1", "FTMTL_NOTEBOOK_OUTPUT": str(output_dir)}
    env.pop("FTMTL_INBREAST_DIR", None)  # always the synthetic data here
    client = NotebookClient(notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute(env=env)
    return notebook


def code_cells(notebook: nbformat.NotebookNode) -> list:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def test_notebooks_are_stored_without_outputs():
    found = sorted(path.name for path in NOTEBOOKS.glob("*.ipynb"))
    assert found == sorted(ORDER)
    for name in ORDER:
        notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
        nbformat.validate(notebook)
        assert notebook.metadata["kernelspec"]["name"] == "python3", name
        for cell in code_cells(notebook):
            assert cell.outputs == [] and cell.execution_count is None, (name, cell.source[:60])
        assert 'os.environ.get("FTMTL_NOTEBOOK_QUICK"' in code_cells(notebook)[0].source, name


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=pytest.mark.slow) if name in TRAINING else name for name in ORDER
])
def test_notebook_runs_without_errors(name, output_dir):
    notebook = execute(name, output_dir)
    cells = code_cells(notebook)
    assert all(cell.execution_count is not None for cell in cells)
    errors = [output for cell in cells for output in cell.outputs
              if output.output_type == "error"]
    assert errors == []
    figures = [output for cell in cells for output in cell.outputs
               if "image/png" in output.get("data", {})]
    assert figures, f"{name} drew no figure"
    if name == "02_train_and_detect.ipynb":
        note = json.loads((output_dir / "02_model.json").read_text())
        assert Path(note["checkpoint"]).is_file()
    if name == "04_evaluate.ipynb":
        results = list(output_dir.glob("crossval_*/results.md"))
        assert len(results) == 1 and "Table 1" in results[0].read_text()
