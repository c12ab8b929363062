"""The SGN paper's claims as functions of records (long tables from :func:`sgn_readouts.records_frame`).

Each returns a :class:`curvlab.verdicts.Verdict`: status, the numbers behind it and the evidence (seeds
and their min–max spread). A gap within the spread between seeds is "inconclusive"; a best SGD learning
rate at the edge of its grid makes an SGN-vs-SGD verdict "inconclusive (lr at grid edge)". A diverged
run scores +inf loss / 0 accuracy (it lost), never NaN.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from curvlab.verdicts import Verdict, best_on_grid, compare, spread

from . import sgn_readouts as ro

RESULT = {"a": "reproduced", "b": "differs", "inconclusive": "inconclusive"}


def _per_seed(values: pd.DataFrame, metric: str, higher: bool) -> dict:
    """Map config -> {seed: value}; diverged or missing values are scored as lost."""
    worst = 0.0 if higher else math.inf
    out: dict = {}
    for r in values.itertuples(index=False):
        v = getattr(r, metric)
        ok = np.isfinite(v) and getattr(r, "status", "ok") == "ok"
        out.setdefault(r.config, {})[r.seed] = float(v) if ok else worst
    return out


def _best(per_seed: dict, method: str, higher: bool) -> tuple[str | None, dict]:
    cands = {k: v for k, v in per_seed.items() if k.startswith(method) and "longer" not in k}
    if not cands:
        return None, {}
    sign = 1.0 if higher else -1.0
    best = max(cands, key=lambda k: sign * np.mean(list(cands[k].values())))
    return best, cands[best]


def _text(lab: str, vals: dict, pct: bool) -> str:
    """``label mean [lo–hi] (n seeds)`` in the one verdict format (``Spread.text``)."""
    fmt = (lambda v: f"{100 * v:.1f} %") if pct else "{:.3g}".format
    return f"{lab} {spread(list(vals.values())).text(fmt)}"


def sgn_vs_sgd(values: pd.DataFrame, metric: str, claim: str, *, higher: bool, sgd_grid=None,
               paper: str = "") -> Verdict:
    """Best SGN(k) beats the best SGD(lr) on per-seed ``metric`` (``values``: config, seed, metric, status).

    ``sgd_grid`` (the learning rates run) enables the grid-edge check on the best SGD rate.
    """
    per = _per_seed(values, metric, higher)
    sgn_lab, sgn = _best(per, "SGN", higher)
    sgd_lab, sgd = _best(per, "SGD", higher)
    if not sgn or not sgd:
        return Verdict(claim, "inconclusive", "SGN or SGD records missing", {}, paper=paper)
    status = RESULT[compare(list(sgn.values()), list(sgd.values()), higher_is_better=higher)]
    numbers = {"best_sgn": sgn_lab, "sgn_mean": float(np.mean(list(sgn.values()))), "best_sgd": sgd_lab,
               "sgd_mean": float(np.mean(list(sgd.values()))), "seeds": sorted(sgn)}
    if sgd_grid and len(sgd_grid) > 1:
        lrs = [lr for lr in sgd_grid if f"SGD({lr:g})" in per]
        scores = [np.mean(list(per[f"SGD({lr:g})"].values())) for lr in lrs]
        _, at_edge = best_on_grid(lrs, scores, higher_is_better=higher)
        numbers["sgd_lr_at_edge"] = bool(at_edge)
        status = "inconclusive (lr at grid edge)" if at_edge and status != "differs" else status
    pct = metric == "test_accuracy"
    evidence = f"{_text(sgn_lab, sgn, pct)} vs {_text(sgd_lab, sgd, pct)} (seed mean [min–max])"
    return Verdict(claim, status, evidence, numbers, paper=paper)


def diverges(df: pd.DataFrame, config: str, claim: str, paper: str = "") -> Verdict:
    """``config`` diverges in every seed: reproduced; in none: differs; in some: inconclusive."""
    runs = df[df["config"] == config].groupby("seed")["status"].agg(lambda s: (s == "diverged").any())
    if runs.empty:
        return Verdict(claim, "inconclusive", f"no {config} records", {}, paper=paper)
    n, k = len(runs), int(runs.sum())
    status = "reproduced" if k == n else "differs" if k == 0 else "inconclusive"
    return Verdict(claim, status, f"{config} diverged in {k} of {n} seeds", {"diverged": k, "seeds": n},
                   paper=paper)


def below(values: pd.DataFrame, config: str, metric: str, threshold: float, claim: str,
          paper: str = "", above: bool = False) -> Verdict:
    """Every seed of ``config`` ends below ``threshold`` (or, ``above=True``, at or above it)."""
    v = values[values["config"].str.fullmatch(config)]
    if v.empty:
        return Verdict(claim, "inconclusive", f"no {config} records", {}, paper=paper)
    x = v[metric].to_numpy(float)
    ok = (x >= threshold) if above else (x < threshold)
    status = "reproduced" if ok.all() else "differs" if not ok.any() else "inconclusive"
    s = spread(list(np.nan_to_num(x, nan=np.inf)))
    evidence = (f"{config}: {metric} {s.mean:.3g} [{s.lo:.3g}–{s.hi:.3g}, n={s.n}] "
                f"{'≥' if above else '<'} {threshold:g} in {int(ok.sum())} of {len(ok)} runs")
    return Verdict(claim, status, evidence, {"mean": s.mean, "lo": s.lo, "hi": s.hi, "n": s.n}, paper=paper)


def final_frame(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per (config, seed): last value, status (input of the verdicts)."""
    return ro.final_values(df, metric)


