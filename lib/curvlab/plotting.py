"""Figures and tables: one seaborn theme; every figure saved with the data it draws.

nbval does not compare images, so :func:`save_figure` writes ``figures/<paper>/<id>.png`` *and*
``figures/<paper>/<id>.csv`` (the data drawn) and returns a short, rounded text summary of that data
for the notebook to print: that printed line is what the notebook check compares.
:func:`save_table` writes ``tables/<paper>/<id>.csv`` and a Markdown twin.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .data import REPO_ROOT

PALETTE = "colorblind"


def set_theme() -> None:
    """The project's one look: seaborn ``whitegrid``, colour-blind palette, fixed sizes and dpi."""
    import seaborn as sns
    sns.set_theme(context="notebook", style="whitegrid", palette=PALETTE, font_scale=0.9)
    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 120, "savefig.bbox": "tight",
                         "figure.figsize": (6.4, 4.0), "axes.titlesize": "medium",
                         # fixed metadata keeps regenerated PNGs byte-stable
                         "svg.hashsalt": "curvlab"})


def output_root(kind: str) -> Path:
    """``figures/`` or ``tables/`` at the repository root (``$CURVLAB_OUTPUTS`` overrides the root)."""
    return Path(os.environ.get("CURVLAB_OUTPUTS", REPO_ROOT)) / kind


def round_sig(x: float, digits: int = 2) -> float:
    """Round to ``digits`` significant digits (the precision nbval compares)."""
    if x is None or not np.isfinite(x) or x == 0:
        return x
    return float(f"{x:.{digits}g}")


def summarize(data: pd.DataFrame, digits: int = 2, max_columns: int = 6) -> str:
    """One line: rows, and per numeric column its min and max to ``digits`` significant digits."""
    parts = [f"{len(data)} rows"]
    numeric = data.select_dtypes("number")
    for col in list(numeric.columns)[:max_columns]:
        vals = numeric[col].to_numpy(dtype=float)
        vals = vals[np.isfinite(vals)]
        if len(vals):
            parts.append(f"{col} [{round_sig(vals.min(), digits):g}, {round_sig(vals.max(), digits):g}]")
    return "; ".join(parts)


def save_figure(fig, paper: str, fig_id: str, data: pd.DataFrame | dict, digits: int = 2) -> str:
    """Save ``fig`` as ``figures/<paper>/<fig_id>.png`` and ``data`` as ``.csv``; return a summary line.

    ``data`` is what the figure draws, in long form (one row per point). The PNG carries no
    timestamp, so re-running with the same data gives the same bytes.
    """
    folder = output_root("figures") / paper
    folder.mkdir(parents=True, exist_ok=True)
    frame = data if isinstance(data, pd.DataFrame) else pd.DataFrame(data)
    png, csv = folder / f"{fig_id}.png", folder / f"{fig_id}.csv"
    _atomic(png, lambda p: fig.savefig(p, format="png", metadata={"Software": None}))
    _atomic(csv, lambda p: frame.to_csv(p, index=False, float_format="%.6g"))
    return f"figures/{paper}/{fig_id}.png: {summarize(frame, digits)}"


def save_table(table: pd.DataFrame, paper: str, table_id: str, float_format: str = "%.4g") -> str:
    """Save ``tables/<paper>/<table_id>.csv`` and ``.md``; return the Markdown text."""
    folder = output_root("tables") / paper
    folder.mkdir(parents=True, exist_ok=True)
    _atomic(folder / f"{table_id}.csv", lambda p: table.to_csv(p, index=False, float_format=float_format))
    md = to_markdown(table, float_format)
    _atomic(folder / f"{table_id}.md", lambda p: Path(p).write_text(md + "\n"))
    return md


def to_markdown(table: pd.DataFrame, float_format: str = "%.4g") -> str:
    """A pipe table without the ``tabulate`` dependency."""
    def fmt(v):
        if isinstance(v, (float, np.floating)):
            return "—" if not np.isfinite(v) else float_format % v
        return str(v)
    cols = [str(c) for c in table.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


def _atomic(path: Path, write) -> None:
    """``write(tmp)`` then rename onto ``path``: readers see the old file or the new one, never half.

    The temporary name is unique (``mkstemp``), so two processes writing the same figure at once do
    not collide; the last rename wins. It keeps ``path``'s suffix, which matplotlib reads as format.
    """
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
