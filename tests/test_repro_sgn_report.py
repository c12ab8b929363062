"""The SGN notebook's report helpers on small synthetic records with known answers."""
import math

import numpy as np
import pandas as pd
import pytest

from curvlab.repro import sgn_readouts as ro
from curvlab.repro import sgn_report as rep

ENV = {"device": "cpu", "device_name": "Test CPU", "threads": 1, "torch": "9.9"}


def record(method, value, seed, times, metric, values, status="ok", clock="training", wall=None, sgn=None):
    """A record: epochs 0..n-1 at ``times``; ``metric`` takes ``values``."""
    n = len(times)
    cfg = {"method": method, "seed": seed, ("lr" if method == "SGD" else "cg"): value}
    metrics = {"epoch": list(range(n)), "time": list(times), metric: list(values),
               "train_loss": [1.0 / (e + 1) for e in range(n)]}
    summary = {"clock": clock, "epochs": n - 1, "train_time_s": float(times[-1])}
    if sgn:
        metrics.update(sgn_step=sgn["step"], sgn_rho=sgn["rho"], sgn_alpha=sgn["alpha"])
        summary.update(steps=len(sgn["step"]), max_rho=max(sgn["rho"]), final_rho=sgn["rho"][-1],
                       mean_alpha=float(np.mean(sgn["alpha"])), backtracked=sgn["backtracked"])
    return {"config": cfg, "status": status, "metrics": metrics, "summary": summary, "environment": ENV,
            "wall_clock_s": wall if wall is not None else 2 * float(times[-1])}


def sgn_trace(rho, alpha, backtracked):
    return {"step": list(range(1, len(rho) + 1)), "rho": rho, "alpha": alpha, "backtracked": backtracked}


@pytest.fixture
def regression_records():
    return [
        record("SGD", 0.1, 1, [0, 1, 2], "test_loss", [1.0, 0.5, 0.30]),
        record("SGD", 0.1, 2, [0, 1, 2], "test_loss", [1.0, 0.5, 0.10]),
        record("SGD", 1.0, 1, [0, 1], "test_loss", [1.0, np.nan], status="diverged"),
        record("SGN", 3, 1, [0, 2, 4], "test_loss", [1.0, 0.2, 0.05], clock="training + evaluation",
               sgn=sgn_trace([1e-4, 2e-4, 1e-6], [1.0, 0.5, 1.0], 0.25)),
        record("SGN", 3, 2, [0, 2, 4], "test_loss", [1.0, 0.2, 0.07],
               sgn=sgn_trace([1e-4, 1e-4, 1e-4], [1.0, 1.0, 1.0], 0.0)),
    ]


@pytest.fixture
def classification_records():
    # SGN(3): 2 s per epoch; SGD(0.1): 1 s per epoch, accuracy rising by 0.1 per epoch
    return [
        record("SGN", 3, 1, [0, 2, 4], "test_accuracy", [0.1, 0.8, 0.9],
               sgn=sgn_trace([1e-4, 1e-6], [1.0, 0.96], 0.5)),
        record("SGN", 3, 2, [0, 2, 4], "test_accuracy", [0.1, 0.6, 0.7]),
        record("SGD", 0.1, 1, [0, 1, 2, 3, 4], "test_accuracy", [0.1, 0.2, 0.3, 0.4, 0.5]),
        record("SGD", 0.1, 2, [0, 1, 2, 3, 4], "test_accuracy", [0.1, 0.4, 0.5, 0.6, 0.7]),
    ]


def test_small_helpers(regression_records):
    assert rep.clock_axis(regression_records) == "measured seconds (training / training + evaluation)"
    assert rep.seeds_of(regression_records) == [1, 2]
    assert rep.describe([], "ci") == ""
    assert rep.describe(regression_records, "ci") == \
        "ci scale, seeds [1, 2], cpu Test CPU, 1 threads, torch 9.9"
    assert rep.diverged_sgd(regression_records) == ["SGD(1)"]
    assert rep.record_label({"method": "SGD", "lr": 0.1, "longer": True}) == "SGD(0.1) longer"
    assert rep.record_label({"method": "SGN", "cg": 10}) == "SGN(10)"


