"""ISAAC reproduction harness: record keys, read-out rules, divergence marking, a tiny end-to-end sweep."""
import math

import pandas as pd
import pytest

from curvlab import data, experiment
from curvlab.repro import isaac as R
from curvlab.repro import isaac_grids as G

needs_mnist = pytest.mark.skipif(not data.available("mnist"), reason="MNIST not downloaded (make data)")


def record(status="ok", loss=0.5, accs=(0.1, 0.5, 0.9), lr=0.1, seed=0):
    return {"status": status, "config": {"seed": seed, "lr": lr},
            "summary": {"final_train_loss": loss, "final_test_accuracy": accs[-1]},
            "metrics": {"step": list(range(len(accs))), "time": [0.0] * len(accs),
                        "eval_train_loss": [loss] * len(accs), "test_accuracy": list(accs)}}


def test_score_marks_diverged_runs_infinite():
    assert R.score(record(loss=0.25)) == 0.25
    assert R.score(record(status="diverged", loss=0.25)) == math.inf
    assert R.score(record(loss=math.nan)) == math.inf


def test_outcome_tells_collapse_from_divergence_and_from_never_learning():
    assert R.outcome(record()) == "ok"
    assert R.outcome(record(status="diverged")) == "diverged"
    assert R.outcome(record(accs=(0.1, 0.6, 0.1))) == "collapsed to chance"
    assert R.outcome(record(accs=(0.1, 0.11, 0.12))) == "at chance"


def test_divergence_check_records_the_step():
    state = {"step": 0, "diverged_step": None, "initial": None}
    R._check_divergence(state, 2.0, 10.0)
    state["step"] = 50
    R._check_divergence(state, 19.0, 10.0)
    assert state["diverged_step"] is None
    state["step"] = 100
    R._check_divergence(state, 21.0, 10.0)
    assert state["diverged_step"] == 100
    other = {"step": 7, "diverged_step": None, "initial": 1.0}
    R._check_divergence(other, math.nan, 10.0)
    assert other["diverged_step"] == 7


def frame(scores_by_lr, setting="ζ*"):
    rows = [{"setting": setting, "lr": lr, "seed": s, "record": record(loss=v, lr=lr, seed=s)}
            for lr, scores in scores_by_lr.items() for s, v in enumerate(scores)]
    return R.tidy(pd.DataFrame(rows))


def test_best_lr_uses_the_mean_over_seeds_and_flags_the_grid_edge():
    # lr 0.3 has the best single seed but the worse mean; 0.1 wins on the mean, inside the grid
    t = R.best_lrs(frame({1.0: [0.9, 0.9], 0.3: [0.1, 0.9], 0.1: [0.4, 0.4], 0.03: [0.8, 0.8]}))
    assert t["lr"].iloc[0] == 0.1 and not t["at_edge"].iloc[0]
    assert t["scores"].iloc[0] == [0.4, 0.4] and t["seeds"].iloc[0] == [0, 1]
    edge = R.best_lrs(frame({1.0: [0.1], 0.3: [0.5], 0.1: [0.6]}))
    assert edge["lr"].iloc[0] == 1.0 and edge["at_edge"].iloc[0]


def test_best_lr_never_picks_a_diverged_rate():
    f = frame({1.0: [0.01], 0.3: [0.5], 0.1: [0.6]})
    f.at[0, "record"] = record(status="diverged", loss=0.01)
    t = R.best_lrs(R.tidy(f.drop(columns=["score", "outcome"])))
    assert t["lr"].iloc[0] == 0.3 and t["failed_lrs"].iloc[0] == [1.0]


def test_record_key_holds_every_setting_that_changes_the_result():
    for grid in (G.fig5_grid("ci"), G.fig1_grid("ci"), G.fig2_grid("ci"),
                 G.fig2_kfac_grid("ci", {0.1: 0.3, 0.01: 0.1})):
        for cfg in grid:
            for key in ("la", "lg", "layers", "form", "samples", "optimizer", "lr", "weight_lr", "batch",
                        "budget", "clock", "diverge_factor", "n_train", "n_eval", "method", "model"):
                assert key in cfg, key
    star = next(c for c in G.fig1_grid("ci") if c["method"] == "isaac")
    zeta = next(c for c in G.fig1_grid("ci") if c["method"] == "zeta")
    assert star["form"] == "auto" and star["lg"] is None and zeta["samples"] == 1
    assert experiment.config_hash(star) != experiment.config_hash({**star, "la": star["la"] * 10})
    assert experiment.config_hash(star) != experiment.config_hash({**star, "form": "batch"})
    names = [R.record_name(c) for c in G.fig1_grid("ci")]
    assert len(set(names)) == len(names)


