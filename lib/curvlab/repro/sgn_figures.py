"""Figures of the SGN benchmarks: curves with seed spread, overlays on the reference, ρ/α summaries.

Conventions: one colour per config everywhere (:func:`colors`), SGD solid and SGN dashed, legends in
numeric order, the mean over seeds drawn with its min–max band. Nothing is clipped away: a diverged run
ends with an ×, and values beyond the panel's upper limit (blow-ups) are drawn at the limit as ▲ and
named with their maximum in the legend.

The ``draw_*`` functions draw, save (``figures/sgn/<id>.png`` with its data as ``.csv``), display
and close one figure, and print its summary line without the clock-dependent columns.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from curvlab import plotting

from . import sgn_readouts as ro
from . import sgn_reference

PAPER = "sgn"

KNOWN = ["SGD(0.001)", "SGD(0.01)", "SGD(0.1)", "SGD(0.1) longer", "SGD(1)", "SGD(10)",
         "SGN(1)", "SGN(2)", "SGN(3)", "SGN(5)", "SGN(10)", "SGN(20)", "SGN(30)", "SGN(40)"]
YLABEL = {"train_loss": "train loss", "test_loss": "test loss (MSE)", "test_accuracy": "test accuracy"}


def colors(labels=KNOWN) -> dict:
    """Fixed colour per config label (``plotting.method_colors`` when present, else tab20 by KNOWN)."""
    try:
        from curvlab.plotting import method_colors
        return method_colors(KNOWN + [lab for lab in labels if lab not in KNOWN])
    except ImportError:
        pal = plt.get_cmap("tab20").colors
        return {lab: pal[i % 20] for i, lab in enumerate(KNOWN + [lab for lab in labels if lab not in KNOWN])}


def ceiling(mean: pd.DataFrame, y: str) -> float | None:
    """Upper limit of a loss panel: 30× the largest early (epoch ≤ 2) loss of the non-diverged configs."""
    ok = mean[(mean["status"] == "ok") & (mean["epoch"] <= 2)][y]
    ok = ok[np.isfinite(ok)]
    return 30 * float(ok.max()) if len(ok) else None


def _curve(ax, g, x, y, lab, color, top, **kw):
    g = g[np.isfinite(g[y]) & np.isfinite(g[x])]
    if not len(g):
        return
    over = g[y] > top if top else np.zeros(len(g), bool)
    text = lab + (" (diverged)" if g["status"].iloc[0] == "diverged" else "")
    text += f" ▲ max {g[y].max():.1e}" if over.any() else ""
    yy = np.minimum(g[y], top) if top else g[y]
    ax.plot(g[x], yy, "-" if lab.startswith("SGD") else "--", color=color, label=text, **kw)
    if f"{y}_lo" in g and kw.get("lw", 1.4) < 3:
        lo, hi = g[f"{y}_lo"], g[f"{y}_hi"]
        cap = top or np.inf
        ax.fill_between(g[x], np.minimum(lo, cap), np.minimum(hi, cap), color=color, alpha=0.15)
    if over.any():
        ax.plot(g[x][over], np.full(int(over.sum()), top), "^", color=color, ms=4)
    if g["status"].iloc[0] == "diverged":
        ax.plot(g[x].iloc[-1], yy.iloc[-1], "x", color=color, ms=8)


def curves(df: pd.DataFrame, bench: str, title: str, clock: str, log_time: bool = True):
    """2 × 2: train loss and test metric against measured seconds (row 1) and epochs (row 2)."""
    metric, mean = ro.metric_of(bench), ro.epoch_means(df)
    order, col = ro.config_order(mean["config"]), colors(mean["config"])
    fig, axes = plt.subplots(2, 2, figsize=(12, 7.5))
    for r, x in enumerate(["time", "epoch"]):
        for c, y in enumerate(["train_loss", metric]):
            ax, top = axes[r, c], ceiling(mean, y) if y != "test_accuracy" else None
            for lab in order:
                g = mean[mean["config"] == lab]
                _curve(ax, g[g[x] > 0] if (x == "time" and log_time) else g, x, y, lab, col[lab], top, lw=1.4)
            ax.set_xlabel(clock if x == "time" else "epochs")
            ax.set_ylabel(YLABEL[y])
            ax.set_xscale("log" if (x == "time" and log_time) else "linear")
            ax.set_yscale("log" if y != "test_accuracy" else "linear")
    axes[0, 1].legend(fontsize=7, ncol=2)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig, mean


def _overlay_panel(ax, frame, y, order, col, top, **kw):
    for lab in order:
        g = frame[(frame["config"] == lab) & (frame["sgd_epochs"] > 0)]
        _curve(ax, g, "sgd_epochs", y, lab, col[lab], top, **kw)
    ax.set_xscale("log")
    ax.set_xlabel("SGD-epoch equivalents (time / own mean SGD epoch time)")
    ax.set_ylabel(YLABEL[y])
    if y != "test_accuracy":
        ax.set_yscale("log")


def overlay(df: pd.DataFrame, ref: pd.DataFrame, bench: str, title: str, separate: bool, ref_title: str = ""):
    """Our curves and the reference's (only the configs we ran), x in SGD-epoch equivalents.

    ``separate``: the reference's data differ from ours (a stand-in), so its curves get their own
    labelled row instead of sharing our axes.
    """
    metric, ours = ro.metric_of(bench), ro.epoch_means(df)
    ref = ref[ref["config"].isin(set(ours["config"]))]
    theirs = ro.epoch_means(ref)
    ours["sgd_epochs"] = ours["time"] / ro.sgd_epoch_time(df)
    theirs["sgd_epochs"] = theirs["time"] / ro.sgd_epoch_time(ref)
    order, col = ro.config_order(ours["config"]), colors(ours["config"])
    fig, axes = plt.subplots(2 if separate else 1, 2, figsize=(12, 8 if separate else 4.2), squeeze=False)
    for c, y in enumerate(["train_loss", metric]):
        top = ceiling(ours, y) if y != "test_accuracy" else None
        _overlay_panel(axes[0, c], ours, y, order, col, top, lw=1.3)
        ref_ax = axes[1, c] if separate else axes[0, c]
        style = dict(lw=1.3) if separate else dict(lw=4, alpha=0.3)
        _overlay_panel(ref_ax, theirs, y, order, col, None if separate else top, **style)
    axes[0, 1].legend(fontsize=7, ncol=2, title=None if separate else "thin: ours; wide, pale: reference",
                      title_fontsize=7)
    if separate:
        axes[0, 0].set_title("ours: " + title, fontsize=9)
        axes[1, 0].set_title("reference: " + ref_title, fontsize=9)
    fig.suptitle(title if not separate else f"{title} | reference on its own axes", fontsize=10)
    fig.tight_layout()
    both = pd.concat([ours.assign(source="ours"), theirs.assign(source="reference")], ignore_index=True)
    return fig, both


def window_stats(tr: pd.DataFrame, windows: int = 12) -> pd.DataFrame:
    """Per (benchmark, config): median ρ and share of backtracked steps (α < 1) in log-spaced windows.

    Windows [1, 10), [10, 101) for 100 steps and 2 windows: steps 1-9 all backtracked, 1 of 91 after.

    >>> t = pd.DataFrame({"benchmark": "b", "config": "SGN(3)", "step": range(1, 101),
    ...                   "rho": 1e-4, "alpha": [0.5] * 10 + [1.0] * 90})
    >>> w = window_stats(t, windows=2)
    >>> w["backtracked"].round(2).tolist(), w["median_rho"].tolist()
    ([1.0, 0.01], [0.0001, 0.0001])
    """
    rows = []
    for (b, lab), g in tr.groupby(["benchmark", "config"], sort=False):
        edges = np.unique(np.geomspace(1, g["step"].max() + 1, windows + 1).round())
        for lo, hi in zip(edges[:-1], edges[1:]):
            w = g[(g["step"] >= lo) & (g["step"] < hi)]
            if len(w):
                rows.append({"benchmark": b, "config": lab, "step": float(np.sqrt(lo * max(hi - 1, lo))),
                             "median_rho": float(w["rho"].median()),
                             "backtracked": float((w["alpha"] < 1).mean())})
    return pd.DataFrame(rows)


def rho_alpha(tr: pd.DataFrame, title: str, names: dict):
    """Per benchmark: median ρ (top) and share of backtracked steps (bottom) per log-spaced window."""
    w = window_stats(tr)
    benches = list(dict.fromkeys(w["benchmark"]))
    col = colors(w["config"])
    fig, axes = plt.subplots(2, len(benches), figsize=(3.1 * len(benches), 5.5), squeeze=False)
    for j, b in enumerate(benches):
        g = w[w["benchmark"] == b]
        for lab in ro.config_order(g["config"]):
            h = g[g["config"] == lab]
            axes[0, j].plot(h["step"], h["median_rho"], "o-", ms=2.5, lw=1, color=col[lab], label=lab)
            axes[1, j].plot(h["step"], 100 * h["backtracked"], "o-", ms=2.5, lw=1, color=col[lab])
        axes[0, j].set(xscale="log", yscale="log", title=names.get(b, b))
        axes[1, j].set(xscale="log", xlabel="iteration (log-spaced windows)", ylim=(-3, 103))
        axes[0, j].legend(fontsize=6)
    axes[0, 0].set_ylabel("median ρ (damping)")
    axes[1, 0].set_ylabel("backtracked steps (%, α < 1)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig, w


def untimed(line: str) -> str:
    """A ``save_figure`` summary line without its clock-dependent parts (those vary from run to run).

    >>> untimed("figures/sgn/x.png: 3 rows; time [0, 2]; epoch [0, 1]")
    'figures/sgn/x.png: 3 rows; epoch [0, 1]'
    """
    return "; ".join(p for p in line.split("; ") if not p.startswith("time"))


def show(fig, fig_id: str, data: pd.DataFrame, bench: str | None = None) -> str:
    """Save ``fig`` and its data (with a leading ``benchmark`` column when given), display and close it.

    Returns:
        The printed summary line (:func:`untimed`).
    """
    data = data.copy()
    if bench is not None:
        data.insert(0, "benchmark", bench)
    line = untimed(plotting.save_figure(fig, PAPER, fig_id, data))
    print(line)
    plt.show()
    plt.close(fig)
    return line


def draw(df: pd.DataFrame, bench: str, title: str, fig_id: str, clock: str) -> pd.DataFrame:
    """The learning curves of :func:`curves`, shown and saved as ``fig_id``; their seed means."""
    fig, mean = curves(df, bench, title, clock)
    show(fig, fig_id, mean, bench)
    return mean


STAND_IN_REFERENCE = "real CIFAR-10 (reference logs, GTX TITAN X) - not comparable with the stand-in"


def draw_overlay(df: pd.DataFrame, bench: str, title: str, fig_id: str,
                 separate: bool = False) -> pd.DataFrame:
    """Ours against the reference's logs (:func:`overlay`), shown and saved as ``fig_id``.

    ``separate``: our data are a stand-in for the reference's, whose curves get their own row.
    """
    fig, both = overlay(df, sgn_reference.frame(bench), bench, title, separate, STAND_IN_REFERENCE)
    show(fig, fig_id, both, bench)
    return both


def draw_rho_alpha(tr: pd.DataFrame, title: str, names: dict, fig_id: str) -> pd.DataFrame:
    """The ρ / α windows of :func:`rho_alpha`, shown and saved as ``fig_id`` (summary line printed whole)."""
    fig, w = rho_alpha(tr, title, names)
    print(plotting.save_figure(fig, PAPER, fig_id, w))
    plt.show()
    plt.close(fig)
    return w
