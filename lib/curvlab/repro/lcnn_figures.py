"""LCNN figures and tables: two-moons boundaries, softplus vs centred softplus, Table 1 and its probes.

Each figure function returns ``(figure, data)``, the data being exactly what is drawn (saved beside
the figure by ``plotting.save_figure``); each table function returns a DataFrame (saved by
``plotting.save_table``). Bars and points are seed means with min–max error bars; each variant
keeps its colour across figures (``plotting.method_colors``); time is the runs' measured training
clock (evaluation excluded).
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .. import plotting
from .lcnn import LABELS, MOON_BOX, TABLE1_VARIANTS
from .lcnn_verdicts import PDF, time_ratio, values

QUANTITIES = (("curvature", "C = ‖∇²ℓ‖ / (‖∇ℓ‖ + ε)"), ("hessian_norm", "‖∇²ℓ‖"), ("gradient_norm", "‖∇ℓ‖"))


def _variants(frame: pd.DataFrame) -> list[str]:
    return [v for v in TABLE1_VARIANTS if (frame["variant"] == v).any()]


def _colors(variants) -> dict:
    return plotting.method_colors([LABELS[v] for v in variants])


def _stats(vals) -> tuple[float, float, float]:
    v = np.asarray([x for x in vals if x is not None and math.isfinite(x)], dtype=float)
    return (float(v.mean()), float(v.min()), float(v.max())) if len(v) else (math.nan,) * 3


def softplus_curves(betas=(0.5, 1.0, 2.0, 5.0, 20.0), x=None) -> pd.DataFrame:
    """Fig. 1c data: softplus (1/β) log(1 + e^{βx}) and centred softplus (1/β)(log(1 + e^{βx}) − log 2).

    Float64 on ``x`` (default 121 points on [−3, 3], 0 included) for each β; pure computation.
    """
    import torch
    import torch.nn.functional as F

    from curvlab.lcnn.activations import centered_softplus

    x = torch.linspace(-3.0, 3.0, 121, dtype=torch.float64) if x is None else torch.as_tensor(x).double()
    rows = []
    for beta in betas:
        sp = F.softplus(x, beta=float(beta), threshold=1e6)
        csp = centered_softplus(x, float(beta)).detach()
        rows.append(
            pd.DataFrame(
                {
                    "beta": float(beta),
                    "x": x.numpy(),
                    "softplus": sp.numpy(),
                    "centered_softplus": csp.numpy(),
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def moons(frame: pd.DataFrame, title: str) -> tuple[plt.Figure, pd.DataFrame]:
    """Fig. 1a/b: the first seed's class-1 probability and 0.5 contour, standard vs LCNN, test points."""
    from curvlab import data

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), squeeze=False)
    rows = []
    first = frame.sort_values("seed").groupby("variant", sort=False).head(1)
    for ax, variant in zip(axes[0], ("standard", "lcnn")):
        sub = first[first["variant"] == variant]
        if not len(sub):
            continue
        rec = sub["record"].iloc[0]
        prob = np.asarray(rec["metrics"].get("grid_prob") or [], dtype=float)
        n = rec["config"]["grid"]
        x0, x1, y0, y1 = MOON_BOX
        gx, gy = np.linspace(x0, x1, n), np.linspace(y0, y1, n)
        if prob.size == n * n:
            p = prob.reshape(n, n)
            ax.contourf(gx, gy, p, levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.7)
            ax.contour(gx, gy, p, levels=[0.5], colors="k", linewidths=1.5)
            yy, xx = np.meshgrid(gy, gx, indexing="ij")
            rows.append(pd.DataFrame({"variant": variant, "x": xx.ravel(), "y": yy.ravel(), "prob": prob}))
        te = data.load("two_moons", "test", n=rec["config"]["n"], noise=rec["config"]["noise"], seed=0)
        xt, yt = te.x.numpy(), te.y.numpy()
        ax.scatter(xt[:, 0], xt[:, 1], c=yt, cmap="coolwarm", s=6, edgecolors="none")
        s = rec["summary"]
        ax.set_title(
            f"{LABELS[variant]}: accuracy {s.get('test_accuracy', math.nan):.1%}, "
            f"mean C {s.get('curvature_mean', math.nan):.3g} (seed {int(sub['seed'].iloc[0])})",
            fontsize=9,
        )
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        ax.grid(False)
    fig.suptitle(title)
    fig.tight_layout()
    return fig, pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def softplus(
    curves: pd.DataFrame, title: str = "Fig. 1c: softplus vs centred softplus"
) -> tuple[plt.Figure, pd.DataFrame]:
    """Fig. 1c: softplus (dashed) and centred softplus (solid) for each β, with ReLU."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    betas = sorted(curves["beta"].unique())
    colors = plotting.method_colors([f"β={b:g}" for b in betas])
    for b in betas:
        g = curves[curves["beta"] == b]
        ax.plot(g["x"], g["centered_softplus"], color=colors[f"β={b:g}"], label=f"CSP β={b:g}")
        ax.plot(g["x"], g["softplus"], color=colors[f"β={b:g}"], ls="--", lw=1)
    x = np.asarray(sorted(curves["x"].unique()))
    ax.plot(x, np.maximum(x, 0), color="k", lw=0.8, ls=":", label="ReLU")
    ax.axhline(0, color="grey", lw=0.5)
    ax.axvline(0, color="grey", lw=0.5)
    ax.set_xlabel("x")
    ax.set_ylabel("s(x)  (dashed: softplus)")
    ax.legend(fontsize=7)
    ax.set_title(title)
    fig.tight_layout()
    return fig, curves


def table1(frame: pd.DataFrame, label: str) -> pd.DataFrame:
    """Table 1: per variant, accuracy and mean (± per-point std) of C, ‖∇²ℓ‖, ‖∇ℓ‖, seed means."""
    rows = []
    for v in _variants(frame):
        row = {
            "variant": LABELS[v],
            "data": label,
            "seeds": int((frame["variant"] == v).sum()),
            "diverged": int(((frame["variant"] == v) & (frame["status"] == "diverged")).sum()),
            "test_accuracy": _stats(values(frame, v, "test_accuracy"))[0],
        }
        for q, _ in QUANTITIES:
            row[f"{q}_mean"] = _stats(values(frame, v, f"{q}_mean"))[0]
            row[f"{q}_std"] = _stats(values(frame, v, f"{q}_std"))[0]
        row["converged_fraction"] = _stats(values(frame, v, "converged_fraction"))[0]
        row["paper"] = PDF
        rows.append(row)
    return pd.DataFrame(rows)


def robustness_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Robust accuracy per variant and PGD-ℓ2 radius, and gradient stability (seed means)."""
    cols = sorted((c for c in frame.columns if str(c).startswith("robust_")), key=lambda c: float(c[7:]))
    rows = []
    for v in _variants(frame):
        row = {"variant": LABELS[v], "clean_accuracy": _stats(values(frame, v, "test_accuracy"))[0]}
        row.update({f"eps_{c[7:]}": _stats(values(frame, v, c))[0] for c in cols})
        row["gradient_stability"] = _stats(values(frame, v, "stability_mean"))[0]
        rows.append(row)
    return pd.DataFrame(rows)


