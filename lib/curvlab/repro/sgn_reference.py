"""The SGN reference's published per-epoch logs, as carried in ``reference/sgn/`` (see its README).

``frame(benchmark)`` gives one row per (run, epoch) in the same long format as our records
(``config, method, seed, epoch, time, train_loss, test_loss, test_accuracy, status``). The reference
logged only each run's total time, so its clock at epoch e is ``e * tot_time / epochs``: a constant
time per epoch, measured on the reference's hardware (laptop CPU for boston / sine, GTX TITAN X for
the classifiers) and therefore comparable with ours only as a ratio, e.g. in SGD-epoch equivalents.

Example:
    >>> from curvlab.repro import sgn_reference
    >>> sorted(sgn_reference.frame("boston")["config"].unique())[:2]
    ['SGD(0.001)', 'SGD(0.01)']
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from curvlab.data import REPO_ROOT

BENCHMARKS = ("boston", "sine_10", "sine_100", "mnist", "fashion", "cifar10")
REGRESSION = ("boston", "sine_10", "sine_100")


def reference_dir() -> Path:
    """``reference/sgn`` at the repository root (inside the clone, never beside it)."""
    return REPO_ROOT / "reference" / "sgn"


def label(method: str, value: float, longer: bool = False) -> str:
    """Config label used everywhere: ``SGD(0.1)``, ``SGD(0.1) longer``, ``SGN(3)``.

    >>> label("SGD", 0.1, True), label("SGN", 3.0)
    ('SGD(0.1) longer', 'SGN(3)')
    """
    if method == "SGD":
        return f"SGD({value:g})" + (" longer" if longer else "")
    if method == "SGN":
        return f"SGN({int(value)})"
    raise ValueError(f"method must be 'SGD' or 'SGN', got {method!r}")


@lru_cache(maxsize=1)
def runs() -> pd.DataFrame:
    """Every epoch row of ``runs.csv.gz`` (all benchmarks)."""
    return pd.read_csv(reference_dir() / "runs.csv.gz")


@lru_cache(maxsize=1)
def configs() -> dict:
    """``configs.json``: per-run published config, totals and full-log ρ/α statistics."""
    return json.loads((reference_dir() / "configs.json").read_text())


@lru_cache(maxsize=1)
def steps() -> pd.DataFrame:
    """The thinned per-iteration ρ and α of the SGN runs (``steps.csv.gz``)."""
    return pd.read_csv(reference_dir() / "steps.csv.gz")


def run_table(benchmark: str | None = None) -> pd.DataFrame:
    """One row per run: benchmark, config label, seed, tot_time, epochs logged and the ρ/α statistics."""
    rows = []
    for r in configs()["runs"]:
        if benchmark is not None and r["benchmark"] != benchmark:
            continue
        rows.append({"benchmark": r["benchmark"], "config": label(r["solver"], r["value"], r["longer"]),
                     "method": r["solver"], "seed": r["seed"], "tot_time": r["tot_time"],
                     "epochs": r["n_epochs_logged"], "iterations": r["tot_iterations"], **r.get("steps", {})})
    return pd.DataFrame(rows)


def frame(benchmark: str) -> pd.DataFrame:
    """The reference's per-epoch logs of one benchmark in our long format (time = e * tot_time / epochs).

    Raises:
        ValueError: for an unknown benchmark name.
    """
    if benchmark not in BENCHMARKS:
        raise ValueError(f"benchmark must be one of {BENCHMARKS}, got {benchmark!r}")
    ep = runs()[runs()["benchmark"] == benchmark].copy()
    totals = run_table(benchmark).set_index(["config", "seed"])
    ep["config"] = [label(s, v, bool(lg)) for s, v, lg in zip(ep["solver"], ep["value"], ep["longer"])]
    per_epoch = totals["tot_time"] / totals["epochs"]
    ep["time"] = ep["epoch"] * per_epoch.reindex(pd.MultiIndex.from_arrays([ep["config"], ep["seed"]])).values
    ep["status"] = np.where(np.isfinite(ep["train_loss"]), "ok", "diverged")
    ep = ep.rename(columns={"solver": "method"})
    cols = ["config", "method", "seed", "epoch", "time", "train_loss", "test_loss", "test_accuracy", "status"]
    return ep[cols].reset_index(drop=True)