def test_final_means_and_best_of(regression_records):
    final = rep.final_means(ro.records_frame(regression_records), "test_loss")
    assert final["SGD(0.1)"] == pytest.approx(0.2)        # mean of the seeds' last values 0.3, 0.1
    assert final["SGN(3)"] == pytest.approx(0.06)
    assert final["SGD(1)"] == pytest.approx(1.0)          # the diverged run's last finite value
    assert rep.best_of(final, "SGD", True) == ("SGD(0.1)", pytest.approx(0.2))
    assert rep.best_of(final, "SGD", False) == ("SGD(1)", pytest.approx(1.0))
    values = pd.Series({"SGD(0.1)": np.inf, "SGD(0.1) longer": 0.01, "SGN(3)": 0.5})
    assert rep.best_of(values, "SGD", True) == (None, pytest.approx(np.nan, nan_ok=True))


def test_summarise_without_drawing(regression_records, classification_records):
    out = rep.summarise("boston", regression_records, regression_records[:2], "ci")
    assert set(out) == {"ci", "paper"}
    ci = out["ci"]
    assert ci["sgd"] == ("SGD(0.1)", pytest.approx(0.2)) and ci["sgn"] == ("SGN(3)", pytest.approx(0.06))
    assert ci["diverged"] == ["SGD(1)"] and ci["records"] is regression_records
    assert out["paper"]["sgn"][0] is None and out["paper"]["diverged"] == []
    # at paper scale there is no second pass; a tag without records is left out
    assert set(rep.summarise("boston", regression_records, [], "paper")) == {"paper"}
    assert set(rep.summarise("boston", regression_records, [], "ci")) == {"ci"}
    assert rep.summarise("mnist", [], [], "ci") == {}
    cls = rep.summarise("fashion", classification_records, [], "ci")["ci"]
    assert cls["final"]["SGN(3)"] == pytest.approx(0.8) and cls["final"]["SGD(0.1)"] == pytest.approx(0.6)
    assert list(cls["epochs"]["SGN(3)"].index) == [1.0, 2.0]          # epoch 0 dropped
    assert cls["epochs"]["SGN(3)"][1.0] == pytest.approx(0.7)
    assert cls["epochs"]["SGD(0.1)"][4.0] == pytest.approx(0.6)
    assert cls["stand_in"] is False


def test_regression_section_draws_and_prints(regression_records, capsys):
    calls = []
    draw = lambda df, bench, title, fig_id, clock: calls.append(("draw", fig_id, title, clock))  # noqa: E731
    overlay = lambda df, bench, title, fig_id, separate: calls.append(("overlay", fig_id, separate))  # noqa: E731
    summary = rep.summarise("boston", regression_records, regression_records[:2], "ci")
    assert rep.regression_section("boston", "Boston", summary, "ci", draw, overlay) is None
    assert [c[:2] for c in calls] == [("draw", "boston"), ("overlay", "boston_overlay"),
                                      ("draw", "boston_paper"), ("overlay", "boston_overlay_paper")]
    assert calls[0][2].startswith("Boston — ci scale, seeds [1, 2]") and calls[1][2] is False
    text = capsys.readouterr().out
    assert "[ci] best SGN SGN(3) 0.06 < best SGD SGD(0.1) 0.2: True; diverged: SGD(1)" in text
    rep.regression_section("boston", "B", {"ci": summary["ci"]}, "ci", draw, overlay)
    assert "boston: no paper-scale records (not run)" in capsys.readouterr().out
    rep.regression_section("boston", "B", {"paper": summary["ci"]}, "paper", draw, overlay)
    assert "no paper-scale records" not in capsys.readouterr().out


