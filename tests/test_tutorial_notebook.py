"""docs/tutorial.ipynb runs as written, in a real Jupyter kernel (nbclient), offline."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "tutorial.ipynb"


@pytest.mark.slow
def test_the_tutorial_notebook_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    monkeypatch.setenv("AEZOO_OFFLINE", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "2"))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), \
        "commit the notebook without outputs"
    client = nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # a cell that raises fails the test with its traceback
    outputs = [out for cell in notebook.cells if cell.cell_type == "code"
               for out in cell.outputs]
    text = "".join(out.get("text", "") + out.get("data", {}).get("text/plain", "")
                   for out in outputs)  # rich shows its lines as display data in Jupyter
    assert "epoch 2/2" in text and "saved runs/cae-upsample-" in text  # progress was shown
    assert any("image/png" in out.get("data", {}) for out in outputs), "no picture shown"
    assert list(tmp_path.glob("runs/cae-upsample-*/model.safetensors"))
