"""GroupedNewton figures: learning curves, H̄ interaction heat-maps, per-group rates, invariance.

Each function draws from records (or the tidy frames of :mod:`curvlab.repro.grouped_newton`) and
returns ``(figure, data)``, the data being exactly what is drawn (saved beside the figure by
``plotting.save_figure``). Curves are seed means with a min–max band (``plotting.mean_band``);
each method keeps its colour across figures (``plotting.method_colors``); time axes are the runs'
measured training clock.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .. import plotting
from .grouped_newton import label
from .grouped_newton_verdicts import normalised


def curves_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per run and epoch: ``config`` label, seed, epoch, training-clock seconds, NLL, accuracy."""
    rows = []
    for r in frame.itertuples():
        m = r.record["metrics"]
        for i, epoch in enumerate(m["epoch"]):
            if epoch != round(epoch):
                continue
            rows.append({"config": label(r.record["config"]), "seed": r.seed, "epoch": epoch,
                         "time_s": m["time"][i], "train_nll": m["train_loss"][i],
                         "test_accuracy": m.get("test_accuracy", [np.nan] * len(m["epoch"]))[i],
                         "status": r.status})
    return pd.DataFrame(rows)


def _order(configs) -> list[str]:
    return sorted(set(configs), key=lambda c: (not c.startswith("GroupedNewton"), plotting.natural_key(c)))


def curves(frame: pd.DataFrame, title: str) -> tuple[plt.Figure, pd.DataFrame]:
    """Training NLL vs epochs and vs measured training seconds, test accuracy vs epochs; mean ± range."""
    df = curves_frame(frame)
    configs = _order(df["config"])
    colors = plotting.method_colors(configs)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    means = []
    for c in configs:
        sub = df[df["config"] == c]
        per_seed = [g.sort_values("epoch") for _, g in sub.groupby("seed")]
        epochs = sorted(sub["epoch"].unique())
        diverged = [bool((g["status"] != "ok").any()) for g in per_seed]
        style = {"lw": 2.2} if c.startswith("GroupedNewton") else {"lw": 1.2, "ls": "--"}
        plotting.mean_band(axes[0], epochs[1:], [g["train_nll"].to_numpy()[1:] for g in per_seed], c,
                           colors[c], diverged, **style)
        clock = sub.groupby("epoch")["time_s"].mean().reindex(epochs).to_numpy()
        plotting.mean_band(axes[1], clock[1:], [g["train_nll"].to_numpy()[1:] for g in per_seed], c,
                           colors[c], diverged, **style)
        plotting.mean_band(axes[2], epochs, [g["test_accuracy"].to_numpy() for g in per_seed], c,
                           colors[c], diverged, **style)
        mean = sub.groupby("epoch")[["time_s", "train_nll", "test_accuracy"]].mean().reset_index()
        means.append(mean.assign(config=c))
    for ax, xl, yl in zip(axes, ["epoch", "training seconds (measured; evaluation excluded)", "epoch"],
                          ["training NLL (epoch mean)", "training NLL (epoch mean)", "test accuracy"]):
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
    axes[0].set_yscale("log")
    axes[1].set_yscale("log")
    axes[2].legend(fontsize=8, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    return fig, pd.concat(means, ignore_index=True)


def first_history(frame: pd.DataFrame, variant: str = "full") -> tuple[list[dict], int]:
    """The GroupedNewton history of the first seed (and that seed)."""
    rows = frame[(frame["method"] == "GroupedNewton") & (frame["variant"] == variant)].sort_values("seed")
    rec = rows["record"].iloc[0]
    return rec["summary"].get("history", []), int(rows["seed"].iloc[0])


def heatmaps(history: list[dict], labels: list[str], title: str, points: int = 3
             ) -> tuple[plt.Figure, pd.DataFrame]:
    """Normalised H̄_st / √(|H̄_ss||H̄_tt|) at ``points`` recomputations spread over training."""
    usable = [h for h in history if h.get("H") is not None]
    pick = sorted({int(round(i)) for i in np.linspace(0, len(usable) - 1, points)}) if usable else []
    fig, axes = plt.subplots(1, max(len(pick), 1), figsize=(4.6 * max(len(pick), 1), 4.2), squeeze=False)
    rows = []
    for ax, i in zip(axes[0], pick):
        n = normalised(usable[i]["H"])
        im = ax.imshow(n, cmap="RdBu_r", vmin=-1, vmax=1)
        ax.grid(False)
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.set_title(f"step {usable[i]['step']}", fontsize=10)
        for s in range(len(n)):
            for t in range(len(n)):
                rows.append({"step": usable[i]["step"], "s": labels[s], "t": labels[t],
                             "normalised_H": n[s, t]})
    if pick:
        fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="H̄_st / √(|H̄_ss| |H̄_tt|)")
    fig.suptitle(title)
    return fig, pd.DataFrame(rows)


def lr_traces(history: list[dict], labels: list[str], title: str) -> tuple[plt.Figure, pd.DataFrame]:
    """The per-group rates λ₁ max(η_s, 0) applied after each recomputation (log scale; 0 not drawn)."""
    rows = [{"step": h["step"], "group": labels[s], "lr": v} for h in history if h.get("lrs")
            for s, v in enumerate(h["lrs"])]
    df = pd.DataFrame(rows)
    colors = plotting.method_colors(labels)
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for g in labels:
        sub = df[(df["group"] == g) & (df["lr"] > 0)] if len(df) else df
        if len(sub):
            ax.plot(sub["step"], sub["lr"], marker=".", label=g, color=colors[g])
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("learning rate of the group (λ₁ η_s)")
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(title)
    fig.tight_layout()
    return fig, df


def invariance(traces: dict[str, dict[str, list[float]]], title: str) -> tuple[plt.Figure, pd.DataFrame]:
    """Training loss per step, original vs one layer rescaled ×100, for each optimizer."""
    fig, axes = plt.subplots(1, len(traces), figsize=(4.6 * len(traces), 3.8), squeeze=False)
    rows = []
    for ax, (name, runs) in zip(axes[0], traces.items()):
        for which, style in (("original", "-"), ("rescaled", ":")):
            ax.plot(range(1, len(runs[which]) + 1), runs[which], style, lw=2 if which == "original" else 2.5,
                    label=which)
            rows += [{"optimizer": name, "model": which, "step": i + 1, "loss": v}
                     for i, v in enumerate(runs[which])]
        ax.set_yscale("log")
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig, pd.DataFrame(rows)
