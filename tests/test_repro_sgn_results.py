"""The SGN results layer on small synthetic records with known answers: claims, tables, findings."""
import math

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("curvlab.verdicts")
from curvlab.repro import sgn as rs  # noqa: E402
from curvlab.repro import sgn_reference as ref  # noqa: E402
from curvlab.repro import sgn_report as rep  # noqa: E402
from curvlab.repro import sgn_results as R  # noqa: E402

ENV = {"device": "cpu", "device_name": "Test CPU", "threads": 1, "torch": "9.9"}


def record(bench, method, value, seed, times, metric, values, status="ok", sgn=None, train_loss=None):
    """One record of ``bench``: epochs 0..n-1 at ``times`` (seconds), ``metric`` takes ``values``."""
    n = len(times)
    cfg = {"benchmark": bench, "dataset": "fashion_mnist_32" if bench == "cifar10" else bench,
           "method": method, "seed": seed, ("lr" if method == "SGD" else "cg"): value}
    if method == "SGN":
        cfg["sgn"] = rs.sgn_settings(value)
    metrics = {"epoch": list(range(n)), "time": list(times), metric: list(values),
               "train_loss": train_loss or [1.0 / (e + 1) for e in range(n)]}
    summary = {"clock": "training only", "epochs": n - 1, "train_time_s": float(times[-1])}
    if sgn:
        metrics.update(sgn_step=sgn["step"], sgn_rho=sgn["rho"], sgn_alpha=sgn["alpha"])
        summary.update(steps=len(sgn["step"]), max_rho=max(sgn["rho"]), final_rho=sgn["rho"][-1],
                       mean_alpha=float(np.mean(sgn["alpha"])), backtracked=sgn["backtracked"])
    return {"config": cfg, "status": status, "metrics": metrics, "summary": summary, "environment": ENV,
            "wall_clock_s": 2 * float(times[-1])}


def trace(rho, alpha, backtracked):
    return {"step": list(range(1, len(rho) + 1)), "rho": rho, "alpha": alpha, "backtracked": backtracked}


def boston_records():
    """SGN(10) 0.0085 < SGN(3) 0.011 < SGD(0.01) 0.025 < SGD(0.001) 0.05; SGD(1) diverges in both seeds."""
    t = [0, 1, 2]
    out = []
    for seed, (a, b, c, d) in enumerate([(0.05, 0.03, 0.010, 0.008), (0.05, 0.02, 0.012, 0.009)], start=1):
        out += [record("boston", "SGD", 0.001, seed, t, "test_loss", [1.0, 0.5, a]),
                record("boston", "SGD", 0.01, seed, t, "test_loss", [1.0, 0.5, b]),
                record("boston", "SGD", 1.0, seed, [0, 1], "test_loss", [1.0, math.inf], status="diverged"),
                record("boston", "SGN", 3, seed, t, "test_loss", [1.0, 0.1, c],
                       sgn=trace([1e-4, 1e-6], [1.0, 1.0], 0.0)),
                record("boston", "SGN", 10, seed, t, "test_loss", [1.0, 0.1, d],
                       sgn=trace([1e-4, 2e-4, 1e-5, 1e-6], [0.5, 1.0, 0.25, 1.0], 0.5))]
    return out


def mnist_records():
    """SGD(1): 1 s per epoch, 4 epochs; SGN(3): 2 s per epoch, 2 epochs, far ahead at every epoch."""
    return [record("mnist", "SGD", 1.0, 1, [0, 1, 2, 3, 4], "test_accuracy", [0.1, 0.5, 0.6, 0.7, 0.8]),
            record("mnist", "SGD", 1.0, 2, [0, 1, 2, 3, 4], "test_accuracy", [0.1, 0.4, 0.5, 0.6, 0.7]),
            record("mnist", "SGN", 3, 1, [0, 2, 4], "test_accuracy", [0.1, 0.85, 0.9],
                   sgn=trace([1e-4, 1e-6], [1.0, 0.96], 0.5)),
            record("mnist", "SGN", 3, 2, [0, 2, 4], "test_accuracy", [0.1, 0.8, 0.88],
                   sgn=trace([1e-4, 1e-6], [1.0, 1.0], 0.0))]


