"""Every SGN verdict function on synthetic per-seed values with a known answer."""
import math

import pandas as pd
import pytest

pytest.importorskip("curvlab.verdicts")
from curvlab.repro import sgn_verdicts as V  # noqa: E402


def values(cells, metric="test_loss", status=None):
    """cells: {config: [per-seed values]} -> (config, seed, metric, status) rows."""
    status = status or {}
    return pd.DataFrame([{"config": c, "seed": i + 1, metric: v, "status": status.get(c, "ok")}
                         for c, vs in cells.items() for i, v in enumerate(vs)])


GRID = [1e-3, 1e-2, 0.1, 1.0]


def test_sgn_wins_clearly():
    v = values({"SGN(3)": [0.010, 0.011, 0.012], "SGD(0.001)": [0.9] * 3, "SGD(0.01)": [0.02, 0.03, 0.025],
                "SGD(0.1)": [0.05] * 3, "SGD(1)": [math.nan] * 3}, status={"SGD(1)": "diverged"})
    out = V.sgn_vs_sgd(v, "test_loss", "Boston: SGN beats SGD", higher=False, sgd_grid=GRID)
    assert out.status == "reproduced"
    assert out.numbers["best_sgn"] == "SGN(3)" and out.numbers["best_sgd"] == "SGD(0.01)"
    assert "(3 seeds)" in out.evidence and out.numbers["sgd_lr_at_edge"] is False


def test_gap_within_spread_is_inconclusive():
    v = values({"SGN(3)": [0.010, 0.030], "SGD(0.01)": [0.020, 0.025], "SGD(0.1)": [0.5, 0.5],
                "SGD(0.001)": [0.9, 0.9]})
    assert V.sgn_vs_sgd(v, "test_loss", "c", higher=False, sgd_grid=GRID).status == "inconclusive"


def test_best_lr_at_grid_edge():
    v = values({"SGN(3)": [0.01, 0.011], "SGD(0.001)": [0.5, 0.5], "SGD(0.01)": [0.3, 0.3],
                "SGD(0.1)": [0.2, 0.2], "SGD(1)": [0.1, 0.1]})
    out = V.sgn_vs_sgd(v, "test_loss", "c", higher=False, sgd_grid=GRID)
    assert out.status == "inconclusive (lr at grid edge)"


def test_sgd_ahead_differs_and_accuracy_direction():
    v = values({"SGN(3)": [0.80, 0.81], "SGD(0.01)": [0.85, 0.86], "SGD(0.1)": [0.90, 0.91]},
               metric="test_accuracy")
    out = V.sgn_vs_sgd(v, "test_accuracy", "c", higher=True)
    assert out.status == "differs" and "%" in out.evidence
    fashion = V.sgd_beats_every_sgn(v, "test_accuracy", "SGD(0.1)", "Fashion: SGD(0.1) ahead")
    assert fashion.status == "reproduced"


def test_diverges_counts_seeds():
    df = pd.DataFrame({"config": ["SGD(1)"] * 3, "seed": [1, 2, 3], "status": ["diverged", "diverged", "ok"]})
    assert V.diverges(df, "SGD(1)", "c").status == "inconclusive"
    assert V.diverges(df.assign(status="diverged"), "SGD(1)", "c").status == "reproduced"
    assert V.diverges(df.assign(status="ok"), "SGD(1)", "c").status == "differs"
    assert V.diverges(df, "SGD(10)", "c").status == "inconclusive"


def test_below_and_above_threshold():
    v = values({"SGN(10)": [1.0e-4, 1.1e-4, 1.9e-4]})
    assert V.below(v, r"SGN\(10\)", "test_loss", 2e-4, "floor").status == "reproduced"
    assert V.below(v, r"SGN\(10\)", "test_loss", 1.05e-4, "floor").status == "inconclusive"
    stuck = values({"SGD(0.001)": [0.49, 0.5], "SGD(0.1)": [0.46, 0.47]})
    assert V.below(stuck, r"SGD\((0\.001|0\.01|0\.1)\)", "test_loss", 0.45, "stuck", above=True).status == \
        "reproduced"


def test_after_T_reads_the_measured_clock():
    df = pd.DataFrame({"config": "SGN(3)", "seed": [1, 1, 1], "epoch": [0, 1, 2], "time": [0.0, 1.0, 3.0],
                       "test_accuracy": [0.1, 0.8, 0.9], "status": "ok"})
    out = V.after_T_frame(df, "test_accuracy", 2.0)
    assert out["test_accuracy"].tolist() == [0.8]


def long(cells, metric):
    """{config: (status, [per-seed lists of per-epoch values])} -> long table, epochs 0..n, clock = epoch."""
    rows = []
    for c, (status, seeds) in cells.items():
        for s, vals in enumerate(seeds, 1):
            for e, v in enumerate(vals):
                rows.append({"config": c, "method": c[:3], "seed": s, "epoch": float(e), "time": float(e),
                             metric: v, "status": status})
    return pd.DataFrame(rows)


def test_regression_claims_on_a_synthetic_benchmark():
    df = long({"SGN(10)": ("ok", [[0.5, 1e-3, 1.1e-4]] * 3), "SGD(0.01)": ("ok", [[0.5, 0.48, 0.47]] * 3),
               "SGD(0.1)": ("ok", [[0.5, 0.46, 0.46]] * 3), "SGD(0.001)": ("ok", [[0.5, 0.5, 0.5]] * 3),
               "SGD(1)": ("diverged", [[0.5, math.nan]] * 3)}, "test_loss")
    out = {v.claim: v.status for v in V.regression_claims(df, "sine_10", "ci", GRID)}
    assert out == {"sine_10 (ci): best SGN below best SGD, final test MSE": "reproduced",
                   "sine_10 (ci): SGD(1) diverges": "reproduced",
                   "sine_10 (ci): SGN(10) below 2e-4": "reproduced"}


def test_classification_claims_read_the_measured_clock():
    df = long({"SGN(3)": ("ok", [[0.1, 0.80, 0.85], [0.1, 0.82, 0.86]]),
               "SGD(0.1)": ("ok", [[0.1, 0.60, 0.90], [0.1, 0.62, 0.91]])}, "test_accuracy")
    out = V.classification_claims(df, "fashion", "ci", [2.0])
    status = {v.claim: v.status for v in out}
    assert status["fashion (ci): best SGN above every SGD after epoch 1"] == "reproduced"
    assert status["fashion (ci) @ 2 s measured: SGD(0.1) above every SGN"] == "reproduced"