def epoch_frame(df: pd.DataFrame, metric: str, epoch: float) -> pd.DataFrame:
    """Per (config, seed): value at an epoch end, status of the run."""
    at = ro.at_epoch(df, metric, epoch)
    status = df.groupby(["config", "seed"])["status"].last().rename("status").reset_index()
    return at.merge(status, on=["config", "seed"], how="left")


def after_T_frame(df: pd.DataFrame, metric: str, T: float) -> pd.DataFrame:
    """Per (config, seed): the last evaluation with measured clock ≤ T (the honest read-out)."""
    rows = []
    for (lab, seed), g in df.groupby(["config", "seed"]):
        g = g.dropna(subset=[metric])
        g = g[g["time"] <= T]
        rows.append({"config": lab, "seed": seed, metric: float(g[metric].iloc[-1]) if len(g) else np.nan,
                     "status": g["status"].iloc[-1] if len(g) else "ok"})
    return pd.DataFrame(rows)


def sgd_beats_every_sgn(values: pd.DataFrame, metric: str, sgd: str, claim: str, paper: str = "") -> Verdict:
    """The unadvertised Fashion ordering: ``sgd`` (e.g. SGD(0.1)) above the best SGN(k)."""
    per = _per_seed(values, metric, True)
    sgn_lab, sgn = _best(per, "SGN", True)
    if sgd not in per or not sgn:
        return Verdict(claim, "inconclusive", "records missing", {}, paper=paper)
    status = RESULT[compare(list(per[sgd].values()), list(sgn.values()))]
    evidence = f"{_text(sgd, per[sgd], True)} vs {_text(sgn_lab, sgn, True)}"
    return Verdict(claim, status, evidence, {"sgd": sgd, "best_sgn": sgn_lab}, paper=paper)


def regression_claims(df: pd.DataFrame, bench: str, tag: str, sgd_grid) -> list[Verdict]:
    """Boston / sine: best SGN below best SGD at the end of the budget; SGD(1) diverges."""
    fin = final_frame(df, "test_loss")
    out = [sgn_vs_sgd(fin, "test_loss", f"{bench} ({tag}): best SGN below best SGD, final test MSE",
                      higher=False, sgd_grid=sgd_grid),
           diverges(df, "SGD(1)", f"{bench} ({tag}): SGD(1) diverges")]
    if bench == "sine_10":
        out.append(below(fin, r"SGN\(10\)", "test_loss", 2e-4, f"sine_10 ({tag}): SGN(10) below 2e-4"))
    if bench == "sine_100":
        out.append(below(fin, r"SGD\((0\.001|0\.01|0\.1)\)", "test_loss", 0.45,
                         f"sine_100 ({tag}): SGD (lr ≤ 0.1) stays at test MSE ≥ 0.45", above=True))
    return out


def bench_label(bench: str, tag: str) -> str:
    """The benchmark's name in claims; CIFAR-10 is named as the stand-in it is unless real data ran.

    >>> bench_label("cifar10", "ci")
    'cifar10 stand-in (fashion_mnist_32)'
    """
    from curvlab import data
    if bench == "cifar10" and (tag == "ci" or not data.available("cifar10")):
        return "cifar10 stand-in (fashion_mnist_32)"
    return bench


def classification_claims(df: pd.DataFrame, bench: str, tag: str, times) -> list[Verdict]:
    """MNIST / Fashion / CIFAR-10: epoch-1 ordering; orderings after T on the measured clock."""
    name = bench_label(bench, tag)
    out = [sgn_vs_sgd(epoch_frame(df, "test_accuracy", 1.0), "test_accuracy",
                      f"{name} ({tag}): best SGN above every SGD after epoch 1", higher=True)]
    for T in times:
        at = after_T_frame(df, "test_accuracy", T)
        if bench == "fashion":
            out.append(sgd_beats_every_sgn(at, "test_accuracy", "SGD(0.1)",
                                           f"fashion ({tag}) @ {T:g} s measured: SGD(0.1) above every SGN"))
        else:
            out.append(sgn_vs_sgd(at, "test_accuracy", f"{name} ({tag}) @ {T:g} s measured: best SGN above "
                                  "best SGD", higher=True))
    if bench == "fashion":
        out.append(diverges(df, "SGD(1)", f"fashion ({tag}): SGD(1) diverges"))
    return out