@pytest.fixture
def summary():
    """Boston and MNIST at ci and paper scale (the same synthetic records at both)."""
    return {"boston": rep.summarise("boston", boston_records(), boston_records(), "ci"),
            "mnist": rep.summarise("mnist", mnist_records(), mnist_records(), "ci"),
            "fashion": {}, "sine_10": {}, "sine_100": {}, "cifar10": {}}


@pytest.fixture
def verdicts(summary):
    return R.claims(summary, "ci") + R.claims(summary, "paper")


def test_parameters():
    assert R.as_list('["boston"]') == ["boston"] and R.as_list("boston, mnist") == ["boston", "mnist"]
    assert R.selected("all") == R.ALL and R.selected("mnist,fashion") == ["mnist", "fashion"]
    with pytest.raises(ValueError, match="unknown benchmarks"):
        R.selected(["boston", "imagenet"])
    assert R.seed_list("ci", 0) == [1, 2, 3] and R.seed_list("ci", 5) == [6, 7, 8]
    assert R.seed_list("paper", 5) == [1, 2, 3, 4, 5]
    assert R.seed_list("paper", 0, [2, 3]) == [2, 3] and R.seed_list("ci", 0, "None") == [1, 2, 3]


def test_scale_records_runs_only_the_selected(monkeypatch):
    calls = []
    monkeypatch.setattr(rs, "run_records", lambda b, s, seeds: calls.append(("run", b, s, seeds)) or ["r"])
    monkeypatch.setattr(rs, "load", lambda b, s: calls.append(("load", b, s)) or [f"{s}-stored"])
    assert R.scale_records("boston", "ci", [1], ["boston"]) == (["r"], ["paper-stored"])
    assert R.scale_records("mnist", "ci", [1], ["boston"]) == (["ci-stored"], ["paper-stored"])
    assert R.scale_records("mnist", "paper", [1], ["mnist"]) == (["r"], ["r"])
    assert calls[0] == ("run", "boston", "ci", [1]) and ("load", "mnist", "ci") in calls


def test_claims_per_tag_in_benchmark_order(summary):
    ci = R.claims(summary, "ci")
    assert [v.claim for v in ci] == [
        "boston (ci): best SGN below best SGD, final test MSE", "boston (ci): SGD(1) diverges",
        "mnist (ci): best SGN above every SGD after epoch 1",
        "mnist (ci) @ 2 s measured: best SGN above best SGD",
        "mnist (ci) @ 4 s measured: best SGN above best SGD"]
    assert [v.status for v in ci] == ["reproduced"] * 5
    assert ci[0].numbers["best_sgn"] == "SGN(10)" and ci[0].numbers["best_sgd"] == "SGD(0.01)"
    paper = R.claims(summary, "paper")
    assert [v.claim.split(":")[0] for v in paper][-2:] == ["mnist (paper) @ 25 s measured",
                                                           "mnist (paper) @ 100 s measured"]
    assert R.claims({}, "ci") == []


def test_everything_from_stored_records(monkeypatch):
    stored = {"boston": boston_records(), "mnist": mnist_records()}
    runs = []
    monkeypatch.setattr(rs, "run_records", lambda b, s, seeds: runs.append(b) or stored.get(b, []))
    monkeypatch.setattr(rs, "load", lambda b, s: stored.get(b, []))
    out = R.everything("ci", [1, 2], ["mnist"])
    assert runs == ["mnist"]
    assert set(out) == {"records", "summary", "claims", "readme_check", "comparison", "findings",
                        "timed_findings", "trace_findings"}
    assert set(out["summary"]["boston"]) == {"ci", "paper"} and out["summary"]["fashion"] == {}
    assert [v.claim for v in out["claims"]][:2] == ["boston (ci): best SGN below best SGD, final test MSE",
                                                   "boston (ci): SGD(1) diverges"]
    assert any(v.claim.startswith("boston (paper)") for v in out["claims"])
    assert len(out["comparison"]) == 19 and len(out["readme_check"]) == 39
    assert len(out["findings"]) == 4 and len(out["timed_findings"]) == 1 and len(out["trace_findings"]) == 2