def test_classification_section_draws_and_prints(classification_records, capsys):
    calls = []
    summary = rep.summarise("fashion", classification_records, [], "ci")
    rep.classification_section("fashion", "F", summary, "ci", lambda *a: calls.append(a[3]),
                               lambda *a: calls.append((a[3], a[4])))
    assert calls == ["fashion", ("fashion_overlay", False)]
    text = capsys.readouterr().out
    assert "[ci] test accuracy at the end of the budget, seed mean: SGD(0.1) 60 %, SGN(3) 80 %" in text
    assert "fashion: no paper-scale records (not run; needs a GPU" in text
    for r in classification_records:                     # a CIFAR-10 stand-in: its reference on its own row
        r["config"].update(benchmark="cifar10", dataset="fashion_mnist_32")
    calls.clear()
    stand_in = rep.summarise("cifar10", classification_records, [], "ci")
    rep.classification_section("cifar10", "C", stand_in, "ci", lambda *a: None, lambda *a: calls.append(a[4]))
    assert stand_in["ci"]["stand_in"] is True and calls == [True]


def test_blow_ups_and_backtracking_text(regression_records, classification_records):
    regression_records[0]["metrics"]["test_loss"] = [1.0, 5e3, 0.3]
    summary = rep.summarise("boston", regression_records, [], "ci")
    assert rep.blow_ups_text(summary) == [
        "[ci] Boston SGD(0.1) seeds with test MSE > 1e3: seed 1 from epoch 1 (max 5.0e+03, last 3.0e-01)"]
    assert rep.blow_ups_text(summary, threshold=1e4) == \
        ["[ci] Boston SGD(0.1) seeds with test MSE > 1e4: none"]
    text = rep.backtracking_text({"boston": summary}, "ci", "boston")
    assert text.startswith("[ci] boston: steps with a backtrack: SGN(3) 25.00 % (reference ")
    assert rep.backtracking_text({}, "paper") == "[paper] mnist: steps with a backtrack: no records"


