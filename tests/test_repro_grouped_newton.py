"""curvlab.repro.grouped_newton*: settings, models, verdicts and figures on synthetic records."""
import math

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch

from curvlab.repro import grouped_newton as R
from curvlab.repro import grouped_newton_figures as FIG
from curvlab.repro import grouped_newton_verdicts as V

matplotlib.use("Agg")


def _record(method, final, seed, lr=None, variant="full", status="ok", H=None, lrs=None, model="mlp"):
    cfg = {"model": model, "method": method, "variant": variant, "lr": lr, "seed": seed}
    hist = [{"step": 10 * (i + 1), "H": H, "lrs": lrs, "ok": True} for i in range(3)] if H is not None else []
    return {"config": cfg, "status": status,
            "metrics": {"epoch": [0.0, 1.0, 2.0], "time": [0.0, 1.0, 2.0],
                        "train_loss": [math.nan, 2 * final, final],
                        "test_accuracy": [0.1, 0.5, 0.9]},
            "summary": {"history": hist, "train_time_s": 2.0}}


def _frame(gn, adam, diag=None, H=None, lrs=None, status="ok"):
    rows = []
    for seed, v in enumerate(gn):
        rows.append(_record("GroupedNewton", v, seed, H=H, lrs=lrs, status=status))
    for seed, v in enumerate(diag or gn):
        rows.append(_record("GroupedNewton", v, seed, variant="diagonal"))
    for lr, values in adam.items():
        rows += [_record("Adam", v, seed, lr=lr, variant="baseline") for seed, v in enumerate(values)]
    return pd.DataFrame([{**r["config"], "status": r["status"], "record": r} for r in rows])


ADAM = {1e-3: [0.5, 0.55, 0.6], 3e-4: [0.3, 0.32, 0.34], 1e-4: [0.8, 0.85, 0.9]}


def test_settings_and_errors_name_the_parameter():
    assert R.settings("ci", "mlp")["epochs"] >= 1
    with pytest.raises(ValueError, match="scale"):
        R.settings("huge", "mlp")
    with pytest.raises(ValueError, match="model"):
        R.settings("ci", "vgg11")                       # paper scale only
    with pytest.raises(ValueError, match="model"):
        R.build_model("resnet")


def test_configs_put_the_whole_optimizer_config_in_the_key_and_grid_is_extended_at_ci():
    grid = R.configs("mlp", "ci")
    gn = [c for c in grid if c["method"] == "GroupedNewton"]
    assert {c["variant"] for c in gn} == {"full", "diagonal"}
    assert gn[0]["gn"]["damping"] == R.FINAL["mlp"]["damping"] and gn[1]["gn"]["diagonal"] is True
    adam = sorted(c["lr"] for c in grid if c["method"] == "Adam")
    assert set(R.ADAM_GRID) < set(adam) and max(adam) > max(R.ADAM_GRID)
    assert R.label(grid[1]) == "GroupedNewton (diag H̄)"
    assert R.record_name({**grid[-1], "seed": 2}).endswith("-s2")


def test_models_have_the_papers_group_counts_and_init():
    counts = {"mlp": 8, "lenet": 10, "vgg11": 18}
    for name, s in counts.items():
        torch.manual_seed(0)
        net = R.build_model(name)
        assert len(list(net.parameters())) == s
    torch.manual_seed(0)
    first = R.build_model("mlp")[0]
    assert float(first.bias.detach().abs().max()) == 0.0
    assert abs(float(first.weight.detach().std()) * math.sqrt(784) - 1.0) < 0.05     # N(0, 1)/√fan_in


def test_scaled_linear_is_the_same_function_with_a_scaled_gradient():
    torch.manual_seed(0)
    lin = torch.nn.Linear(3, 2).double()
    sc = R.ScaledLinear(lin, 100.0)
    x = torch.randn(5, 3, dtype=torch.float64)
    assert torch.allclose(sc(x), lin(x), atol=1e-14)
    lin(x).sum().backward()
    sc(x).sum().backward()
    assert torch.allclose(sc.weight.grad, 100.0 * lin.weight.grad)


def test_vs_adam_orders_by_the_spread_and_respects_the_grid_edge():
    assert V.vs_adam(_frame([0.1, 0.12, 0.11], ADAM), "mlp", "ci", "MNIST (real)").status == "reproduced"
    assert V.vs_adam(_frame([0.5, 0.6, 0.55], ADAM), "mlp", "ci", "MNIST (real)").status == "differs"
    v = V.vs_adam(_frame([0.31, 0.29, 0.35], ADAM), "mlp", "ci", "MNIST (real)")
    assert v.status == "inconclusive" and "within the spread" in v.evidence
    edge = {1e-3: [0.1, 0.1, 0.1], 3e-4: [0.3, 0.3, 0.3]}
    assert V.vs_adam(_frame([0.05] * 3, edge), "mlp", "ci", "x").status == "inconclusive (lr at grid edge)"
    proxy = V.vs_adam(_frame([0.1, 0.12, 0.11], ADAM), "lenet", "ci", "fashion_mnist_32 (stand-in)", True)
    assert proxy.status == "proxy" and proxy.evidence.startswith("reproduced:")


def test_a_diverged_run_scores_infinity_and_breaks_stability():
    frame = _frame([0.1, 0.1, 0.1], ADAM, status="diverged")
    assert V.final_nll(frame["record"].iloc[0]) == math.inf
    v = V.stable(frame, "ci")
    assert v.status == "differs" and "seed 0" in v.evidence
    assert V.stable(_frame([0.1] * 3, ADAM), "ci").status == "reproduced"