def test_kfac_takes_zetas_rate_times_lambda_squared():
    kfac = G.fig2_kfac_grid("ci", {0.1: 0.3, 0.01: 1.0})
    assert [c["weight_lr"] for c in kfac] == pytest.approx([0.3 * 0.01, 1.0 * 1e-4])


def test_paper_fig5_reuses_the_ci_rates():
    grid = G.fig5_grid("paper", {k: 0.3 for k in G.SUBSETS})
    assert len(grid) == len(G.SUBSETS) and {c["lr"] for c in grid} == {0.3}
    assert grid[0]["budget"] == {"epochs": 30} and grid[0]["n_train"] == 60_000


def test_invalid_settings_raise():
    with pytest.raises(ValueError, match="scale"):
        G.settings("huge", "fig5")
    with pytest.raises(ValueError, match="fig"):
        G.settings("ci", "fig99")
    with pytest.raises(ValueError, match="model"):
        R.build_model("transformer")


@needs_mnist
def test_tiny_sweep_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("CURVLAB_RESULTS", str(tmp_path))
    common = dict(model="mlp-16", n_train=200, n_test=100, n_eval=100, budget={"steps": 6}, eval_every=2)
    grid = [G.base("ci", "fig5", setting="GD", lr=0.1, **common),
            G.base("ci", "fig5", setting="{5}", method="isaac", la=10.0, layers=[5], lr=0.1, **common),
            G.base("ci", "fig5", setting="GD", lr=1e4, **common),
            G.base("ci", "fig5", setting="{5}", method="isaac", la=10.0, layers=[1, 5], lr=1e4, **common)]
    out = R.sweep(grid, [0, 1], "ci")
    assert len(out) == 8 and set(out["seed"]) == {0, 1}
    ok = out[out["lr"] == 0.1]
    assert (ok["outcome"] != "diverged").all()
    for rec in ok["record"]:
        s = rec["summary"]
        assert s["steps"] == 6 and s["eval_time_s"] > 0 and s["train_time_s"] > 0
        assert rec["metrics"]["step"][0] == 0 and rec["config"]["clock"] == G.CLOCK
    blown = out[out["lr"] == 1e4]
    assert (blown["outcome"] == "diverged").all()
    assert all(r["summary"]["diverged_step"] is not None for r in blown["record"])
    again = R.sweep(grid, [0, 1], "ci")                       # read back, not re-run
    assert [r["created"] for r in again["record"]] == [r["created"] for r in out["record"]]


def test_command_line_rejects_unknown_figures_and_scales():
    with pytest.raises(SystemExit):
        R.main(["fig99"])
    with pytest.raises(SystemExit):
        R.main(["fig5", "--scale", "huge"])


def test_paper_cost_scales_measured_seconds_per_step():
    from curvlab.repro import isaac_results as RES
    recs = [{"summary": {"train_time_s": 2.0, "eval_time_s": 1.0, "steps": 100}}]
    table = pd.DataFrame({"setting": list(G.SUBSETS), "records": [recs] * len(G.SUBSETS)})
    cost = RES.paper_cost({"fig5": {"table": table}})
    steps = 30 * 60_000 // 100                                  # 30 epochs of 600 steps
    assert cost["steps_per_run"] == steps and cost["runs"] == len(G.SUBSETS)
    assert cost["cpu_hours"] == pytest.approx(len(G.SUBSETS) * 0.03 * steps / 3600)
    assert cost["wall_hours_2_workers"] == pytest.approx(cost["cpu_hours"] / 2)


def test_table2_frame_puts_our_ratios_beside_the_papers():
    from curvlab.repro import isaac_results as RES
    res = {"mlp 5x100": {"gradient": {"time_ms": 2.0, "time_ratio": 1.0, "peak_mb": 1.0, "memory_ratio": 1.0},
                         "isaac": {"time_ms": 2.6, "time_ratio": 1.3, "peak_mb": 1.0, "memory_ratio": 1.0}}}
    t = RES.table2_frame(res, lambda model, method, col: {"isaac": 1.6}.get(method) if col == 0 else None)
    assert list(t["method"]) == ["gradient", "K-FAC", "ζ", "ζ*"]
    star = t[t["method"] == "ζ*"].iloc[0]
    assert star["time ratio (ours)"] == 1.3 and star["time ratio (paper CPU)"] == 1.6
    assert math.isnan(t[t["method"] == "K-FAC"].iloc[0]["time ratio (ours)"])      # not timed


def test_best_lr_when_every_rate_diverged_reports_the_smallest_at_the_edge():
    f = frame({1.0: [0.1], 0.3: [0.1]})
    f["record"] = [record(status="diverged") for _ in range(len(f))]
    t = R.best_lrs(R.tidy(f.drop(columns=["score", "outcome"])))
    assert t["lr"].iloc[0] == 0.3 and t["at_edge"].iloc[0] and t["failed_lrs"].iloc[0] == [1.0, 0.3]
