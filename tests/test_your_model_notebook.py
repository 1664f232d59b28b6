"""notebooks/your_model.ipynb: committed without outputs, and executed top to bottom (slow)."""

from __future__ import annotations

import json

import pytest

from conftest import REPO

NOTEBOOK = REPO / "notebooks" / "your_model.ipynb"


def test_committed_without_outputs():
    code = [c for c in json.loads(NOTEBOOK.read_text())["cells"] if c["cell_type"] == "code"]
    assert code and all(c["outputs"] == [] and c["execution_count"] is None for c in code)


@pytest.mark.slow
def test_the_notebook_runs():
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}).execute()
    text = "\n".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "0.weight" in text and "output" in text and "norm_weight" in text and "hidden" in text  # the roles table
    slopes = dict(line.split(": largest output/activation slope ") for line in text.splitlines() if "largest output/activation" in line)
    assert float(slopes["mup"]) <= 0.15 < 0.5 <= float(slopes["sp"])