def test_diagonal_ablation():
    assert V.diagonal_ablation(_frame([0.1] * 3, ADAM, diag=[0.5] * 3), "mlp", "ci").status == "reproduced"
    assert V.diagonal_ablation(_frame([0.5] * 3, ADAM, diag=[0.1] * 3), "mlp", "ci").status == "differs"


def test_interactions_and_rate_range_from_the_history():
    strong = [[1.0, 0.8], [0.8, 1.0]]
    weak = [[1.0, 0.01], [0.01, 4.0]]
    assert V.interactions(_frame([0.1] * 3, ADAM, H=strong), "mlp", "ci").status == "reproduced"
    assert V.interactions(_frame([0.1] * 3, ADAM, H=weak), "mlp", "ci").status == "differs"
    assert V.interactions(_frame([0.1] * 3, ADAM), "mlp", "ci").status == "inconclusive"     # no history
    wide, narrow = [1e-4, 0.5, 0.0], [0.1, 0.3]
    assert V.lr_range(_frame([0.1] * 3, ADAM, H=strong, lrs=wide), "mlp", "ci").status == "reproduced"
    assert V.lr_range(_frame([0.1] * 3, ADAM, H=strong, lrs=narrow), "mlp", "ci").status == "differs"


def test_normalised_handles_negative_and_zero_diagonals():
    n = V.normalised([[4.0, -2.0, 1.0], [-2.0, -1.0, 0.0], [1.0, 0.0, 0.0]])
    assert n[0, 1] == pytest.approx(-1.0) and n[1, 1] == pytest.approx(-1.0) and n[0, 2] == 0.0


def test_invariance_verdict():
    ok = {"GroupedNewton": 1e-12, "SGD": 0.5, "Adam": 0.02}
    assert V.invariance(ok, "ci").status == "reproduced"
    assert V.invariance({**ok, "GroupedNewton": 1e-3}, "ci").status == "differs"
    assert V.invariance({**ok, "Adam": 1e-6}, "ci").status == "differs"


def test_figures_draw_what_the_records_hold():
    frame = _frame([0.1, 0.12, 0.11], ADAM, H=[[1.0, 0.5], [0.5, 2.0]], lrs=[0.1, 0.01])
    fig, data = FIG.curves(frame, "t")
    assert set(data["config"]) == {"GroupedNewton", "GroupedNewton (diag H̄)", "Adam(0.001)", "Adam(0.0003)",
                                   "Adam(0.0001)"}
    assert data.loc[(data["config"] == "GroupedNewton") & (data["epoch"] == 2), "train_nll"].iloc[0] == \
        pytest.approx(np.mean([0.1, 0.12, 0.11]))
    hist, seed = FIG.first_history(frame)
    fig, data = FIG.heatmaps(hist, ["w", "b"], "t")
    assert len(data) == 4 * 3 and seed == 0
    fig, data = FIG.lr_traces(hist, ["w", "b"], "t")
    assert set(data["group"]) == {"w", "b"}
    fig, data = FIG.invariance({"SGD": {"original": [1.0, 0.5], "rescaled": [1.0, 0.7]}}, "t")
    assert len(data) == 4


def test_paper_cost_scales_measured_seconds():
    frame = _frame([0.1] * 3, ADAM)
    cost = R.paper_cost({"mlp": frame})
    ci, paper = R.settings("ci", "mlp"), R.settings("paper", "mlp")
    per = 2.0 / (ci["epochs"] * ci["n_train"])
    gn = cost[cost["method"] == "GroupedNewton"].iloc[0]
    assert gn["runs"] == 2 * 5                          # full and diagonal H̄, 5 seeds each
    assert gn["cpu_hours"] == pytest.approx(per * paper["epochs"] * paper["n_train"] * 10 / 3600)


def test_the_notebook_seed_shifts_only_ci_seeds():
    from curvlab.repro import grouped_newton_results as RES
    assert RES.seeds("ci") == [1, 2, 3] and RES.seeds("ci", 10) == [11, 12, 13]
    assert RES.seeds("paper", 10) == R.SETTINGS["paper"]["seeds"]


def test_single_seed_orderings_need_the_margin():
    one = {1e-3: [0.5], 3e-4: [0.3], 1e-4: [0.8]}
    assert V.vs_adam(_frame([0.1], one), "mlp", "paper", "MNIST (real)").status == "reproduced"   # 3x lower
    tie = V.vs_adam(_frame([0.25], one), "mlp", "paper", "MNIST (real)")
    assert tie.status == "inconclusive" and "within 1.5× of" in tie.evidence and "1 seed" in tie.evidence
    assert V.diagonal_ablation(_frame([0.25], one, diag=[0.3]), "mlp", "paper").status == "inconclusive"


def test_cpu_hour_records_are_the_paper_grid_cut_to_twenty_epochs_and_only_read(tmp_path, monkeypatch):
    from curvlab.repro import grouped_newton_results as RES
    monkeypatch.setenv("CURVLAB_RESULTS", str(tmp_path))
    paper = R.configs("mlp", "paper")
    cut = R.cpu_hour_configs("mlp")
    assert [c["budget"] for c in cut] == [{"epochs": R.CPU_HOUR["epochs"]}] * len(paper)
    assert [{**c, "budget": None} for c in cut] == [{**c, "budget": None} for c in paper]
    assert set(R.CPU_HOUR["seeds"]["mlp"]) <= set(R.SETTINGS["paper"]["seeds"])
    assert RES.cpu_hour("mlp") is None and not list(tmp_path.rglob("*.json"))     # nothing ran
    with pytest.raises(ValueError, match="model"):
        R.cpu_hour_configs("vgg11")
