"""ISAAC Newton reproduction: the figures, drawn from the tidy curve frames of :mod:`curvlab.repro.isaac`.

Conventions: one colour per method across every figure (:func:`color`), λ told apart by line style
and marker, legends ordered numerically, curves the mean over seeds with a min–max band, diverged
runs drawn up to their divergence and marked with an ×, never clipped away; the time axis is the
measured training wall-clock (evaluation excluded), and says so.
"""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .. import plotting

PAPER = "isaac"
TIME_AXIS = "training wall-clock (s, evaluation excluded)"
_FAMILY = {"GD": "black", "ζ*": "C0", "ζ": "C1", "K-FAC": "C2", "Adam": "C3", "SGD+momentum": "C4"}
_LINE = {0.1: "-", 0.01: "--"}                       # line style by λ
_MARKER = {"ζ*": ("o", 4, "full"), "ζ": ("s", 6, "none"), "K-FAC": ("^", 9, "none")}   # by method


def color(method: str) -> str:
    """The method's colour: by its family (the text before " λ=" / " batch" / " +"), else by hash."""
    fam = method.split(" λ=")[0].split(" batch")[0].split(" last")[0]
    if fam in _FAMILY:
        return _FAMILY[fam]
    return f"C{5 + sum(map(ord, fam)) % 5}"


def _lam(method: str) -> float | None:
    return float(method.split("λ=")[1].split()[0]) if "λ=" in method else None


def style(method: str) -> dict:
    """Colour and marker from the method, line style from its λ (solid 0.1, dashed 0.01).

    Markers grow and turn hollow from ζ* to ζ to K-FAC, so curves that coincide (K-FAC takes ζ's
    steps by construction) stay visible on top of each other.
    """
    fam = method.split(" λ=")[0].split(" batch")[0]
    marker, size, fill = _MARKER.get(fam, (None, 4, "full"))
    return {"color": color(method), "ls": _LINE.get(_lam(method), "-"), "marker": marker,
            "markersize": size, "fillstyle": fill, "lw": 2.2 if method == "GD" else 1.5}


def mean_band(ax, frame: pd.DataFrame, x: str, y: str, label: str, **kw) -> None:
    """Mean of ``y`` over seeds against ``x`` with a min–max band; an × where a run diverged."""
    agg = frame.groupby(x)[y].agg(["mean", "min", "max"]).reset_index()
    ax.plot(agg[x], agg["mean"], label=label, **kw)
    if frame["seed"].nunique() > 1:
        ax.fill_between(agg[x], agg["min"], agg["max"], color=kw.get("color"), alpha=0.2, lw=0)
    failed = frame[frame["outcome"] == "diverged"]
    for _, run in failed.groupby("seed"):
        last = run[np.isfinite(run[y])].tail(1)
        ax.plot(last[x], last[y], "x", color=kw.get("color"), markersize=9, mew=2)


def ordered_legend(ax, **kw) -> None:
    """A legend with GD first, then methods by name and λ in increasing order."""
    handles, labels = ax.get_legend_handles_labels()
    key = {lab: (lab != "GD", lab.split(" λ=")[0], _lam(lab) or 0.0) for lab in labels}
    pairs = sorted(zip(labels, handles), key=lambda p: key[p[0]])
    ax.legend([h for _, h in pairs], [lab for lab, _ in pairs], **kw)


