"""What SGN refuses, as pure checks: empty batches, models that are not deterministic, bad checkpoints.

Each raises ``ValueError`` with a message that names the offending input, module or entry.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Mapping, Optional, Sequence

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _NormBase
from torch.nn.modules.dropout import _DropoutNd

__all__ = ["check_batch", "nondeterministic_modules", "check_deterministic", "check_state"]


def check_batch(inputs: Sequence[Tensor], targets: Tensor) -> None:
    """Refuse an empty batch: its mean loss is 0/0, and a step on it would silently do nothing.

    Raises:
        ValueError: an input or the targets with 0 rows.
    """
    sizes = [x.shape[0] for x in (*inputs, targets) if isinstance(x, Tensor) and x.dim() > 0]
    if 0 in sizes:
        shapes = [tuple(x.shape) for x in inputs if isinstance(x, Tensor)]
        target_shape = tuple(targets.shape) if isinstance(targets, Tensor) else targets
        raise ValueError(f"SGN.step needs a non-empty batch, got inputs of shape {shapes} and targets "
                         f"of shape {target_shape!r}")


def nondeterministic_modules(model: nn.Module) -> list[str]:
    """Modules that make the network's function random or stateful in their current mode.

    BatchNorm-like layers in training mode that track running statistics (every evaluation would
    update them), and dropout, ``RReLU`` and attention dropout in training mode (with p > 0).
    Randomness inside a custom ``forward`` cannot be seen.

    Returns:
        Descriptions ``"qualified.name (Type)"``, empty when the model is deterministic.
    """
    found = []
    for name, m in model.named_modules():
        if not m.training:
            continue
        if ((isinstance(m, _NormBase) and m.track_running_stats) or (isinstance(m, _DropoutNd) and m.p > 0)
                or isinstance(m, nn.RReLU) or (isinstance(m, nn.MultiheadAttention) and m.dropout > 0)):
            found.append(f"{name or '<model>'} ({type(m).__name__})")
    return found


def check_deterministic(model: nn.Module) -> None:
    """Refuse the modules listed by ``nondeterministic_modules``.

    Raises:
        ValueError: naming each such module.
    """
    found = nondeterministic_modules(model)
    if found:
        raise ValueError("SGN needs a deterministic model during a step, but these modules are in "
                         f"training mode: {', '.join(found)}; call .eval() on them (or build BatchNorm "
                         "with track_running_stats=False)")


def _is_count(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 0


def check_state(state: Mapping[str, Any], n_params: int) -> tuple[int, float, Optional[Tensor], int]:
    """Validate an SGN checkpoint; returns ``(step, rho, momentum, momentum_steps)``.

    Args:
        state: ``SGN.state_dict()`` output.
        n_params: number of trainable parameter entries P (the momentum's length).

    Raises:
        ValueError: missing entries; ``step`` or ``momentum_steps`` not an int >= 0, or
            ``momentum_steps > step``; ``rho`` not a finite number > 0 (NaN, 0 or a negative damping
            would make every later step a no-op); ``momentum`` neither None nor a finite floating flat
            tensor of ``n_params`` entries.
    """
    if not isinstance(state, Mapping):
        raise ValueError(f"state must be a dict, got {type(state).__name__}")
    missing = {"step", "rho", "momentum", "momentum_steps"} - set(state)
    if missing:
        raise ValueError(f"state dict lacks {sorted(missing)}")
    step, rho, momentum, momentum_steps = (state[k] for k in ("step", "rho", "momentum", "momentum_steps"))
    for name, value in (("step", step), ("momentum_steps", momentum_steps)):
        if not _is_count(value):
            raise ValueError(f"{name} in the state dict must be an int >= 0, got {value!r}")
    if momentum_steps > step:
        raise ValueError(f"momentum_steps ({momentum_steps}) in the state dict exceeds step ({step})")
    if not (isinstance(rho, numbers.Real) and not isinstance(rho, bool) and math.isfinite(rho) and rho > 0):
        raise ValueError(f"rho in the state dict must be a finite number > 0, got {rho!r}")
    if momentum is not None:
        if not (isinstance(momentum, Tensor) and momentum.is_floating_point()
                and momentum.shape == (n_params,)):
            raise ValueError(f"momentum in the state dict must be a flat tensor of {n_params} entries")
        if not bool(torch.isfinite(momentum).all()):
            raise ValueError("momentum in the state dict has non-finite entries")
    return int(step), float(rho), momentum, int(momentum_steps)
