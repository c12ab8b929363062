"""curvlab.repro.lcnn*: settings, data, exact 2-D curvature, tiny end-to-end runs, figures and tables."""
import math
import os
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch

from curvlab import data, experiment
from curvlab.repro import lcnn as R

matplotlib.use("Agg")

TINY_T1 = {"n_train": 48, "n_test": 24, "n_measure": 6, "input": {"channels": 1, "size": 8}, "epochs": 1,
           "batch": 24, "model": {"name": "resnet18", "width": 0.0625, "blocks": [1, 1, 1, 1]},
           "measure": {"iters": 2, "batch": 6}, "robust": {"radii": [0.1], "steps": 1, "factor": 2.5},
           "stability": {"sigma": 0.01, "n_draws": 1}}
TINY_MOONS = {"n": 64, "epochs": 2, "batch": 32, "grid": 6, "hidden": [4]}


@pytest.fixture
def tiny(monkeypatch):
    ci = R.SETTINGS["ci"]
    monkeypatch.setitem(R.SETTINGS, "ci", {"seeds": [1], "moons": {**ci["moons"], **TINY_MOONS},
                                           "table1": {**ci["table1"], **TINY_T1}})


def test_settings_follow_the_reference_and_errors_name_the_parameter():
    paper = R.settings("paper")
    assert (paper["epochs"], paper["batch"], paper["optimizer"]["lr"]) == (200, 128, 0.1)
    assert paper["optimizer"]["momentum"] == 0.9 and paper["optimizer"]["weight_decay"] == 5e-4
    assert [int(f * paper["epochs"]) for f in paper["optimizer"]["milestones"]] == [150, 175]
    assert paper["model"] == {"name": "resnet18", "width": 1.0, "blocks": None}
    assert R.settings("ci")["n_train"] >= 1000 and len(R.SETTINGS["ci"]["seeds"]) == 3
    with pytest.raises(ValueError, match="scale"):
        R.settings("huge")
    with pytest.raises(ValueError, match="experiment_name"):
        R.settings("ci", "vgg")
    with pytest.raises(ValueError, match="variant"):
        R.objective("relu", R.settings("ci"))
    with pytest.raises(ValueError, match="dataset"):
        R.dataset_for("imagenet")
    with pytest.raises(ValueError, match="model name"):
        R.build_model({**R.table1_config("lcnn", "ci"), "model": {"name": "vit", "width": 1, "blocks": None}})


def test_configs_hold_the_seven_variants_and_their_objectives():
    grid = R.configs_table1("ci")
    by = {c["variant"]: c for c in grid}
    assert list(by) == list(R.TABLE1_VARIANTS) and by["standard"]["dataset"] == "mnist_fashion_20"
    assert {v: c["arch"] for v, c in by.items()} == R.ARCH
    assert by["lcnn"]["objective"] == {"reg_beta": 1e-2, "reg_gamma": 1e-2, "reg_gnorm": 0.0, "reg_cure": 0.0}
    lam = 1e-3 * 1e5 / 128**2                                          # the reference's c·1e5/B²
    assert by["gradnorm"]["objective"]["reg_gnorm"] == pytest.approx(lam)
    assert lam == pytest.approx(6.1e-3, 1e-2)
    both = by["lcnn_gradnorm"]["objective"]
    assert both["reg_beta"] == 1e-2 and both["reg_gnorm"] == pytest.approx(lam)
    assert by["cure"]["objective"]["reg_cure"] == pytest.approx(1e-3 * 1e3 / 128**2)
    assert by["adversarial"]["adversarial"] == {"eps": 0.1, "steps": 3, "step_size": 0.01}
    assert all(by[v]["adversarial"] is None for v in R.TABLE1_VARIANTS if v != "adversarial")
    assert not any(by["standard"]["objective"].values()) and not any(by["softplus_wd"]["objective"].values())
    assert len(R.configs_grid()) == 3 * 3 * 2
    assert R.record_name({**by["cure"], "seed": 2}) == "table1-resnet18-mnist_fashion_20-cure-s2"


def test_prepared_draws_a_random_subset_scaled_and_pooled():
    xtr, ytr, xte, yte = R.prepared("mnist_fashion_20", 200, 50, 1, 16, 0)
    assert xtr.shape == (200, 1, 16, 16) and xte.shape == (50, 1, 16, 16)
    assert 0.0 <= float(xtr.min()) and float(xtr.max()) <= 1.0
    assert (ytr < 10).any() and (ytr >= 10).any()                      # both MNIST and Fashion rows
    full = data.load("mnist_fashion_20", "train")
    idx = np.random.default_rng(0).permutation(len(full.x))[0]
    block = full.x[idx, 0, :2, :2].double() / 255                       # the 2×2 block of pixel (0, 0)
    assert float(xtr[0, 0, 0, 0]) == pytest.approx(float(block.mean()), abs=1e-6)
    assert int(ytr[0]) == int(full.y[idx])