def overhead_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Measured training seconds per variant and the per-seed ratio to standard (mean, min, max)."""
    rows = []
    for v in _variants(frame):
        t = _stats(frame.loc[frame["variant"] == v, "train_time_s"].astype(float))
        r = _stats(time_ratio(frame, v, "standard"))
        rows.append(
            {
                "variant": LABELS[v],
                "train_time_s": t[0],
                "ratio_to_standard": r[0],
                "ratio_min": r[1],
                "ratio_max": r[2],
            }
        )
    return pd.DataFrame(rows)


def _bars(ax, frame, column, ylabel, log=False):
    variants = _variants(frame)
    colors = _colors(variants)
    rows = []
    for i, v in enumerate(variants):
        m, lo, hi = _stats(values(frame, v, column))
        if math.isfinite(m):
            ax.bar(i, m, color=colors[LABELS[v]], yerr=[[m - lo], [hi - m]], capsize=3)
        rows.append({"variant": LABELS[v], "quantity": column, "mean": m, "min": lo, "max": hi})
    ax.set_xticks(range(len(variants)), [LABELS[v] for v in variants], rotation=35, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    return rows


def curvature_bars(frame: pd.DataFrame, title: str) -> tuple[plt.Figure, pd.DataFrame]:
    """Table 1 as bars: test accuracy and mean C, ‖∇²ℓ‖, ‖∇ℓ‖ per variant (log scale), seed min–max."""
    fig, axes = plt.subplots(1, 4, figsize=(17, 4.2))
    rows = _bars(axes[0], frame, "test_accuracy", "test accuracy")
    for ax, (q, name) in zip(axes[1:], QUANTITIES):
        rows += _bars(ax, frame, f"{q}_mean", f"mean {name}", log=True)
    fig.suptitle(title)
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def training_curves(frame: pd.DataFrame, title: str) -> tuple[plt.Figure, pd.DataFrame]:
    """Training objective and test accuracy per epoch, seed means with min–max bands."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    variants = _variants(frame)
    colors = _colors(variants)
    rows = []
    for v in variants:
        recs = [r for r in frame.loc[frame["variant"] == v, "record"]]
        epochs = recs[0]["metrics"]["epoch"]
        loss = [r["metrics"]["train_loss"][1:] for r in recs]
        acc = [r["metrics"].get("test_accuracy", []) for r in recs]
        div = [r.get("status") == "diverged" for r in recs]
        plotting.mean_band(axes[0], epochs[1:], loss, LABELS[v], colors[LABELS[v]], div)
        plotting.mean_band(axes[1], epochs, acc, LABELS[v], colors[LABELS[v]], div)
        for r in recs:
            m = r["metrics"]
            rows += [
                {
                    "variant": LABELS[v],
                    "seed": r["config"]["seed"],
                    "epoch": e,
                    "time_s": t,
                    "train_objective": lo,
                    "test_accuracy": a,
                }
                for e, t, lo, a in zip(m["epoch"], m["time"], m["train_loss"], m.get("test_accuracy", []))
            ]
    axes[0].set_ylabel("training objective (epoch mean)")
    axes[1].set_ylabel("test accuracy")
    for ax in axes:
        ax.set_xlabel("epoch")
    axes[1].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def robustness(frame: pd.DataFrame, title: str) -> tuple[plt.Figure, pd.DataFrame]:
    """Robust accuracy vs PGD-ℓ2 radius (radius 0: clean accuracy), seed means with min–max bands."""
    cols = sorted((c for c in frame.columns if str(c).startswith("robust_")), key=lambda c: float(c[7:]))
    radii = [0.0] + [float(c[7:]) for c in cols]
    fig, ax = plt.subplots(figsize=(6.8, 4.2))
    variants = _variants(frame)
    colors = _colors(variants)
    rows = []
    for v in variants:
        per = [values(frame, v, c) for c in ["test_accuracy", *cols]]
        runs = [list(x) for x in zip(*per)]
        plotting.mean_band(ax, radii, runs, LABELS[v], colors[LABELS[v]], marker="o")
        rows += [{"variant": LABELS[v], "radius": r, "accuracy": _stats(p)[0]} for r, p in zip(radii, per)]
    ax.set_xlabel("PGD-ℓ2 radius ε (pixels in [0, 1])")
    ax.set_ylabel("robust accuracy")
    ax.legend(fontsize=7)
    ax.set_title(title)
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def stability(frame: pd.DataFrame, title: str) -> tuple[plt.Figure, pd.DataFrame]:
    """Gradient stability per variant: mean cosine of ∇ₓℓ at x and x + noise."""
    fig, ax = plt.subplots(figsize=(6.8, 4.2))
    rows = _bars(ax, frame, "stability_mean", "cosine(∇ₓℓ(x), ∇ₓℓ(x + noise))")
    ax.set_title(title)
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def training_time(frame: pd.DataFrame, title: str) -> tuple[plt.Figure, pd.DataFrame]:
    """Measured training seconds per variant relative to standard (same seed), min–max over seeds."""
    fig, ax = plt.subplots(figsize=(6.8, 4.2))
    variants = _variants(frame)
    colors = _colors(variants)
    rows = []
    for i, v in enumerate(variants):
        m, lo, hi = _stats(time_ratio(frame, v, "standard"))
        if math.isfinite(m):
            ax.bar(i, m, color=colors[LABELS[v]], yerr=[[m - lo], [hi - m]], capsize=3)
        rows.append({"variant": LABELS[v], "ratio_mean": m, "ratio_min": lo, "ratio_max": hi})
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks(range(len(variants)), [LABELS[v] for v in variants], rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("training time / standard (measured)")
    ax.set_title(title)
    fig.tight_layout()
    return fig, pd.DataFrame(rows)
