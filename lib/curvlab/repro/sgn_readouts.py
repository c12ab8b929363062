"""Read-out rules for the SGN benchmarks: records to a long table, seed means, values "after T seconds".

Long format: one row per evaluation, ``config, method, seed, epoch, time, train_loss, test_loss,
test_accuracy, status``. ``time`` is the *measured* clock of each record (training only for records
written by :func:`curvlab.repro.sgn.train`, training + evaluation for the legacy paper records; the
reference's logs have only ``e × tot_time / epochs``).

Two rules read a value after T seconds:

* **reference rule** (the reference's notebook): mean time per epoch over seeds t̄, epoch
  e = ⌊T / t̄⌋, seed-mean value after epoch e (assumes a constant time per epoch);
* **measured clock**: per seed, the last evaluation whose measured clock is ≤ T; then the seed mean.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from .sgn_reference import REGRESSION, label

NUMERIC = ["train_loss", "test_loss", "test_accuracy"]


def metric_of(bench: str) -> str:
    """``test_loss`` for the regressions, ``test_accuracy`` for the classifiers."""
    return "test_loss" if bench in REGRESSION else "test_accuracy"


def records_frame(records: list[dict]) -> pd.DataFrame:
    """Records -> the long table (one row per evaluation)."""
    rows = []
    for r in records:
        c, m = r["config"], r["metrics"]
        lab = label(c["method"], c["lr"] if c["method"] == "SGD" else c["cg"], c.get("longer", False))
        n = len(m["epoch"])
        for i in range(n):
            rows.append({"config": lab, "method": c["method"], "seed": c["seed"], "epoch": m["epoch"][i],
                         "time": m["time"][i], "train_loss": m["train_loss"][i],
                         "test_loss": m.get("test_loss", [np.nan] * n)[i],
                         "test_accuracy": m.get("test_accuracy", [np.nan] * n)[i], "status": r["status"]})
    return pd.DataFrame(rows, columns=["config", "method", "seed", "epoch", "time", *NUMERIC, "status"])


def config_order(labels) -> list[str]:
    """SGD by learning rate (a 'longer' run after its rate), then SGN by k: numeric, not text order.

    >>> config_order(["SGN(10)", "SGD(1)", "SGN(2)", "SGD(0.1)"])
    ['SGD(0.1)', 'SGD(1)', 'SGN(2)', 'SGN(10)']
    """
    def key(lab):
        value = float(lab[4:].split(")")[0])
        return (0 if lab.startswith("SGD") else 1, value, "longer" in lab)
    return sorted(set(labels), key=key)


def epoch_ends(df: pd.DataFrame) -> pd.DataFrame:
    """Rows at epoch ends (epoch > 0), plus the last row of a run that diverged mid-epoch."""
    last = df.index.isin(df.groupby(["config", "seed"]).tail(1).index)
    keep = ((df["epoch"] == df["epoch"].round()) | (last & (df["status"] == "diverged"))) & (df["epoch"] > 0)
    return df[keep]


def time_per_epoch(df: pd.DataFrame) -> pd.Series:
    """Per config: the seed mean of (clock at the last evaluation) / (epochs at that point)."""
    last = df[df["epoch"] > 0].groupby(["config", "seed"]).tail(1)
    return (last["time"] / last["epoch"]).groupby(last["config"]).mean()


def _interp_seeds(seeds: list[pd.DataFrame], cols: list[str]) -> pd.DataFrame:
    grid = np.unique(np.concatenate([h["epoch"].values for h in seeds]))
    if len(grid) > 1500:
        grid = np.unique(np.round(np.linspace(grid[0], grid[-1], 1500)))
    out = {"epoch": grid}
    for c in cols:
        vals = []
        for h in seeds:
            ok = np.isfinite(h[c].values)
            v = np.full(len(grid), np.nan)
            if ok.sum() > 1:
                v = np.interp(grid, h["epoch"].values[ok], h[c].values[ok])
            v[(grid < h["epoch"].min()) | (grid > h["epoch"].max())] = np.nan
            vals.append(v)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=RuntimeWarning)      # all-NaN columns stay NaN
            out[c] = np.nanmean(np.vstack(vals), axis=0)
            out[c + "_lo"], out[c + "_hi"] = np.nanmin(np.vstack(vals), 0), np.nanmax(np.vstack(vals), 0)
    return pd.DataFrame(out)


def epoch_means(df: pd.DataFrame) -> pd.DataFrame:
    """Seed mean and min–max (``<col>_lo``, ``<col>_hi``) per (config, epoch end).

    With it the seed-mean *measured* clock at that epoch (``time``); seeds thinned at different epochs
    are interpolated onto one grid within each seed's range. ``status`` is "diverged" when any seed diverged.
    """
    ends = epoch_ends(df)
    cols = [*NUMERIC, "time"]
    parts = []
    for lab, g in ends.groupby("config", sort=False):
        seeds = [h.sort_values("epoch") for _, h in g.groupby("seed")]
        parts.append(_interp_seeds(seeds, cols).assign(config=lab))
    start = df[df["epoch"] == 0].groupby("config", sort=False)[NUMERIC].mean().reset_index()
    start["epoch"], start["time"] = 0.0, 0.0
    out = pd.concat([start, *parts], ignore_index=True).sort_values(["config", "epoch"], kind="stable")
    status = df.groupby("config")["status"].agg(lambda s: "diverged" if (s == "diverged").any() else "ok")
    out["status"] = out["config"].map(status)
    return out.reset_index(drop=True)


def read_reference_rule(df: pd.DataFrame, T: float, metric: str) -> dict:
    """Per config: (seed-mean value after epoch ⌊T / t̄⌋, that epoch, ended before T).

    A run whose epoch budget ended before T is read at its end (flag True); a diverged run that stopped
    before T gives NaN.
    """
    out = {}
    per_epoch = time_per_epoch(df)
    for lab, g in df.groupby("config"):
        if lab not in per_epoch.index or not per_epoch[lab] > 0:
            out[lab] = (np.nan, 0, False)
            continue
        e = int(math.floor(T / per_epoch[lab] + 1e-9))
        last = int(math.floor(g["epoch"].max()))
        if e > last and (g["status"] == "ok").all():
            out[lab] = (float(g[g["epoch"] == last][metric].mean()), last, True)
            continue
        at = g[g["epoch"] == e]
        out[lab] = (np.nan, e, False) if at.empty else (float(at[metric].mean()), e, False)
    return out


def read_measured(df: pd.DataFrame, T: float, metric: str) -> dict:
    """Per config: seed mean of each seed's last evaluation with measured clock ≤ T (NaN if none)."""
    out = {}
    for lab, g in df.groupby("config"):
        vals = []
        for _, s in g.groupby("seed"):
            before = s.dropna(subset=[metric])
            before = before[before["time"] <= T]
            vals.append(float(before[metric].iloc[-1]) if len(before) else np.nan)
        out[lab] = float(np.mean(vals))
    return out


