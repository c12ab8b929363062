"""Strip execution noise from executed notebooks so that commits show only real changes.

Removes papermill's run metadata and per-cell timings, widget state and cell metadata other than
tags; numbers cell ids and execution counts deterministically (nbval needs execution counts: it
treats a cell without one as never run). Usage:
``python tools/clean_notebook.py notebooks/*.ipynb``
"""
import sys

import nbformat

KEEP_NOTEBOOK_METADATA = ("kernelspec", "jupytext")


def clean(nb):
    nb.metadata = {k: v for k, v in nb.metadata.items() if k in KEEP_NOTEBOOK_METADATA}
    nb.metadata.setdefault("kernelspec", {"name": "python3", "display_name": "Python 3",
                                          "language": "python"})
    nb.metadata["language_info"] = {"name": "python"}
    count = 0
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell-{i:03d}"
        tags = [t for t in cell.metadata.get("tags", []) if t != "injected-parameters"]
        cell.metadata = {"tags": tags} if tags else {}
        if cell.cell_type == "code":
            count += 1
            cell.execution_count = count
            for out in cell.get("outputs", []):
                if "execution_count" in out:
                    out["execution_count"] = count
                if isinstance(out.get("metadata"), dict):
                    out["metadata"] = {}
    return nb


if __name__ == "__main__":
    for path in sys.argv[1:]:
        nb = nbformat.read(path, as_version=4)
        nbformat.write(clean(nb), path)