def curve_panels(df: pd.DataFrame, panels, title: str, fig_id: str, by: str = "setting",
                 legend_title: str | None = None) -> str:
    """One panel per (x, y, ylabel, log-y) of ``panels``, one mean ± band curve per ``by`` value."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4))
    for ax, (x, y, ylabel, logy) in zip(np.atleast_1d(axes), panels):
        for name, grp in df.groupby(by, sort=False):
            mean_band(ax, grp, x, y, name, **style(name))
        ax.set(xlabel=TIME_AXIS if x == "time_s" else x, ylabel=ylabel, yscale="log" if logy else "linear")
    ordered_legend(np.atleast_1d(axes)[-1], fontsize=8, title=legend_title)
    fig.suptitle(title)
    fig.tight_layout()
    line = plotting.save_figure(fig, PAPER, fig_id, df.drop(columns=["time_s"], errors="ignore"))
    plt.show()
    return line


def heatmap(ax, values: pd.DataFrame, fmt=lambda v: f"{v:.2f}", cmap: str = "viridis_r") -> None:
    """``values`` (NaN = diverged) as a heat-map with readable cell text.

    Each cell's text is black or white, whichever contrasts with the cell's colour (by luminance).
    """
    arr = values.to_numpy(dtype=float)
    im = ax.imshow(arr, cmap=cmap, aspect="auto")
    ax.set_xticks(range(arr.shape[1]), list(values.columns))
    ax.set_yticks(range(arr.shape[0]), list(values.index))
    for (i, j), v in np.ndenumerate(arr):
        if math.isnan(v):
            ax.text(j, i, "diverged", ha="center", va="center", fontsize=8, color="black")
            continue
        r, g, b, _ = im.cmap(im.norm(v))
        ax.text(j, i, fmt(v), ha="center", va="center", fontsize=8,
                color="black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white")
    plt.colorbar(im, ax=ax)


def fig3(heat: pd.DataFrame, budget: str, fig_id: str = "fig3_autoencoder_grids") -> str:
    """Figure 3: log10 final training loss over (λ_a, λ_g) per dataset; GD's value in each title."""
    datasets = list(dict.fromkeys(heat["dataset"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(6.2 * len(datasets), 3.8))
    for ax, ds in zip(np.atleast_1d(axes), datasets):
        d = heat[(heat["dataset"] == ds) & (heat["setting"] != "GD")].copy()
        d["λ_g"] = d["lg"].map(lambda v: "∞ (ζ*)" if v is None or not np.isfinite(v) else f"{v:g}")
        tab = d.pivot(index="la", columns="λ_g", values="log_loss").sort_index(ascending=False)
        tab.index = [f"{v:g}" for v in tab.index]
        heatmap(ax, tab)
        gd = heat[(heat["dataset"] == ds) & (heat["setting"] == "GD")]["log_loss"].iloc[0]
        ax.set(xlabel="λ_g", ylabel="λ_a", title=f"{ds} (real): log10 training loss; GD {gd:.2f}")
    fig.suptitle(f"Figure 3 (reduced) — auto-encoders, {budget}")
    fig.tight_layout()
    line = plotting.save_figure(fig, PAPER, fig_id, heat)
    plt.show()
    return line


def fig1(cells: pd.DataFrame, title: str, fig_id: str = "fig1_grid") -> str:
    """Figure 1 (reduced): best-lr loss and accuracy against λ_a for ζ*, each finite-λ_g ζ, and GD."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for ax, col, ylabel, logy in [(axes[0], "loss", "final training loss", True),
                                  (axes[1], "accuracy", "final test accuracy", False)]:
        gd = cells[cells["setting"] == "GD"][col].iloc[0]
        ax.axhline(gd, label="GD", **{**style("GD"), "marker": None})
        for name, grp in cells[cells["setting"] != "GD"].groupby("label", sort=False):
            grp = grp.sort_values("la")
            ax.plot(grp["la"], grp[col], label=name, color=color(name.split(",")[0]),
                    ls="-" if name == "ζ*" else ":", marker="o" if name == "ζ*" else "s")
        ax.set(xscale="log", yscale="log" if logy else "linear", xlabel="λ_a", ylabel=ylabel)
    ordered_legend(axes[1], fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    line = plotting.save_figure(fig, PAPER, fig_id, cells)
    plt.show()
    return line


def fig6(df: pd.DataFrame, title: str, fig_id: str = "fig6_last_layer") -> str:
    """Figure 6: test accuracy per lr (colour: method; line style: lr); runs at chance are labelled."""
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    lrs = sorted(df["lr"].unique(), reverse=True)
    for (method, lr), grp in df.groupby(["setting", "lr"]):
        out = grp["outcome"].iloc[-1]
        label = f"{method}, lr {lr:g}" + ("" if out == "ok" else f" ({out})")
        mean_band(ax, grp, "step", "test_accuracy", label, color=color(method),
                  ls=["-", "--", ":", "-."][lrs.index(lr) % 4], marker="o", markersize=3)
    ax.axhline(0.1, color="grey", lw=0.8, ls=":", label="chance (10 %)")
    ax.set(xlabel="step", ylabel="test accuracy", title=title)
    ax.legend(fontsize=7)
    line = plotting.save_figure(fig, PAPER, fig_id, df.drop(columns=["time_s"], errors="ignore"))
    plt.show()
    return line


def table2(table: pd.DataFrame, title: str, fig_id: str) -> str:
    """Table 2: our and the paper's time and memory ratios to the gradient, per model."""
    fig, axes = plt.subplots(1, 2, figsize=(13, 4))
    for ax, col, paper_col in [(axes[0], "time ratio (ours)", "time ratio (paper CPU)"),
                               (axes[1], "memory ratio (ours)", "memory ratio (paper)")]:
        for method in ["ζ*", "ζ", "K-FAC"]:
            d = table[table["method"] == method]
            ax.plot(d["model"], d[col], "o-", color=color(method), label=f"{method} (ours)")
            ax.plot(d["model"], d[paper_col], "x:", color=color(method), label=f"{method} (paper)")
        ax.set(yscale="log", ylabel=col.replace(" (ours)", " to the gradient"))
        ax.tick_params(axis="x", rotation=20)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    line = plotting.save_figure(fig, PAPER, fig_id, table)
    plt.show()
    return line