def test_reference_comparison(summary, verdicts):
    t = R.reference_comparison(summary, verdicts, "ci").set_index("item")
    assert list(t.columns) == ["reference", "ours, paper scale", "ours, ci scale", "verdict"]
    boston = t.loc["Boston: best test MSE, SGN / SGD"]
    assert boston["reference"] == "0.0101 SGN(20) / 0.0267 SGD(0.01)"      # the reference's, quoted
    assert boston["ours, ci scale"] == "0.0085 SGN(10) / 0.025 SGD(0.01)"
    assert boston["ours, paper scale"] == "0.0085 SGN(10) / 0.025 SGD(0.01) [seeds [1, 2]]"
    assert boston["verdict"] == "reproduced (ci); reproduced (paper)"
    assert t.loc["Boston: SGD(1) diverges", "ours, ci scale"] == "True"
    assert t.loc["MNIST: SGN(3) after epoch 1", "ours, ci scale"] == "82.5 %"
    assert t.loc["MNIST: SGN(3) after 100 epochs", "ours, ci scale"] == "—"       # never reached
    assert t.loc["sine f=10: SGN(10) test MSE at the end", "ours, paper scale"] == "not run"
    assert t.loc["sine f=10: SGN(10) test MSE at the end", "ours, ci scale"] == "—"
    # ci read-outs at half and all of SGN(3)'s 4 s, by the reference's rule (2 s per SGN(3) epoch)
    assert t.loc["MNIST @ 100 s: SGN(3) / SGD(1)", "ours, ci scale"] == \
        "89.0 % SGN(3) / 75.0 % SGD(1) (T = 4 s)"
    assert t.loc["MNIST @ 100 s: SGN(3) / SGD(1)", "verdict"] == "see §11"
    assert t.loc["MNIST @ 100 s scaled: SGN(3) / SGD(1)", "ours, ci scale"] == "—"
    assert t.iloc[-1]["verdict"] == "see section 10"
    assert "CIFAR-10 @ 650 s: SGN(10) / SGN(3) / SGD(0.1) (ci: stand-in)" in t.index
    paper = R.reference_comparison(summary, verdicts, "paper", "cifar10")
    assert (paper["ours, ci scale"] == "—").all()
    assert "CIFAR-10 @ 650 s: SGN(10) / SGN(3) / SGD(0.1)" in set(paper["item"])


def test_table_cells_and_verdict_lookup(summary, verdicts):
    assert R.verdict_of(None, verdicts) == "—" and R.verdict_of("mnist_T0", verdicts) == "see §11"
    assert R.verdict_of("mnist_epoch1", verdicts) == "reproduced (ci); reproduced (paper)"
    assert R.verdict_of("sine_10_floor", verdicts) == "—"
    assert R.cell(summary, "mnist", "ci", lambda i, t: i["missing"]) == "—"
    assert R.cell(summary, "fashion", "paper", R.best_pair) == "not run"
    info = summary["mnist"]["paper"]
    scaled = R.after_scaled("mnist", 0, ["SGN(3)"])(info, "paper")
    ratio = 1.0 / rep.reference_sgd_epoch_time(ref.frame("mnist"))        # our SGD epoch takes 1 s
    assert scaled.endswith(f"(T = {25 * ratio:.3g} s)")
    assert R.after_scaled("mnist", 0, ["SGN(3)"])(info, "ci") == "—"
    assert R.at_epoch("SGN(3)", 2)(info, "paper") == "89.0 %"
    assert R.at_epoch("SGN(9)", 2)(info, "paper") == "—"