def test_augment_is_a_shifted_crop_or_its_mirror():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4)
    g = torch.Generator().manual_seed(0)
    out = R.augment(x, g, padding=1)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    for i in range(2):
        crops = [padded[i, :, a:a + 4, b:b + 4] for a in range(3) for b in range(3)]
        assert any(torch.equal(out[i], c) or torch.equal(out[i], c.flip(-1)) for c in crops)


@pytest.mark.usefixtures("float64")
def test_exact_2d_curvature_matches_torch_func_hessian():
    from curvlab.lcnn.models import moons_mlp
    torch.manual_seed(0)
    net = moons_mlp("lcnn", (6, 5))
    net.train()
    net(torch.randn(32, 2))                                            # running statistics
    net.eval()
    x, y = torch.randn(7, 2), torch.randint(0, 2, (7,))
    got = R.exact_curvature_2d(net, x, y)
    for i in range(len(x)):
        def loss(z, i=i):
            return torch.nn.functional.cross_entropy(net(z[None]), y[i:i + 1])
        H = torch.func.hessian(loss)(x[i]).detach()
        g = torch.func.grad(loss)(x[i]).detach()
        lam = torch.linalg.eigvalsh(H).abs().max()
        assert float(got["hessian_norm"][i]) == pytest.approx(float(lam), rel=1e-8)
        assert float(got["curvature"][i]) == pytest.approx(float(lam / (g.norm() + 1e-6)), rel=1e-8)
    assert not net.training


def test_a_non_finite_loss_is_recorded_as_diverged(tiny, monkeypatch):
    from curvlab.lcnn import regularizers
    real, calls = regularizers.regularized_loss, []

    def blows_up(model, x, y, **kw):                                    # finite once, then nan
        total, parts = real(model, x, y, **kw)
        calls.append(1)
        return (total if len(calls) == 1 else total * math.nan), parts
    monkeypatch.setattr(regularizers, "regularized_loss", blows_up)
    cfg = {**R.table1_config("standard", "ci"), "seed": 1}
    rec = experiment.execute(R.train_table1, cfg, notebook=R.NOTEBOOK, scale="ci", threads=1)
    assert rec["status"] == "diverged"
    assert math.isnan(rec["summary"]["curvature_mean"]) and math.isnan(rec["summary"]["test_accuracy"])
    assert rec["summary"]["steps"] == 2 and len(calls) == 2


def test_everything_end_to_end_writes_figures_tables_and_verdicts(tiny):
    from curvlab.repro import lcnn_results as RES
    out = RES.everything("ci")
    frame = out["table1"]["frame"]
    assert list(frame["variant"]) == list(R.TABLE1_VARIANTS) and set(frame["seed"]) == {1}
    row = frame.iloc[1]
    assert row["status"] in ("ok", "collapsed") and row["train_time_s"] > 0 and row["train_cpu_s"] > 0
    assert 0.0 <= row["converged_fraction"] <= 1.0 and 0.0 <= row["robust_0.1"] <= 1.0
    assert math.isfinite(row["curvature_mean"]) and math.isfinite(row["beta_mean"])
    assert len(row["record"]["metrics"]["train_loss"]) == TINY_T1["epochs"] + 1
    moons = out["moons"]["frame"]
    assert len(moons["record"].iloc[0]["metrics"]["grid_prob"]) == TINY_MOONS["grid"] ** 2
    root = Path(os.environ["CURVLAB_OUTPUTS"])
    for fig_id, fig in out["figures"].items():
        assert (root / "figures" / "lcnn" / f"{fig_id}.png").stat().st_size > 0
        assert (root / "figures" / "lcnn" / f"{fig_id}.csv").exists()
        assert fig["summary"].startswith(f"figures/lcnn/{fig_id}.png")
    for table_id in ("table1", "robustness", "overhead"):
        assert (root / "tables" / "lcnn" / f"{table_id}.md").exists()
    assert set(out["tables"]["table1"]["paper"]) == {"[PDF] not in the spec"}
    statuses = [v.status for v in out["verdicts"]]
    assert statuses[0] == "reproduced" and statuses[-1] == "needs GPU" and statuses[-2] == "needs GPU"
    assert all(v.status == "proxy" for v in out["verdicts"][2:7])       # Table 1 on the stand-in
    assert all("stand-in for CIFAR-100" in v.evidence for v in out["verdicts"][2:7])
    again = R.sweep_table1("ci", [1], missing="skip")                   # the records are on disk
    assert list(again["wall_clock_s"]) == list(frame["wall_clock_s"])
