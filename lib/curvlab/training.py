"""A plain mini-batch training loop shared by the notebooks.

The optimizer logic lives in ``step_fn(inputs, targets) -> loss`` (an SGD step, an SGN iteration,
an ISAAC step ...), so one loop serves every method and the comparisons are like for like:
same batches (a seeded permutation per epoch), same clock (training time only; evaluation is
paused out of the timer unless ``time_evaluation=True``, the SGN reference's convention), same
budget rule.

Divergence is checked at every evaluation: a loss that is non-finite, or above ``divergence_factor``
× the initial loss (default 10), marks the run ``status = "diverged"`` and records where
(``summary["diverged_step"]``, ``summary["diverged_epoch"]``). A non-finite mini-batch loss also
ends the run (nothing can follow it); a finite blow-up keeps training, so the curve shows what
happened. A classifier that ends at chance accuracy (``chance=`` given) is ``"collapsed"``, not
diverged. The time axis ``metrics["time"]`` is training seconds; evaluation seconds are reported
apart (``summary["eval_time_s"]``).
"""
from __future__ import annotations

import math
import numbers
import time
from typing import Callable

import torch

from .experiment import Budget

DIVERGENCE_FACTOR = 10.0


def check_batching(n: int, batch_size, drop_last: bool = False) -> int:
    """Steps per epoch for ``n`` examples in batches of ``batch_size``.

    Raises:
        ValueError: ``batch_size`` is not a positive int, the data is empty, or ``drop_last``
            leaves no full batch (each would loop forever or divide by zero).

    >>> check_batching(100, 30), check_batching(100, 30, drop_last=True)
    (4, 3)
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if n <= 0:
        raise ValueError("training data is empty (0 examples)")
    if drop_last and n < batch_size:
        raise ValueError(f"drop_last with {n} examples and batch_size {batch_size} leaves no full batch")
    return n // batch_size if drop_last else math.ceil(n / batch_size)


def is_diverged(loss: float, initial: float | None, factor: float | None = DIVERGENCE_FACTOR) -> bool:
    """Whether ``loss`` is non-finite or above ``factor`` × ``initial`` (``factor=None``: finite only).

    >>> is_diverged(float("nan"), 1.0), is_diverged(11.0, 1.0), is_diverged(9.0, 1.0)
    (True, True, False)
    """
    if not math.isfinite(loss):
        return True
    if factor is None or initial is None or not math.isfinite(initial):
        return False
    return loss > factor * abs(initial)


def batches(n: int, batch_size: int, generator: torch.Generator, shuffle: bool = True,
            drop_last: bool = False):
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
        drop_last: bool = False, divergence_factor: float | None = DIVERGENCE_FACTOR,
        chance: float | None = None) -> dict:
    """Train until the budget is spent; return ``{"metrics": ..., "status": ..., "summary": ...}``.

    Per epoch (and every ``eval_every_steps`` steps, if given) the metrics lists get one entry each:
    ``epoch``, ``step``, ``time`` (training seconds so far), ``train_loss`` (mean of the epoch's
    mini-batch losses; ``nan`` for a mid-epoch evaluation) and whatever ``evaluate()`` returns,
    prefixed ``test_``. ``log_every_steps`` adds per-step ``step_loss`` entries (``steps_*`` lists).

    At every evaluation the evaluated ``loss`` (else the epoch's mean training loss) is compared with
    the first one: non-finite or above ``divergence_factor`` × it marks the run diverged (the first
    such step and epoch go into the summary). With ``chance`` (e.g. 0.1 for ten classes), a run whose
    final ``test_accuracy`` is at most ``chance + 0.01`` is ``"collapsed"``.

    Raises:
        ValueError: ``batch_size`` ≤ 0, empty data, or ``drop_last`` with fewer examples than a batch.
    """
    n = len(x)
    steps_per_epoch = check_batching(n, batch_size, drop_last)
    metrics: dict[str, list] = {"epoch": [], "step": [], "time": [], "train_loss": []}
    step_log: dict[str, list] = {"step": [], "time": [], "loss": []}
    status, step, clock, epoch_losses = "ok", 0, 0.0, []
    watch = {"initial": None, "step": None, "epoch": None, "eval_s": 0.0}

    def mark(loss: float, epoch: float) -> None:
        if watch["initial"] is None and math.isfinite(loss):
            watch["initial"] = loss
        elif watch["step"] is None and is_diverged(loss, watch["initial"], divergence_factor):
            watch["step"], watch["epoch"] = step, epoch

    def record(epoch: float, train_loss: float):
        metrics["epoch"].append(epoch)
        metrics["step"].append(step)
        metrics["time"].append(clock)
        metrics["train_loss"].append(train_loss)
        if evaluate is not None:
            t0 = time.perf_counter()
            res = evaluate()
            for k, v in res.items():
                metrics.setdefault(f"test_{k}", []).append(v)
            spent = time.perf_counter() - t0
            watch["eval_s"] += spent
            if "loss" in res:
                mark(float(res["loss"]), epoch)
            return spent
        if step > 0 and not math.isnan(train_loss):       # no evaluation: watch the epoch's mean loss
            mark(train_loss, epoch)
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
                if watch["step"] is None:
                    watch["step"], watch["epoch"] = step, step / steps_per_epoch
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
    if watch["step"] is not None:
        status = "diverged"
    elif chance is not None and metrics.get("test_accuracy") \
            and metrics["test_accuracy"][-1] <= chance + 0.01:
        status = "collapsed"
    out = {"metrics": metrics, "status": status,
           "summary": {"steps": step, "epochs": step / steps_per_epoch, "train_time_s": clock,
                       "eval_time_s": watch["eval_s"], "time_axis": "training seconds"
                       + (" including evaluation" if time_evaluation else " (evaluation excluded)"),
                       "diverged_step": watch["step"], "diverged_epoch": watch["epoch"]}}
    if log_every_steps:
        out["metrics"].update({f"steps_{k}": v for k, v in step_log.items()})
    return out
