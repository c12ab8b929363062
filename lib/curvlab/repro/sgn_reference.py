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


# Test accuracy (%) after T seconds as printed in the reference's README, keyed (benchmark, T).
README_TABLE = {
    ("mnist", 25): {"SGD(0.001)": 17.2, "SGD(0.01)": 35.3, "SGD(0.1)": 71.9, "SGD(1)": 89.8, "SGD(10)": 11.6,
                    "SGN(3)": 92.9, "SGN(5)": 92.8, "SGN(10)": 91.6},
    ("mnist", 100): {"SGD(0.001)": 25.4, "SGD(0.01)": 58.2, "SGD(0.1)": 85.5, "SGD(1)": 93.0, "SGD(10)": 93.0,
                     "SGN(3)": 94.0, "SGN(5)": 93.7, "SGN(10)": 91.5},
    ("fashion", 50): {"SGD(0.001)": 63.1, "SGD(0.01)": 82.3, "SGD(0.1)": 86.7, "SGN(2)": 84.5, "SGN(3)": 85.2,
                      "SGN(5)": 85.6, "SGN(10)": 85.4},
    ("fashion", 150): {"SGD(0.001)": 76.5, "SGD(0.01)": 85.5, "SGD(0.1)": 88.5, "SGN(2)": 86.2,
                       "SGN(3)": 87.2, "SGN(5)": 87.8, "SGN(10)": 86.0},
    ("cifar10", 650): {"SGD(0.001)": 10.0, "SGD(0.01)": 19.0, "SGD(0.1)": 63.1, "SGN(2)": 44.9,
                       "SGN(3)": 49.3, "SGN(5)": 56.9, "SGN(10)": 64.7},
    ("cifar10", 2000): {"SGD(0.1) longer": 60.9, "SGN(10)": 71.0},
}


def readme_check(table: dict | None = None, frames: dict | None = None,
                 tolerance: float = 0.1) -> pd.DataFrame:
    """The README table recomputed from the logs by the reference's rule (epoch ⌊T / t̄⌋, seed mean).

    Args:
        table: ``(benchmark, T) -> {config: printed %}`` (default :data:`README_TABLE`).
        frames: ``benchmark -> long table`` (default :func:`frame` of each benchmark named in ``table``).
        tolerance: A cell matches when the recomputed value is within this many points of the printed one.

    Returns:
        One row per cell: ``benchmark, T (s), config, README, recomputed`` (percent, 0.1),
        ``epoch`` (the rule's epoch) and ``match ±<tolerance>``.
    """
    from .sgn_readouts import read_reference_rule  # sgn_readouts imports this module
    table = README_TABLE if table is None else table
    frames = frames or {}
    rows = []
    for (bench, T), cells in table.items():
        df = frames[bench] if bench in frames else frame(bench)
        ours = read_reference_rule(df, T, "test_accuracy")
        for lab, printed in cells.items():
            value, e, _ = ours.get(lab, (np.nan, 0, False))
            rows.append({"benchmark": bench, "T (s)": T, "config": lab, "README": printed,
                         "recomputed": round(100 * value, 1), "epoch": e,
                         f"match ±{tolerance:g}": bool(abs(100 * value - printed) <= tolerance + 1e-9)})
    return pd.DataFrame(rows)


def readme_check_text(check: pd.DataFrame) -> str:
    """The one-line summary of :func:`readme_check`.

    >>> c = pd.DataFrame({"benchmark": ["mnist", "cifar10"], "T (s)": [25, 650],
    ...                   "config": ["SGN(3)", "SGD(1)"], "match ±0.1": [True, False]})
    >>> readme_check_text(c)
    '1 of 2 README cells recomputed within ±0.1; mismatches: cifar10 SGD(1) @ 650 s'
    """
    col = next(c for c in check.columns if c.startswith("match ±"))
    bad = check[~check[col]]
    names = ", ".join(f"{r['benchmark']} {r['config']} @ {r['T (s)']:g} s" for _, r in bad.iterrows())
    return (f"{int(check[col].sum())} of {len(check)} README cells recomputed within {col[len('match '):]}; "
            f"mismatches: {names or 'none'}")
