"""curvlab.repro.lcnn_verdicts: every claim's rule on synthetic records, each status reached."""

import math

import numpy as np
import pandas as pd
import pytest

from curvlab.repro import lcnn as R
from curvlab.repro import lcnn_figures as FIG
from curvlab.repro import lcnn_verdicts as V

BASE = {
    "test_accuracy": 0.80,
    "curvature_mean": 10.0,
    "hessian_norm_mean": 1.0,
    "gradient_norm_mean": 0.1,
    "robust_0.1": 0.5,
    "robust_0.2": 0.3,
    "stability_mean": 0.6,
    "train_time_s": 10.0,
    "grid_curvature_mean": 20.0,
}


def _frame(overrides=None, seeds=(1, 2, 3), jitter=0.01, status=None):
    """One row per variant × seed: BASE, times ``1 + jitter·(seed-2)``, with per-variant overrides."""
    rows = []
    for v in R.TABLE1_VARIANTS:
        for s in seeds:
            row = {"variant": v, "seed": s, "status": (status or {}).get(v, "ok")}
            for k, val in {**BASE, **(overrides or {}).get(v, {})}.items():
                row[k] = val * (1 + jitter * (s - 2))
            rows.append(row)
    return pd.DataFrame(rows)


def test_values_lose_diverged_runs():
    frame = _frame(status={"lcnn": "diverged"})
    assert all(math.isnan(v) for v in V.values(frame, "lcnn", "curvature_mean"))
    assert V.values(frame, "standard", "curvature_mean") == pytest.approx([9.9, 10.0, 10.1])
    assert all(math.isnan(v) for v in V.values(frame, "standard", "no_such_column"))


def test_low_curvature_every_status_and_proxy_on_a_stand_in():
    args = ("ci", "x (real)", False)
    much = _frame({"lcnn": {"curvature_mean": 2.0}})
    assert V.low_curvature(much, *args).status == "reproduced"
    not_much = _frame({"lcnn": {"curvature_mean": 8.0}})
    assert V.low_curvature(not_much, *args).status == "differs"
    assert V.low_curvature(_frame({"lcnn": {"curvature_mean": 20.0}}), *args).status == "differs"  # higher
    worse = _frame({"lcnn": {"curvature_mean": 2.0, "test_accuracy": 0.70}})
    v = V.low_curvature(worse, *args)
    assert v.status == "differs" and "gap +10.0%" in v.evidence
    assert V.low_curvature(_frame(jitter=0.0), *args).status == "inconclusive"
    overlap = _frame({"lcnn": {"curvature_mean": 2.0}}, jitter=0.9)  # ranges overlap
    assert V.low_curvature(overlap, *args).status == "inconclusive"
    proxy = V.low_curvature(much, "ci", "mnist_fashion_20 (stand-in for CIFAR-100)", True)
    assert proxy.status == "proxy" and proxy.evidence.startswith("reproduced:")
    assert "stand-in for CIFAR-100" in proxy.evidence and proxy.numbers["ratio"] == pytest.approx(5.0)
    assert "[PDF]" in proxy.paper and proxy.ours_ci


def test_gradreg_needs_both_norms_lower():
    args = ("ci", "x", False)
    both = {"gradient_norm_mean": 0.01, "hessian_norm_mean": 0.1}
    assert V.gradreg(_frame({"gradnorm": both}), *args).status == "reproduced"
    assert V.gradreg(_frame({"gradnorm": {"gradient_norm_mean": 0.01}}), *args).status == "inconclusive"
    assert V.gradreg(_frame({"gradnorm": {**both, "hessian_norm_mean": 5.0}}), *args).status == "differs"


def test_lowest_compares_with_every_other_variant():
    args = ("ci", "x", False)
    assert V.lowest(_frame({"lcnn_gradnorm": {"curvature_mean": 1.0}}), *args).status == "reproduced"
    beaten = _frame({"lcnn_gradnorm": {"curvature_mean": 1.0}, "cure": {"curvature_mean": 0.1}})
    v = V.lowest(beaten, *args)
    assert v.status == "differs" and v.numbers["cure"] == "b"
    assert V.lowest(_frame(), *args).status == "inconclusive"


