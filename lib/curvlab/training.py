"""A plain mini-batch training loop shared by the notebooks.

The optimizer logic lives in ``step_fn(inputs, targets) -> loss`` (an SGD step, an SGN iteration,
an ISAAC step ...), so one loop serves every method and the comparisons are like for like:
same batches (a seeded permutation per epoch), same clock (training time only; evaluation is
paused out of the timer unless ``time_evaluation=True``, the SGN reference's convention), same
budget rule.

A non-finite training loss ends the run with ``status = "diverged"``: the history up to that point
is kept and the caller records it as a result.
"""
from __future__ import annotations

import math
import time
from typing import Callable

import torch

from .experiment import Budget


def batches(n: int, batch_size: int, generator: torch.Generator, shuffle: bool = True, drop_last: bool = False):
    """Index tensors for one epoch; a seeded permutation when ``shuffle``."""
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    stop = n - n % batch_size if drop_last else n
    for i in range(0, stop, batch_size):
        yield order[i:i + batch_size]


@torch.no_grad()
def evaluate_classifier(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2000
                        ) -> dict:
    """Mean cross-entropy and accuracy of ``model`` on ``(x, y)`` (in eval mode, then restored)."""
    was_training = model.training
    model.eval()
    loss, correct = 0.0, 0
    for i in range(0, len(x), batch_size):
        out = model(x[i:i + batch_size])
        loss += torch.nn.functional.cross_entropy(out, y[i:i + batch_size], reduction="sum").item()
        correct += (out.argmax(1) == y[i:i + batch_size]).sum().item()
    model.train(was_training)
    return {"loss": loss / len(x), "accuracy": correct / len(x)}


@torch.no_grad()
def evaluate_regression(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 5000,
                        half: bool = False) -> dict:
    """Mean over samples of the summed squared error (times 1/2 if ``half``)."""
    was_training = model.training
    model.eval()
    total = 0.0
    for i in range(0, len(x), batch_size):
        total += ((model(x[i:i + batch_size]) - y[i:i + batch_size]) ** 2).sum().item()
    model.train(was_training)
    return {"loss": (0.5 if half else 1.0) * total / len(x)}


def fit(step_fn: Callable[[torch.Tensor, torch.Tensor], float], x: torch.Tensor, y: torch.Tensor, *,
        batch_size: int, budget: Budget, generator: torch.Generator,
        evaluate: Callable[[], dict] | None = None, eval_every_steps: int | None = None,
        log_every_steps: int | None = None, time_evaluation: bool = False, progress=None,
        drop_last: bool = False) -> dict:
    """Train until the budget is spent; return ``{"metrics": ..., "status": ..., "summary": ...}``.

    Per epoch (and every ``eval_every_steps`` steps, if given) the metrics lists get one entry each:
    ``epoch``, ``step``, ``time`` (training seconds so far), ``train_loss`` (mean of the epoch's
    mini-batch losses; ``nan`` for a mid-epoch evaluation) and whatever ``evaluate()`` returns,
    prefixed ``test_``. ``log_every_steps`` adds per-step ``step_loss`` entries (``steps_*`` lists).
    """
    n = len(x)
    steps_per_epoch = math.ceil(n / batch_size) if not drop_last else n // batch_size
    metrics: dict[str, list] = {"epoch": [], "step": [], "time": [], "train_loss": []}
    step_log: dict[str, list] = {"step": [], "time": [], "loss": []}
    status, step, clock, epoch_losses = "ok", 0, 0.0, []

    def record(epoch: float, train_loss: float):
        metrics["epoch"].append(epoch)
        metrics["step"].append(step)
        metrics["time"].append(clock)
        metrics["train_loss"].append(train_loss)
        if evaluate is not None:
            t0 = time.perf_counter()
            for k, v in evaluate().items():
                metrics.setdefault(f"test_{k}", []).append(v)
            return time.perf_counter() - t0
        return 0.0

    spent = record(0.0, float("nan"))                  # the untrained model, at time 0
    clock += spent if time_evaluation else 0.0
    epoch = 0
    while not budget.exhausted(step, step / steps_per_epoch, clock) and status == "ok":
        epoch_losses = []
        for idx in batches(n, batch_size, generator, drop_last=drop_last):
            t0 = time.perf_counter()
            loss = float(step_fn(x[idx], y[idx]))
            clock += time.perf_counter() - t0
            step += 1
            if progress is not None:
                progress.update(1)
            epoch_losses.append(loss)
            if log_every_steps and step % log_every_steps == 0:
                step_log["step"].append(step)
                step_log["time"].append(clock)
                step_log["loss"].append(loss)
            if not math.isfinite(loss):
                status = "diverged"
                break
            if eval_every_steps and step % eval_every_steps == 0 and step % steps_per_epoch:
                spent = record(step / steps_per_epoch, float("nan"))
                clock += spent if time_evaluation else 0.0
            if budget.exhausted(step, step / steps_per_epoch, clock):
                break
        epoch += 1
        mean_loss = sum(epoch_losses) / max(len(epoch_losses), 1)
        spent = record(step / steps_per_epoch, mean_loss)
        clock += spent if time_evaluation else 0.0
    out = {"metrics": metrics, "status": status,
           "summary": {"steps": step, "epochs": step / steps_per_epoch, "train_time_s": clock}}
    if log_every_steps:
        out["metrics"].update({f"steps_{k}": v for k, v in step_log.items()})
    return out
