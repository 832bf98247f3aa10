"""docs/tutorial.ipynb: stored without outputs, and run top to bottom on a fresh Jupyter kernel (nbclient),
as a learner would: any cell's error fails the test. About a minute on two idle cores (the notebook says
which steps it trains and why)."""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import nbformat
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "docs" / "tutorial.ipynb"


def _code_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


def _text(cell, name: str) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream" and o.name == name)


def _cell(nb, fragment: str):
    (cell,) = [c for c in _code_cells(nb) if fragment in c.source]
    return cell


def test_the_notebook_is_stored_without_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert len(_code_cells(nb)) >= 10
    for cell in _code_cells(nb):
        assert cell.outputs == [], f"stored with outputs: {cell.source[:60]!r}"
        assert cell.execution_count is None, f"stored with an execution count: {cell.source[:60]!r}"
    assert nb.metadata.kernelspec.name == "python3"


def test_the_notebook_runs_top_to_bottom_on_a_fresh_kernel(mnist_dir, tmp_path, monkeypatch) -> None:
    # The kernel is a child process: it inherits these (and the test's temporary cache).
    monkeypatch.setenv("PYFLUX_MNIST_DATA", str(mnist_dir))
    monkeypatch.setenv("PYFLUX_MNIST_OFFLINE", "1")  # the notebook must not need the network
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    where = {"metadata": {"path": str(tmp_path)}}  # the kernel's working directory
    # Raises CellExecutionError, naming the cell, at the first cell that fails:
    NotebookClient(nb, timeout=600, kernel_name="python3", resources=where).execute()
    nbformat.write(nb, tmp_path / "executed.ipynb")  # kept for a look at what a learner sees

    outputs = [o for c in _code_cells(nb) for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 10  # every picture was drawn

    train = _cell(nb, 'pm.train("flux-tutorial", backend=BACKEND')
    # train() showed its progress bar in the notebook: tqdm's widget where ipywidgets is installed, else its
    # text bar on the cell's stderr.
    if importlib.util.find_spec("ipywidgets") is not None:
        assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in train.outputs)
    else:
        assert "200/200" in _text(train, "stderr")
    (card,) = [o.data["text/html"] for o in train.outputs if "text/html" in o.get("data", {})]
    assert 'class="pyflux-mnist-card"' in card and "Training run: flux-tutorial" in card

    accuracy = re.search(r"test accuracy (0\.\d+)", _text(_cell(nb, "recomputed from the weights"), "stdout"))
    assert accuracy is not None and float(accuracy.group(1)) > 0.9  # the tutorial's 0.92

    mine = _text(_cell(nb, "predict_files(model, mine)"), "stdout")
    assert "seven.png: read as 7" in mine  # a drawn 7, through predict's preprocessing

    compare = _text(_cell(nb, "COMPARE_STEPS = 50"), "stdout")
    if "PyTorch is not installed" not in compare:
        diff = re.search(r"largest relative difference in the loss over 50 steps: (\S+)", compare)
        assert diff is not None and float(diff.group(1)) < 1e-4  # the parity tests' bound
    loaded = _cell(nb, "pm.load_model(saved)")
    assert any("pyflux-mnist-card" in o.get("data", {}).get("text/html", "") for o in loaded.outputs)