def test_formatting_helpers():
    assert R.num(0.0123) == "0.012" and R.num(1.234e-4) == "1.2e-04" and R.num(-math.inf) == "—"
    assert R.factor(2.94) == "2.94" and R.factor(12345.0) == "12000"
    assert R.seeds_text([{"config": {"seed": s}} for s in (1, 3)]) == "seeds 1, 3"
    assert R.pct(None) == "—" and R.fmt_sig(0.0) == "0"


def test_epoch_ratios_against_the_reference_logs(summary):
    info = summary["boston"]["paper"]
    for r in info["records"]:
        r["summary"]["epochs"] = 1000 if r["config"]["method"] == "SGD" else 100
    er = R.epoch_ratios(info, "boston")
    theirs = ref.run_table("boston").groupby("config")["epochs"].mean()
    # SGD(1) diverged here and in the reference: only SGD(0.001) and SGD(0.01) count
    assert er["sgd"] == pytest.approx(np.mean([1000 / theirs["SGD(0.001)"], 1000 / theirs["SGD(0.01)"]]))
    assert er["sgn10"] == pytest.approx((100, theirs["SGN(10)"], 100 / theirs["SGN(10)"]))


def test_regression_findings(summary, verdicts):
    ci, paper = R.regression_findings("boston", summary["boston"], verdicts)
    assert ci.startswith("Boston (ci scale, seeds 1–2; final test MSE after 40 epochs, seed means): best SGN "
                         "SGN(10) 0.0085, best SGD SGD(0.01) 0.025, a factor 2.94 (reproduced).")
    assert "SGN by k: 3: 0.011, 10: 0.0085; SGD by learning rate: 0.001: 0.05, 0.01: 0.025, 1: diverged" in ci
    assert "SGD(1) diverged in 2 of 2 seeds" in ci
    assert ci.endswith("the best k is 10, the next best SGN(3) (0.011) is outside the spread over seeds "
                       "(0.008–0.009 against 0.01–0.012).")
    assert "reference" not in ci                      # epoch budgets at ci: nothing to compare in seconds
    assert paper.startswith("Boston (paper scale, seeds 1–2; final test MSE after 10 s, seed means)")
    theirs = rep.final_means(ref.frame("boston"), "test_loss")
    lab, value = rep.best_of(theirs, "SGN", True)
    assert f"The reference's logs end at best SGN {lab} {R.num(value)}" in paper
    assert "× the reference's SGD epochs" in paper and "× its SGN(10) epochs" in paper


def test_regression_findings_say_within_the_spread():
    recs = [record("sine_100", "SGD", lr, s, [0, 1], "test_loss", [1.0, 0.5]) for lr in (0.001, 0.01, 0.1)
            for s in (1, 2)]
    recs += [record("sine_100", "SGN", k, s, [0, 1], "test_loss", [1.0, v])
             for k, vals in ((10, (0.30, 0.34)), (20, (0.305, 0.325))) for s, v in zip((1, 2), vals)]
    summ = rep.summarise("sine_100", recs, [], "ci")
    text = R.regression_findings("sine_100", summ, R.claims({"sine_100": summ}, "ci"))[0]
    assert "the best k is 20, the next best SGN(10) (0.32) is within the spread" in text


def test_classification_findings(summary, verdicts):
    ci, paper = R.classification_findings("mnist", summary["mnist"], verdicts)
    assert ci == ("MNIST (ci scale, seeds 1–2): after epoch 1, SGN(3) 82.5 % [80.0 %–85.0 %] (2 seeds) vs "
                  "SGD(1) 45.0 % [40.0 %–50.0 %] (2 seeds) (reproduced); after epoch 2, the end of the SGN "
                  "budget: SGN(3) 89.0 % against the best SGD at the same epoch, SGD(1) 55.0 %; "
                  "SGN(3) 82.5 % after epoch 1.")
    assert "At 25 s on our clock: SGN(3) 89.0 % against SGD(1) 75.0 % (reproduced)." in paper
    assert "in SGD-epoch equivalents" in paper
    # SGN(3): 2 s per epoch against 1 s per SGD epoch; the runs end after 4 s
    assert "An SGN(3) epoch costs 2 SGD epochs on our clock" in paper and "after 4 s." in paper