def test_robustness_and_stability():
    args = ("ci", "x", False)
    more = {"robust_0.1": 0.7, "robust_0.2": 0.6, "stability_mean": 0.9}
    assert V.robust(_frame({"lcnn": more}), *args).status == "reproduced"
    assert V.robust(_frame({"lcnn": {"robust_0.1": 0.7}}), *args).status == "inconclusive"
    assert V.robust(_frame({"lcnn": {"robust_0.2": 0.1}}), *args).status == "differs"
    v = V.robust(_frame({"lcnn": more}), *args)
    assert "ε=0.1" in v.evidence and "Adversarial Training" in v.evidence
    assert V.stable_gradients(_frame({"lcnn": more}), *args).status == "reproduced"
    assert V.stable_gradients(_frame({"lcnn": {"stability_mean": 0.2}}), *args).status == "differs"
    assert V.stable_gradients(_frame(), *args).status == "inconclusive"


def test_cost_ratios_pair_seeds():
    frame = _frame({"lcnn": {"train_time_s": 11.0}, "adversarial": {"train_time_s": 40.0}}, jitter=0.0)
    assert V.time_ratio(frame, "lcnn", "standard") == pytest.approx([1.1] * 3)
    assert V.overhead(frame, "ci", "m").status == "reproduced"
    assert V.adversarial_cost(frame, "ci", "m").status == "reproduced"
    slow = _frame({"lcnn": {"train_time_s": 30.0}, "adversarial": {"train_time_s": 40.0}}, jitter=0.0)
    assert V.overhead(slow, "ci", "m").status == "differs"
    assert V.adversarial_cost(slow, "ci", "m").status == "differs"
    rows = _frame({"adversarial": {"train_time_s": 40.0}}, jitter=0.0)
    rows.loc[rows["variant"] == "lcnn", "train_time_s"] = [11.0, 14.0, 12.0]  # straddles 1.3×
    assert V.overhead(rows, "ci", "m").status == "inconclusive"
    assert V.overhead(_frame().query("variant != 'lcnn'"), "ci", "m").status == "inconclusive"


def test_single_seed_uses_the_margin():
    one = _frame({"lcnn": {"curvature_mean": 2.0}}, seeds=(1,))
    v = V.low_curvature(one, "paper", "x", False)
    assert v.status == "reproduced" and "1 seed" in v.evidence and v.ours_paper
    near = _frame({"lcnn": {"curvature_mean": 8.0}}, seeds=(1,))
    assert V.low_curvature(near, "paper", "x", False).status == "inconclusive"  # within 1.5×


def test_moons_verdict():
    rows = [
        {
            "variant": v,
            "seed": s,
            "status": "ok",
            "curvature_mean": c * (1 + 0.01 * s),
            "grid_curvature_mean": 2 * c,
            "test_accuracy": 0.99,
        }
        for v, c in (("standard", 20.0), ("lcnn", 5.0))
        for s in (1, 2, 3)
    ]
    assert V.moons(pd.DataFrame(rows), "ci").status == "reproduced"
    swapped = pd.DataFrame(rows).replace({"variant": {"standard": "lcnn", "lcnn": "standard"}})
    assert V.moons(swapped, "ci").status == "differs"


def test_softplus_origin_is_exact_and_catches_an_offset():
    curves = FIG.softplus_curves()
    v = V.softplus_origin(curves)
    assert v.status == "reproduced" and v.numbers["csp_at_0"] <= 1e-12
    assert v.numbers["softplus_at_0"][0.5] == pytest.approx(2 * math.log(2))
    bad = curves.assign(centered_softplus=curves["centered_softplus"] + 1e-3)
    assert V.softplus_origin(bad).status == "differs"


def test_needs_gpu_says_pdf():
    v = V.needs_gpu("Table 1 at paper scale", "runnable: ...")
    assert v.status == "needs GPU" and v.paper == "[PDF] not in the spec"
    assert np.isfinite(V.FOLD) and V.OVERHEAD == 1.3
