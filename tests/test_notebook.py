"""docs/toy2d.ipynb runs from top to bottom (with a short training run) and is stored without outputs."""

import os

import nbformat
from nbclient import NotebookClient

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")
NOTEBOOK = os.path.join(DOCS, "toy2d.ipynb")


def test_the_notebook_is_stored_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code)


def test_the_notebook_trains_samples_and_draws_its_plots(monkeypatch):
    monkeypatch.setenv("ASM_TF_NOTEBOOK_STEPS", "100")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": DOCS}}).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    text = "".join(output.get("text", "") for output in outputs if output.output_type == "stream")
    assert "step 100/100: loss" in text and "Path not found" not in text
    pictures = [output for output in outputs if "image/png" in output.get("data", {})]
    assert len(pictures) == 2  # the three scatter plots, the noise std against sigma
