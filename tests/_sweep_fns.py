"""Run functions for the sweep tests: module-level, so Dask workers can import them by name."""
import os

import torch


def toy_run(config, ctx):
    """A seeded least-squares fit by gradient descent: deterministic, a fraction of a second."""
    g = torch.Generator().manual_seed(config["seed"])
    x = torch.randn(64, 5, generator=g, dtype=torch.float64)
    noise = torch.randn(64, generator=g, dtype=torch.float64)
    y = x @ torch.arange(1.0, 6.0, dtype=torch.float64) + 0.1 * noise
    w = torch.zeros(5, dtype=torch.float64)
    losses = []
    for _ in range(config["steps"]):
        r = x @ w - y
        losses.append(float((r * r).mean()))
        w = w - config["lr"] * 2 * x.T @ r / len(y)
    blown = not torch.isfinite(torch.tensor(losses[-1])) or losses[-1] > 10 * losses[0]
    status = "diverged" if blown else "ok"
    return {"metrics": {"loss": losses}, "summary": {"final_loss": losses[-1]}, "status": status}


def failing_run(config, ctx):
    """Fails for one learning rate; the sweep must finish the others and report this one."""
    if config["lr"] == 0.5:
        raise RuntimeError("boom")
    return toy_run(config, ctx)


def dying_run(config, ctx):
    """Kills its process at the run named by $SWEEP_DIE_AT (a killed sweep, for the resume test)."""
    if config["lr"] == float(os.environ.get("SWEEP_DIE_AT", "-1")):
        os._exit(3)
    return toy_run(config, ctx)
