"""curvlab.training.fit: budgets, evaluation clock, divergence, determinism."""
import math

import pytest
import torch

from curvlab import experiment as E
from curvlab import training


def _setup(seed=0):
    g = E.seed_everything(seed)
    x = torch.randn(100, 3)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]])
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def step(xb, yb):
        opt.zero_grad()
        loss = ((model(xb) - yb) ** 2).mean()
        loss.backward()
        opt.step()
        return loss.item()
    return model, step, x, y, g


def test_epoch_budget_and_metrics():
    model, step, x, y, g = _setup()
    out = training.fit(step, x, y, batch_size=30, budget=E.Budget(epochs=3), generator=g,
                       evaluate=lambda: training.evaluate_regression(model, x, y))
    m = out["metrics"]
    assert out["status"] == "ok" and out["summary"]["steps"] == 12      # ceil(100/30) = 4 per epoch
    assert m["epoch"] == [0.0, 1.0, 2.0, 3.0] and m["step"] == [0, 4, 8, 12]
    assert math.isnan(m["train_loss"][0]) and m["test_loss"][-1] < m["test_loss"][0]
    assert all(a <= b for a, b in zip(m["time"], m["time"][1:]))


def test_step_budget_stops_mid_epoch():
    _, step, x, y, g = _setup()
    out = training.fit(step, x, y, batch_size=10, budget=E.Budget(steps=15), generator=g)
    assert out["summary"]["steps"] == 15 and out["metrics"]["step"][-1] == 15


def test_divergence_is_recorded_not_raised():
    _, _, x, y, g = _setup()
    losses = iter([1.0, 2.0, float("inf")] + [0.0] * 100)
    out = training.fit(lambda a, b: next(losses), x, y, batch_size=10, budget=E.Budget(epochs=5), generator=g)
    assert out["status"] == "diverged" and out["summary"]["steps"] == 3


def test_seeded_runs_are_identical():
    runs = []
    for _ in range(2):
        model, step, x, y, g = _setup(seed=7)
        out = training.fit(step, x, y, batch_size=16, budget=E.Budget(epochs=2), generator=g,
                           evaluate=lambda m=model, a=x, b=y: training.evaluate_regression(m, a, b))
        runs.append(out["metrics"]["test_loss"])
    assert runs[0] == runs[1]


def test_evaluate_classifier():
    model = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2) * 100)
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    res = training.evaluate_classifier(model, x, torch.tensor([0, 1, 1]))
    assert abs(res["accuracy"] - 2 / 3) < 1e-12 and res["loss"] > 30



@pytest.mark.parametrize("n, batch_size, drop_last, match", [
    (100, 0, False, "batch_size"), (100, -5, False, "batch_size"), (100, 2.5, False, "batch_size"),
    (0, 10, False, "empty"), (5, 10, True, "drop_last"),
])
def test_bad_batching_is_a_valueerror_not_an_endless_loop(n, batch_size, drop_last, match):
    x, y = torch.randn(n, 3), torch.randn(n, 1)
    with pytest.raises(ValueError, match=match):
        training.fit(lambda a, b: 0.0, x, y, batch_size=batch_size, budget=E.Budget(epochs=1),
                     generator=torch.Generator(), drop_last=drop_last)


def test_evaluation_time_is_reported_apart_from_the_training_axis():
    import time
    _, _, x, y, g = _setup()

    def slow_eval():
        time.sleep(0.02)
        return {"loss": 1.0}
    out = training.fit(lambda a, b: 1.0, x, y, batch_size=50, budget=E.Budget(epochs=2), generator=g,
                       evaluate=slow_eval)
    s = out["summary"]
    assert s["eval_time_s"] >= 0.06 and s["train_time_s"] < 0.05          # 3 evaluations of 20 ms
    assert out["metrics"]["time"][-1] == s["train_time_s"] and "excluded" in s["time_axis"]


def test_blow_up_beyond_k_times_the_initial_loss_is_marked_with_its_step():
    _, _, x, y, g = _setup()
    evals = iter([1.0, 2.0, 11.0, 50.0, 3.0])              # epochs 0..4: above 10x at epoch 2
    out = training.fit(lambda a, b: 1.0, x, y, batch_size=50, budget=E.Budget(epochs=4), generator=g,
                       evaluate=lambda: {"loss": next(evals)})
    assert out["status"] == "diverged" and out["summary"]["steps"] == 8     # a finite blow-up keeps training
    assert out["summary"]["diverged_step"] == 4 and out["summary"]["diverged_epoch"] == 2.0
    evals = iter([1.0, 2.0, 9.0])
    calm = training.fit(lambda a, b: 1.0, x, y, batch_size=50, budget=E.Budget(epochs=2), generator=g,
                        evaluate=lambda: {"loss": next(evals)})
    assert calm["status"] == "ok" and calm["summary"]["diverged_step"] is None
    evals = iter([1.0, 2.0, 30.0])
    loose = training.fit(lambda a, b: 1.0, x, y, batch_size=50, budget=E.Budget(epochs=2), generator=g,
                         evaluate=lambda: {"loss": next(evals)}, divergence_factor=100.0)
    assert loose["status"] == "ok"


def test_non_finite_step_records_where_it_diverged():
    _, _, x, y, g = _setup()
    losses = iter([1.0, 1.0, float("nan")] + [0.0] * 100)
    out = training.fit(lambda a, b: next(losses), x, y, batch_size=10, budget=E.Budget(epochs=5), generator=g)
    assert out["status"] == "diverged" and out["summary"]["diverged_step"] == 3
    assert out["summary"]["diverged_epoch"] == 0.3


def test_chance_accuracy_is_collapsed_not_diverged():
    _, _, x, y, g = _setup()
    accs = iter([0.1, 0.6, 0.1])
    out = training.fit(lambda a, b: 1.0, x, y, batch_size=50, budget=E.Budget(epochs=2), generator=g,
                       evaluate=lambda: {"loss": 2.3, "accuracy": next(accs)}, chance=0.1)
    assert out["status"] == "collapsed" and out["summary"]["diverged_step"] is None
    accs = iter([0.1, 0.6, 0.7])
    ok = training.fit(lambda a, b: 1.0, x, y, batch_size=50, budget=E.Budget(epochs=2), generator=g,
                      evaluate=lambda: {"loss": 2.3, "accuracy": next(accs)}, chance=0.1)
    assert ok["status"] == "ok"
