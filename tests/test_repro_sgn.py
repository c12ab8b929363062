"""repro.sgn: configs carry the whole SGN configuration, the clock is training only, legacy records map."""
import math

import pytest
import torch

from curvlab import experiment
from curvlab.repro import sgn
from curvlab.sgn import SGNConfig


def test_sgn_config_is_in_the_record_key():
    cfgs = sgn.configs("boston", "ci")
    sgn_cfg = [c for c in cfgs if c["method"] == "SGN"]
    assert [c["cg"] for c in sgn_cfg] == [1, 2, 3, 5, 10, 20]
    for c in sgn_cfg:
        assert SGNConfig.from_dict(c["sgn"]) == SGNConfig(cg_max_iter=c["cg"])
    a = {**sgn_cfg[0], "seed": 1}
    b = {**a, "sgn": {**a["sgn"], "rho": 1e-3}}
    assert experiment.config_hash(a) != experiment.config_hash(b)


def test_configs_per_scale_and_bad_name():
    paper = sgn.configs("cifar10", "paper")
    assert any(c.get("longer") for c in paper) and paper[0]["batch"] == 1000
    mnist = {c["name"]: c for c in sgn.configs("mnist", "ci")}
    assert mnist["mnist_SGN_2"]["hidden"] == [10, 10, 10] and mnist["mnist_SGN_3"]["hidden"] == [20, 20, 20]
    with pytest.raises(ValueError, match="benchmark"):
        sgn.configs("svhn", "ci")


def test_train_clock_excludes_evaluation(monkeypatch):
    """A slow evaluation must not move the training clock: eval time is reported apart."""
    import time as _time

    from curvlab import training
    real = training.evaluate_regression

    def slow(*a, **k):
        _time.sleep(1.0)
        return real(*a, **k)

    monkeypatch.setattr(training, "evaluate_regression", slow)
    cfg = {**[c for c in sgn.configs("boston", "ci") if c["method"] == "SGN"][0], "seed": 1,
           "budget": {"epochs": 1}}
    ctx = experiment.Context(seed=1, device=torch.device("cpu"), generator=experiment.seed_everything(1),
                             budget=experiment.Budget(epochs=1))
    out = sgn.train(cfg, ctx)
    m = out["metrics"]
    assert len(m["eval_time"]) == len(m["epoch"]) == 2
    assert m["eval_time"][-1] >= 2.0 and out["summary"]["eval_time_s"] == m["eval_time"][-1]
    assert m["time"][-1] < 1.0                 # 4 tiny steps; the 2 s of evaluation are not on the clock
    assert out["summary"]["clock"] == "training only"
    assert len(m["sgn_rho"]) == 4 and all(math.isfinite(r) for r in m["sgn_rho"])


def test_legacy_records_get_the_settings_then_in_force():
    old = {"config": {"method": "SGN", "cg": 3, "benchmark": "mnist"}, "summary": {"steps": 1}, "metrics": {}}
    new = sgn.as_legacy(old)
    assert new["config"]["legacy"] is True and new["summary"]["clock"] == "training + evaluation"
    assert SGNConfig.from_dict(new["config"]["sgn"]).cg_max_iter == 3
    assert "sgn" not in old["config"]                      # the stored record is not modified
    fresh = {"config": {"method": "SGN", "cg": 3, "sgn": {}}, "summary": {"clock": "training only"}}
    assert sgn.as_legacy(fresh) is fresh


def test_committed_paper_records_load_as_legacy(monkeypatch):
    from curvlab.data import REPO_ROOT
    monkeypatch.setenv("CURVLAB_RESULTS", str(REPO_ROOT / "results"))      # read only
    recs = sgn.load("boston", "paper")
    assert len(recs) == 50
    assert all(r["config"]["legacy"] for r in recs)
    assert all("sgn" in r["config"] for r in recs if r["config"]["method"] == "SGN")


def test_paper_cost_from_measured_ci_timings():
    def rec(method, value, train_s, epochs):
        cfg = {"method": method, ("lr" if method == "SGD" else "cg"): value}
        return {"config": cfg, "summary": {"train_time_s": train_s, "eval_time_s": 0.0, "epochs": epochs}}
    # boston: seconds budgets only -> 10 s x 10 configs x 5 seeds
    cost = sgn.paper_cost({"boston": [rec("SGD", 0.1, 1.0, 10)]}).set_index("benchmark")
    assert cost.loc["boston", "cpu_hours"] == pytest.approx(5 * 10 * 10 / 3600)
    # fashion: 1 s per ci epoch on 2 000 images -> 30 s per full epoch; SGD 4 x 100 epochs, SGN 5 x 10
    recs = [rec("SGD", lr, 20.0, 20) for lr in sgn.SGD_GRID] + [rec("SGN", 3, 2.0, 2)]
    cost = sgn.paper_cost({"fashion": recs}).set_index("benchmark")
    assert cost.loc["fashion", "cpu_hours"] == pytest.approx(5 * (400 + 50) * 30 / 3600)
