"""notebooks/hf-model.ipynb runs end to end at its smallest size (`smoke`: the bundled
SmolLM2 on synthetic data, a few steps, CPU) in a real kernel of this Python, writing into a
temporary folder: both approaches trained, saved with model cards, compared on the examples,
ROC curves drawn.

    .venv/bin/python -m pytest -q tests/test_notebook.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "hf-model.ipynb"


def test_notebook_cells_have_no_stored_outputs():
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


@pytest.mark.slow
def test_notebook_runs_end_to_end_at_the_smoke_size(tmp_path, monkeypatch, bundled_model_dir):
    import nbformat
    from jupyter_client.kernelspec import NATIVE_KERNEL_NAME
    from nbclient import NotebookClient

    out = tmp_path / "out"
    for name, value in {
        "NOSHOW_NB_SIZE": "smoke",
        "NOSHOW_NB_OUTPUT": str(out),
        "NOSHOW_NB_DATA": "synthetic",  # runs without the real file, same rows every time
        "HF_HUB_OFFLINE": "1",
        "WANDB_MODE": "offline",
        "OMP_NUM_THREADS": "2",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("HF_TOKEN", "WANDB_API_KEY", "NOSHOW_NB_MODEL", "NOSHOW_NB_HUB_REPO"):
        monkeypatch.delenv(name, raising=False)  # never log in or push from a test

    nb = nbformat.read(NOTEBOOK, as_version=4)
    # First, a cell that says which Python the kernel runs: it must be this one (the venv).
    nb.cells.insert(0, nbformat.v4.new_code_cell("import sys; print(sys.executable)"))
    client = NotebookClient(
        nb,
        kernel_name=NATIVE_KERNEL_NAME,  # "python3": ipykernel of the Python running pytest
        timeout=900,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},  # as Jupyter opens it
    )
    client.execute()
    assert nb.cells[0].outputs[0]["text"].strip() == sys.executable

    summary = json.loads((out / "summary.json").read_text())
    assert summary["size"] == "smoke" and summary["data"] == "synthetic"
    assert set(summary["test_roc_auc"]) == {"generative", "classifier", "tabular baseline"}
    assert all(0.0 <= v <= 1.0 for v in summary["test_roc_auc"].values())
    assert len(summary["examples"]) >= 3
    for row in summary["examples"]:
        assert all(0.0 <= row[k] <= 1.0 for k in ("P generative", "P classifier", "P baseline"))
    for approach in ("generative", "classifier"):
        folder = Path(summary["adapters"][approach])
        assert folder.parent == out / "adapters"
        card = json.loads((folder / "card.json").read_text())
        assert card["approach"] == approach and card["data"]["synthetic"] is True
        assert (folder / "README.md").read_text().startswith("---\nlicense:")
    assert (out / "roc.png").stat().st_size > 10_000
    images = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if "image/png" in o.get("data", {})
    ]
    assert images, "the ROC figure is shown in the notebook"