def test_findings_are_ordered_and_skip_missing(summary, verdicts):
    out = R.findings(summary, verdicts)
    assert [s.split(" (")[0] for s in out] == ["Boston", "Boston", "MNIST", "MNIST"]
    assert R.findings({}, []) == []


def test_timed_findings_read_the_verdicts(summary, verdicts):
    (text,) = R.timed_findings(summary, verdicts)
    assert text == ("MNIST (ci scale, measured clock): at 2 s, SGN(3) 82.5 % [80.0 %–85.0 %] (2 seeds) vs "
                    "SGD(1) 55.0 % [50.0 %–60.0 %] (2 seeds) (reproduced); at 4 s, SGN(3) 89.0 % "
                    "[88.0 %–90.0 %] (2 seeds) vs SGD(1) 75.0 % [70.0 %–80.0 %] (2 seeds) (reproduced). "
                    "The first SGN(3) epoch cost 2 SGD epochs.")


def test_sgn_iterations_of_a_stand_in():
    recs = [record("cifar10", "SGD", 0.1, 1, [0, 1, 2], "test_accuracy", [0.1, 0.2, 0.3]),
            record("cifar10", "SGN", 3, 1, [0, 4, 8], "test_accuracy", [0.1, 0.4, 0.6],
                   sgn=trace([1e-4] * 8, [1.0] * 8, 0.0))]
    summ = rep.summarise("cifar10", recs, [], "ci")
    assert summ["ci"]["stand_in"] is True
    (text,) = R.classification_findings("cifar10", summ, R.claims({"cifar10": summ}, "ci"))
    assert text.startswith("CIFAR-10 stand-in (fashion_mnist_32) (ci scale, seed 1): after epoch 1, "
                           "SGN(3) 40.0 %")
    assert text.endswith("With 8 SGN iterations per run, 8 of them are the 10-CG warm-up.")


def test_trace_findings(summary):
    ci, paper = R.trace_findings(summary)
    assert ci.startswith("ci scale: ρ ends at the floor in 3 of 3 SGN runs (largest ρ 2.0e-04); "
                         "mean α on classification 0.98–0.98; MNIST steps with a backtrack 50–50 %")
    b = ref.run_table("boston").query("config == 'SGN(10)'")
    share = 100 * b["backtracked_share"]
    assert (f"Boston SGN(10): 4 iterations, 50 % of them backtracked (the reference's runs: "
            f"{b['iterations'].mean():.0f} iterations, {share.min():.0f}–{share.max():.0f} % "
            "backtracked") in ci
    assert paper.startswith("paper scale:")
    assert R.trace_findings({}) == []


def test_readme_check_on_synthetic_logs():
    frame = pd.DataFrame({"config": "SGN(3)", "seed": [1, 1, 1, 2, 2, 2], "epoch": [0, 1, 2] * 2,
                          "time": [0.0, 2.0, 4.0] * 2, "test_accuracy": [0.1, 0.5, 0.9, 0.1, 0.7, 0.8],
                          "status": "ok"})
    check = ref.readme_check({("mnist", 5): {"SGN(3)": 85.0, "SGD(1)": 50.0}}, {"mnist": frame})
    # 2 s per epoch: T = 5 s reads epoch 2, the seed mean 85 %; SGD(1) is not in the logs
    assert check["recomputed"].tolist()[0] == 85.0 and check["epoch"].tolist() == [2, 0]
    assert check["match ±0.1"].tolist() == [True, False]
    assert ref.readme_check_text(check) == \
        "1 of 2 README cells recomputed within ±0.1; mismatches: mnist SGD(1) @ 5 s"


def test_readme_check_on_the_reference_logs():
    check = ref.readme_check()
    assert len(check) == sum(len(c) for c in ref.README_TABLE.values()) == 39
    assert ref.readme_check_text(check) == \
        "38 of 39 README cells recomputed within ±0.1; mismatches: cifar10 SGD(0.01) @ 650 s"
