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
from typing import Iterable, Sequence

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


# ----------------------------------------------------------------------------- method colours
# One colour per method name for the whole process (a notebook): the first figure that draws a
# method fixes its colour, and every later figure reuses it.
_COLORS: dict[str, tuple] = {}


def _palette() -> list[tuple]:
    import seaborn as sns
    extra = plt.get_cmap("tab20b").colors        # beyond the ten colour-blind-safe colours
    return [tuple(c) for c in sns.color_palette(PALETTE, 10)] + [tuple(c) for c in extra]


def natural_key(name: str) -> list:
    """Sort key that orders the numbers inside a name numerically (``SGN(3)`` before ``SGN(10)``).

    >>> sorted(["SGN(10)", "SGN(3)", "SGD(0.1)"], key=natural_key)
    ['SGD(0.1)', 'SGN(3)', 'SGN(10)']
    """
    import re
    return [(0, float(tok), "") if re.fullmatch(r"\d+(\.\d+)?(e-?\d+)?", tok) else (1, 0.0, tok)
            for tok in re.findall(r"\d+(?:\.\d+)?(?:e-?\d+)?|\D+", str(name))]


def method_colors(methods: Iterable[str]) -> dict[str, tuple]:
    """A fixed RGB colour for each method name, the same in every figure of the process.

    Names seen before keep their colour; new names take the first unused palette colours, in
    natural order (so the result does not depend on the order a figure lists them in).

    >>> a = method_colors(["SGD(0.1)", "SGN(3)"])
    >>> method_colors(["SGN(3)"])["SGN(3)"] == a["SGN(3)"]
    True
    """
    names = list(dict.fromkeys(str(m) for m in methods))
    palette = _palette()
    for name in sorted((n for n in names if n not in _COLORS), key=natural_key):
        used = set(_COLORS.values())
        free = [c for c in palette if c not in used]
        _COLORS[name] = free[0] if free else palette[len(_COLORS) % len(palette)]
    return {n: _COLORS[n] for n in names}


def mean_band(ax, x: Sequence[float], runs: Sequence[Sequence[float]], label: str, color=None,
              diverged: Sequence[bool] | None = None, **kw):
    """Draw the mean over seeds with a min–max band, and mark each diverged run with an ×.

    ``runs`` holds one curve per seed on the common axis ``x``; a shorter curve, or one with
    non-finite values, stopped early. At each ``x`` the mean and the band use the seeds still finite
    there. A run is diverged when ``diverged[i]`` says so, or (without ``diverged``) when it holds a
    non-finite value; its × sits at its last finite point, so a blow-up is shown, never clipped away.

    Args:
        ax: the matplotlib axes.
        x: the common x values.
        runs: per-seed y values (each at most ``len(x)`` long).
        label: legend label (the seed count is appended when there are several seeds).
        color: line colour (e.g. from :func:`method_colors`).
        diverged: optional per-run flags.
        **kw: passed to ``ax.plot`` for the mean line.

    Returns:
        The mean line (a ``Line2D``).
    """
    x = np.asarray(x, dtype=float)
    ys = np.full((len(runs), len(x)), np.nan)
    for i, run in enumerate(runs):
        vals = np.asarray(run, dtype=float)[: len(x)]
        ys[i, : len(vals)] = vals
    finite = np.isfinite(ys)
    if diverged is None:
        diverged = [bool(np.any(~np.isfinite(np.asarray(r, dtype=float)))) for r in runs]
    with np.errstate(all="ignore"):
        count = finite.sum(0)
        mean = np.where(count > 0, np.where(finite, ys, 0.0).sum(0) / np.maximum(count, 1), np.nan)
        lo = np.where(count > 0, np.where(finite, ys, np.inf).min(0), np.nan)
        hi = np.where(count > 0, np.where(finite, ys, -np.inf).max(0), np.nan)
    text = label if len(runs) < 2 else f"{label} ({len(runs)} seeds)"
    (line,) = ax.plot(x, mean, label=text, color=color, **kw)
    if len(runs) > 1:
        ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, lw=0)
    for i, flag in enumerate(diverged):
        last = np.flatnonzero(finite[i])
        if flag and len(last):
            ax.plot(x[last[-1]], ys[i, last[-1]], marker="x", ms=8, mew=2, color=line.get_color(), ls="none")
    return line