def test_figures_are_saved_with_their_data(regression_records, tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    from curvlab.repro import sgn_figures as sf
    df = ro.records_frame(regression_records)
    mean = sf.draw(df, "boston", "Boston", "boston_test", "measured seconds")
    assert (tmp_path / "outputs" / "figures" / "sgn" / "boston_test.png").is_file()
    assert set(mean["config"]) == {"SGD(0.1)", "SGD(1)", "SGN(3)"}
    both = sf.draw_overlay(df, "boston", "Boston vs reference", "boston_overlay_test")
    assert set(both["source"]) == {"ours", "reference"}
    assert set(both.loc[both["source"] == "reference", "config"]) <= set(mean["config"])
    data = pd.read_csv(tmp_path / "outputs" / "figures" / "sgn" / "boston_overlay_test.csv")
    assert data["benchmark"].eq("boston").all()
    assert sf.untimed("f.png: 2 rows; time [0, 1]; epoch [0, 1]") == "f.png: 2 rows; epoch [0, 1]"


def test_equal_epochs_line(classification_records):
    out = rep.summarise("mnist", classification_records, [], "ci")
    # E is the SGN budget (2 epochs), not the SGD one (4)
    assert rep.equal_epochs("mnist", out, "ci") == \
        "[ci] mnist test accuracy (%) after epoch 1 / epoch 2: SGD(0.1) 30/40, SGN(3) 70/80"
    assert rep.equal_epochs("mnist", out, "paper") == "mnist: no paper-scale records"
    sgd_only = {"ci": {"epochs": {k: v for k, v in out["ci"]["epochs"].items() if k.startswith("SGD")}}}
    assert rep.equal_epochs("mnist", sgd_only, "ci").endswith("epoch 4: SGD(0.1) 30/60")


def test_timing_summary(regression_records):
    df = ro.records_frame(regression_records)
    ref = pd.DataFrame({"config": ["SGD(0.1)"] * 4, "seed": [1, 1, 2, 2], "epoch": [1, 2, 1, 4],
                        "time": [1.0, 2.0, 1.0, 8.0], "method": "SGD"})
    t = rep.timing_summary("boston", {"ci": {"df": df, "records": regression_records}}, ref)
    assert list(t["config"]) == ["SGD(0.1)", "SGD(1)", "SGN(3)", "SGD(0.1)"]
    sgn = t[(t["scale"] == "ci") & (t["config"] == "SGN(3)")].iloc[0]
    assert sgn["epochs"] == 2 and sgn["s / epoch"] == pytest.approx(2.0)
    assert sgn["clock / wall"] == pytest.approx(0.5)
    r = t[t["scale"] == "reference"].iloc[0]
    assert r["s / epoch"] == pytest.approx(2.0)          # max time 8 s / max epoch 4
    assert r["epochs"] == pytest.approx(3.0) and math.isnan(r["clock / wall"])
    assert rep.timing_summary("boston", {}).empty


def test_reference_epoch_time_and_read_out_times(classification_records):
    ref = pd.DataFrame({"config": ["SGD(0.1)", "SGD(0.1)", "SGD(1) longer", "SGN(3)"], "seed": [1, 2, 1, 1],
                        "epoch": [2, 4, 1, 1], "time": [4.0, 4.0, 100.0, 50.0],
                        "method": ["SGD", "SGD", "SGD", "SGN"]})
    assert rep.reference_sgd_epoch_time(ref) == pytest.approx(1.5)    # mean(4 / 2, 4 / 4)
    df = ro.records_frame(classification_records)
    assert rep.read_out_times(df, "mnist", "paper") == [25, 100]
    assert rep.read_out_times(df, "mnist", "ci") == [2.0, 4.0]          # half and all of SGN(3)'s 4 s


def test_time_table(classification_records):
    df = ro.records_frame(classification_records)
    ref = pd.DataFrame({"config": ["SGD(0.1)"], "seed": [1], "epoch": [10], "time": [5.0], "method": ["SGD"]})
    summary = {"ci": {"df": df}, "paper": {"df": df}}
    t = rep.time_table("fashion", summary, ref)
    ci = t[t["scale"] == "ci"].set_index(["T (s)", "config"])
    assert ci.loc[(2.0, "SGN(3)"), "reference rule"] == pytest.approx(70.0)     # percent, epoch 1
    assert ci.loc[(4.0, "SGD(0.1)"), "measured clock"] == pytest.approx(60.0)
    paper = t[t["scale"] == "paper"]
    assert list(paper["T (s)"].unique()) == [50, 150]
    # our SGD epoch 1 s, the reference's 0.5 s: T is doubled, and the runs read at their end
    assert list(paper["T x SGD-epoch ratio"].unique()) == [100.0, 300.0]
    assert paper["rule at scaled T"].tolist() == pytest.approx([60.0, 80.0, 60.0, 80.0])
    assert "T x SGD-epoch ratio" not in rep.time_table("fashion", {"ci": {"df": df}}).columns
    assert rep.time_table("fashion", {}) is None


def test_traces_and_trace_text(regression_records, classification_records):
    summary = {"boston": {"ci": {"records": regression_records}},
               "mnist": {"ci": {"records": classification_records}}}
    steps, stats = rep.traces(summary, "ci")
    # first seed only: Boston SGN(3) seed 1 (3 steps) and MNIST SGN(3) seed 1 (2 steps)
    assert list(steps["benchmark"]) == ["boston"] * 3 + ["mnist"] * 2
    assert steps["rho"].tolist() == [1e-4, 2e-4, 1e-6, 1e-4, 1e-6]
    assert stats["floor reached"].tolist() == [True, True]
    assert stats["backtracked (%)"].tolist() == pytest.approx([25.0, 50.0])
    assert stats["max rho"].tolist() == pytest.approx([2e-4, 1e-4])
    assert rep.traces(summary, "ci", ["mnist"])[1]["benchmark"].tolist() == ["mnist"]
    assert rep.trace_text(summary, "ci") == "floor in 2/2 runs; mean α (classif.) 0.98–0.98"
    regression_records[3]["config"]["cg"] = 10
    assert rep.trace_text(summary, "ci").endswith("; Boston SGN(10) backtracked 25 %")
    assert rep.trace_text({}, "paper") == "not run" and rep.trace_text({}, "ci") == "—"
