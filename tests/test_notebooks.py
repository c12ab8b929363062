"""Every notebook pair is in sync, executed, parametrised and free of run noise."""
from pathlib import Path

import jupytext
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))


def test_there_are_notebooks():
    assert SOURCES, "no notebooks/NN_*.py found"


@pytest.mark.parametrize("py", SOURCES, ids=lambda p: p.stem)
def test_pair_in_sync_and_clean(py):
    ipynb = py.with_suffix(".ipynb")
    assert ipynb.exists(), f"{ipynb.name} missing: run `make reproduce`"
    text = jupytext.read(py)
    nb = nbformat.read(ipynb, as_version=4)
    def cells(n):
        return [(c.cell_type, c.source.strip()) for c in n.cells]
    assert cells(text) == cells(nb), f"{py.name} and {ipynb.name} differ: run `make sync`"
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and "SCALE = \"ci\"" in params[0].source and "SEED" in params[0].source
    assert "papermill" not in nb.metadata
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), \
        "execution counts not normalised: run tools/clean_notebook.py (make reproduce does)"
    assert code[-1].outputs, f"{ipynb.name} is not executed: its last cell has no output"
    assert not any(o.get("output_type") == "error" for c in code for o in c.outputs)
