"""curvlab.training.fit: budgets, evaluation clock, divergence, determinism."""
import math

import torch

from curvlab import experiment as E, training


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
        runs.append(training.fit(step, x, y, batch_size=16, budget=E.Budget(epochs=2), generator=g,
                                 evaluate=lambda: training.evaluate_regression(model, x, y))["metrics"]["test_loss"])
    assert runs[0] == runs[1]


def test_evaluate_classifier():
    model = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2) * 100)
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    res = training.evaluate_classifier(model, x, torch.tensor([0, 1, 1]))
    assert abs(res["accuracy"] - 2 / 3) < 1e-12 and res["loss"] > 30
