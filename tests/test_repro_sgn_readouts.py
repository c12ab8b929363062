"""Read-out rules on synthetic records with known answers."""
import math

import numpy as np
import pytest

from curvlab.repro import sgn_readouts as R


def record(method, value, seed, times, acc, status="ok", epochs=None):
    epochs = epochs or list(range(len(times)))
    cfg = {"method": method, "seed": seed, ("lr" if method == "SGD" else "cg"): value}
    return {"config": cfg, "status": status,
            "metrics": {"epoch": epochs, "time": times, "test_accuracy": acc,
                        "train_loss": [float("nan")] + [1.0 / (e + 1) for e in epochs[1:]]}}


@pytest.fixture
def frame():
    # SGN(3): 2 s per epoch but uneven (seed 1: epochs end at 1 s and 4 s); SGD(0.1): 1 s per epoch
    recs = [record("SGN", 3, 1, [0, 1, 4], [0.1, 0.8, 0.9]), record("SGN", 3, 2, [0, 2, 4], [0.1, 0.7, 0.9]),
            record("SGD", 0.1, 1, [0, 1, 2, 3], [0.1, 0.5, 0.6, 0.7]),
            record("SGD", 0.1, 2, [0, 1, 2, 3], [0.1, 0.3, 0.4, 0.5])]
    return R.records_frame(recs)


def test_reference_rule_assumes_constant_epoch_time(frame):
    out = R.read_reference_rule(frame, 2.5, "test_accuracy")
    # SGN(3): t̄ = 2 s -> epoch 1 -> mean(0.8, 0.7); SGD: t̄ = 1 s -> epoch 2 -> mean(0.6, 0.4)
    assert out["SGN(3)"] == (pytest.approx(0.75), 1, False)
    assert out["SGD(0.1)"] == (pytest.approx(0.5), 2, False)
    # after the SGD budget: read at its end, flagged
    assert R.read_reference_rule(frame, 10, "test_accuracy")["SGD(0.1)"] == (pytest.approx(0.6), 3, True)


def test_measured_clock_reads_each_seed_at_its_own_time(frame):
    out = R.read_measured(frame, 1.5, "test_accuracy")
    # SGN(3) seed 1 has finished epoch 1 at 1 s (0.8); seed 2 only the start (0.1)
    assert out["SGN(3)"] == pytest.approx(0.45)
    assert out["SGD(0.1)"] == pytest.approx(0.4)


def test_rules_disagree_where_epoch_times_vary(frame):
    ref = R.read_reference_rule(frame, 2.0, "test_accuracy")["SGN(3)"][0]
    wall = R.read_measured(frame, 2.0, "test_accuracy")["SGN(3)"]
    assert ref == pytest.approx(0.75) and wall == pytest.approx(0.75)
    assert R.read_measured(frame, 1.0, "test_accuracy")["SGN(3)"] == pytest.approx(0.45)
    # at 1 s the rule says epoch 0 for both seeds (t̄ = 2 s): the untrained 0.1, though seed 1 is at 0.8
    assert R.read_reference_rule(frame, 1.0, "test_accuracy")["SGN(3)"] == (pytest.approx(0.1), 0, False)


def test_epoch_means_use_measured_clock_and_spread(frame):
    m = R.epoch_means(frame)
    sgn = m[m["config"] == "SGN(3)"].set_index("epoch")
    assert sgn.loc[1.0, "time"] == pytest.approx(1.5)          # mean of measured 1 s and 2 s, not 1 x 2 s
    assert sgn.loc[1.0, "test_accuracy_lo"] == pytest.approx(0.7)
    assert sgn.loc[1.0, "test_accuracy_hi"] == pytest.approx(0.8)
    assert sgn.loc[0.0, "time"] == 0.0


def test_diverged_run_marked_and_kept():
    recs = [record("SGD", 1.0, 1, [0, 1, 2], [0.1, 0.2, float("nan")], status="diverged",
                   epochs=[0, 1, 1.5])]
    df = R.records_frame(recs)
    ends = R.epoch_ends(df)
    assert 1.5 in set(ends["epoch"])                           # the mid-epoch stop is kept
    assert (R.epoch_means(df)["status"] == "diverged").all()
    # a diverged run that stopped before T has no value
    assert math.isnan(R.read_reference_rule(df, 100, "test_accuracy")["SGD(1)"][0])


def test_ci_read_out_times_and_sgd_epoch_time(frame):
    assert R.ci_read_out_times(frame) == [2.0, 4.0]
    assert R.sgd_epoch_time(frame) == pytest.approx(1.0)


def test_final_values_and_at_epoch(frame):
    fin = R.final_values(frame, "test_accuracy").set_index(["config", "seed"])["test_accuracy"]
    assert fin[("SGD(0.1)", 2)] == 0.5 and fin[("SGN(3)", 1)] == 0.9
    at1 = R.at_epoch(frame, "test_accuracy", 1)
    assert sorted(at1[at1["config"] == "SGD(0.1)"]["test_accuracy"]) == [0.3, 0.5]


def test_order_numeric():
    assert R.config_order(["SGD(10)", "SGD(0.1) longer", "SGD(0.1)", "SGD(1)"]) == \
        ["SGD(0.1)", "SGD(0.1) longer", "SGD(1)", "SGD(10)"]
    assert np.isnan(R.read_measured(R.records_frame([record("SGN", 3, 1, [0, 5], [0.1, 0.9])]), -1,
                                    "test_accuracy")["SGN(3)"])


def test_blow_ups_reports_the_epoch_not_a_guess():
    recs = [record("SGD", 0.1, 3, [0, 1, 2, 3], [0.1, 0.2, 0.3, 0.4])]
    df = R.records_frame(recs)
    df["test_loss"] = [0.5, 2e6, 3.3e6, 3.3e6]
    out = R.blow_ups(df, "SGD(0.1)", "test_loss", 1e3)
    assert out.iloc[0].to_dict() == {"seed": 3, "first_epoch": 1.0, "max": 3.3e6, "last": 3.3e6}