def ci_read_out_times(df: pd.DataFrame) -> list[float]:
    """Ci scale: half and all of the SGN(3) run's measured clock (seed mean), rounded up to 0.01 s."""
    end = float(df[df["config"] == "SGN(3)"].groupby("seed")["time"].max().mean())
    return [math.ceil(50 * end) / 100, math.ceil(100 * end) / 100]


def after_T_table(df: pd.DataFrame, bench: str, times, scale_label: str) -> pd.DataFrame:
    """Test metric after each T by both rules, one row per (T, config)."""
    metric = metric_of(bench)
    rows = []
    for T in times:
        ref, wall = read_reference_rule(df, T, metric), read_measured(df, T, metric)
        for lab in config_order(df["config"]):
            v, e, ended = ref[lab]
            rows.append({"benchmark": bench, "scale": scale_label, "T (s)": T, "config": lab,
                         "reference rule": v, "epoch (rule)": e, "measured clock": wall[lab],
                         "ended before T": ended})
    return pd.DataFrame(rows)


def final_values(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per (config, seed): the last finite value of ``metric`` (the end of the budget)."""
    last = df.dropna(subset=[metric]).groupby(["config", "seed"]).tail(1)
    return last[["config", "seed", metric, "status"]].reset_index(drop=True)


def at_epoch(df: pd.DataFrame, metric: str, epoch: float) -> pd.DataFrame:
    """Per (config, seed): ``metric`` at an epoch end (missing where a run never got there)."""
    rows = df[(df["epoch"] == float(epoch))].dropna(subset=[metric])
    return rows[["config", "seed", metric]].reset_index(drop=True)


def sgd_epoch_time(df: pd.DataFrame) -> float:
    """Mean measured time per SGD epoch (non-diverged, 'longer' runs excluded).

    It is the unit of the SGD-epoch-equivalent axis used to compare with the reference across hardware.
    """
    keep = (df["method"] == "SGD") & (df["epoch"] > 0) & (df["status"] == "ok")
    sgd = df[keep & ~df["config"].str.contains("longer")]
    last = sgd.groupby(["config", "seed"])[["time", "epoch"]].max()
    return float((last["time"] / last["epoch"]).mean())


def blow_ups(df: pd.DataFrame, config: str, metric: str, threshold: float) -> pd.DataFrame:
    """Per seed of one config: first epoch with ``metric`` > threshold (NaN if never), its max and last value.

    >>> d = pd.DataFrame({"config": "SGD(1)", "seed": [1, 1, 1, 2, 2], "epoch": [0, 1, 2, 0, 1],
    ...                   "test_loss": [1.0, 5e3, 4e3, 1.0, 0.5]})
    >>> blow_ups(d, "SGD(1)", "test_loss", 1e3)["first_epoch"].tolist()
    [1.0, nan]
    """
    rows = []
    for seed, g in df[df["config"] == config].groupby("seed"):
        g = g.dropna(subset=[metric]).sort_values("epoch")
        above = g[g[metric] > threshold]
        rows.append({"seed": seed, "first_epoch": float(above["epoch"].iloc[0]) if len(above) else np.nan,
                     "max": float(g[metric].max()), "last": float(g[metric].iloc[-1])})
    return pd.DataFrame(rows)
