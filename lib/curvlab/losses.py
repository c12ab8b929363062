"""The one loss registry: batch losses on network outputs, with closed-form derivatives.

Every curvature product, every optimizer and every preconditioner in curvlab names its loss here, so
a loss value, its gradient, its GGN and its sampled (Fisher / Monte-Carlo) targets always follow the
same convention. ``N`` is the batch size, ``C`` the number of output entries per sample, ``f_i`` the
outputs of sample ``i``, ``s_i = softmax(f_i)``; ``H_L`` is the Hessian of the *batch* loss with
respect to the outputs (the 1/N of a mean sits inside ``H_L``):

==================== ============================================ ==========================
name                 L                                            H_L
==================== ============================================ ==========================
``cross_entropy``    (1/N) sum_i CE(softmax(f_i), y_i)            (diag(s_i) - s_i s_i^T)/N
``mse``              (1/(N C)) sum_{i,k} (f_ik - y_ik)^2          2 I / (N C)
``half_mse``         (1/(2 N C)) sum_{i,k} (f_ik - y_ik)^2        I / (N C)
``sum_squared``      (1/N) sum_i ||f_i - y_i||^2                  2 I / N
``half_sum_squared`` (1/(2 N)) sum_i ||f_i - y_i||^2              I / N
==================== ============================================ ==========================

``mse`` is ``torch.nn.functional.mse_loss`` (mean over all N C entries, no 1/2). It is the SGN
reference code's loss (Theano ``T.mean`` of the squared error) and so the one the SGN paper's loss
values use; for scalar regression (C = 1: Boston, sine) it equals ``sum_squared``.
``half_sum_squared`` is the textbook Gauss-Newton convention (H_L = I/N). Cross-entropy targets are
class indices (N,) or class probabilities (N, C); logits must be (N, C).

Every convention is a mean over samples, ``L = (1/N) sum_i l_i``, which is what makes the per-sample
losses ``l_i`` (input-space curvature) and the per-sample sampled gradients (Fisher factors)
well defined.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["LOSSES", "LossDerivatives", "check_loss", "loss_function", "loss_derivatives",
           "log_softmax_classes", "sample_targets"]

LOSSES = ("cross_entropy", "mse", "half_mse", "sum_squared", "half_sum_squared")


class LossDerivatives(NamedTuple):
    """The batch loss at the outputs and its first two derivatives with respect to them."""

    value: Tensor                                  # () the batch loss
    gradient: Tensor                               # like outputs: dL/df
    hessian_product: Callable[[Tensor], Tensor]    # v (like outputs) -> H_L v


def check_loss(name: str) -> str:
    """Return ``name`` if it is in :data:`LOSSES`, else raise ``ValueError`` naming ``loss``."""
    if name not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {name!r}")
    return name


_check_loss = check_loss                           # the name older modules import


def _squared_scale(name: str, outputs: Tensor) -> float:
    """The c such that the squared-error batch loss is ``c * sum (f - y)^2``."""
    n, numel = outputs.shape[0], outputs.numel()
    return {"mse": 1.0 / numel, "half_mse": 0.5 / numel,
            "sum_squared": 1.0 / n, "half_sum_squared": 0.5 / n}[name]


def _regression_targets(outputs: Tensor, targets: Tensor) -> Tensor:
    if targets.shape != outputs.shape:
        if targets.numel() != outputs.numel():
            raise ValueError(f"targets {tuple(targets.shape)} do not match outputs {tuple(outputs.shape)}")
        targets = targets.reshape(outputs.shape)        # e.g. (N,) targets for (N, 1) outputs
    return targets


def _check_logits(outputs: Tensor) -> None:
    if outputs.dim() != 2:
        raise ValueError(f"cross_entropy expects logits of shape (N, C), got {tuple(outputs.shape)}")


def log_softmax_classes(logits: Tensor) -> Tensor:
    """``log softmax`` over the classes (last dim) of (N, C) logits: ``torch.log_softmax(logits, -1)``.

    Same values up to rounding, computed along dim 0 of the transposed logits when C < 16 on the CPU:
    there torch's kernel along a short last dim takes a slow path whose cost grows with C (torch 2.13,
    float32, 1000 × 10 logits: about 115 µs, against 15 µs along dim 0 of a contiguous transpose;
    from C = 16 on the usual path is the faster one). Ten classes is the common case here, and SGN
    evaluates the loss twice per iteration.

    Example:
        >>> logits = torch.tensor([[0.0, 1.0], [2.0, 2.0]])
        >>> torch.allclose(log_softmax_classes(logits), torch.log_softmax(logits, -1))
        True
    """
    if logits.dim() == 2 and logits.shape[-1] < 16 and logits.device.type == "cpu":
        return torch.log_softmax(logits.mT.contiguous(), dim=0).mT
    return torch.log_softmax(logits, dim=-1)


def _cross_entropy(outputs: Tensor, targets: Tensor) -> Tensor:
    """``F.cross_entropy`` (mean over the batch) through :func:`log_softmax_classes`."""
    log_s = log_softmax_classes(outputs)
    if targets.dim() == 1:                                                   # class indices
        return F.nll_loss(log_s, targets)
    return -(targets * log_s).sum(-1).mean()                                 # class probabilities


def loss_function(name: str) -> Callable[[Tensor, Tensor], Tensor]:
    """The scalar batch loss ``(outputs, targets) -> L`` under the convention ``name`` (module doc).

    The same convention is used by every curvature product, so a loss and its GGN always agree.

    Raises:
        ValueError: if ``name`` is not in :data:`LOSSES`.

    Example:
        >>> loss_function("mse")(torch.tensor([[1.0, 3.0]]), torch.tensor([[0.0, 0.0]]))
        tensor(5.)
    """
    check_loss(name)
    if name == "cross_entropy":
        def cross_entropy(outputs: Tensor, targets: Tensor) -> Tensor:
            _check_logits(outputs)
            return _cross_entropy(outputs, targets)
        return cross_entropy

    def squared_error(outputs: Tensor, targets: Tensor) -> Tensor:
        diff = outputs - _regression_targets(outputs, targets)
        if name == "mse":                              # exactly torch's mse_loss(reduction="mean")
            return diff.square().mean()
        return diff.square().sum() * _squared_scale(name, outputs)
    squared_error.__name__ = name
    return squared_error


def loss_derivatives(name: str, outputs: Tensor, targets: Tensor) -> LossDerivatives:
    """Loss value, ``dL/df`` and the product with ``d²L/df²``, in closed form, at detached ``outputs``.

    Cross-entropy, per sample: ``dL/df_i = (s_i m_i - y_i)/N`` with ``m_i = sum_k y_ik`` (1 for a
    distribution or a class index) and ``H_L v_i = m_i (s_i * v_i - s_i (s_i . v_i))/N``. Squared
    errors with ``L = c sum (f - y)^2``: ``dL/df = 2c (f - y)`` and ``H_L v = 2c v``.
    """
    check_loss(name)
    outputs = outputs.detach()
    if name == "cross_entropy":
        _check_logits(outputs)
        n = outputs.shape[0]
        log_s = log_softmax_classes(outputs)                                 # (N, C)
        s = log_s.exp()
        if targets.dim() == 1:                                               # class indices
            value = F.nll_loss(log_s, targets)                               # = loss_function's value
            gradient = s.clone()                                             # (s - onehot(y)) / N
            gradient.scatter_add_(1, targets[:, None], gradient.new_full((n, 1), -1.0)).div_(n)
            weight = None
        else:                                                                # class probabilities
            value = -(targets * log_s).sum(-1).mean()                        # = loss_function's value
            mass = targets.sum(-1, keepdim=True)                             # (N, 1), 1 for a distribution
            gradient = (s * mass - targets) / n
            weight = mass / n

        def hessian_product(v: Tensor) -> Tensor:
            # per sample (diag(s) - s s^T) v = s * v - s (s . v), times 1/N (times the target mass)
            sv = s * v
            hv = sv - s * sv.sum(-1, keepdim=True)
            return hv / n if weight is None else hv * weight
        return LossDerivatives(value, gradient, hessian_product)

    value = loss_function(name)(outputs, targets)
    targets = _regression_targets(outputs, targets)
    two_c = 2.0 * _squared_scale(name, outputs)
    gradient = (outputs - targets) * two_c
    return LossDerivatives(value, gradient, lambda v: v * two_c)


def sample_targets(name: str, outputs: Tensor, samples: int = 1,
                   generator: torch.Generator | None = None) -> list[Tensor]:
    """``samples`` target sets drawn from the model's own predictive distribution at ``outputs``.

    With ŷ drawn so, the per-sample gradient ``g_i = d l_i(f_i, ŷ_i)/d f_i`` has ``E[g_i g_iᵀ] =
    d² l_i / d f_i²``: the outer products of sampled gradients estimate the loss Hessian, hence the
    GGN (the Fisher, for these losses). Cross-entropy: ŷ_i ~ Categorical(softmax(f_i)), class
    indices (N,). Squared errors with per-sample loss ``l_i = c_s ||f_i - y_i||²`` (c_s = 1/C for
    ``mse``, 1/(2C) ``half_mse``, 1 ``sum_squared``, 1/2 ``half_sum_squared``): ŷ = f + σ ε,
    ε ~ N(0, I), σ² = 1/(2 c_s), since then Cov(2 c_s (f - ŷ)) = 4 c_s² σ² I = 2 c_s I.

    Args:
        name: a loss from :data:`LOSSES`.
        outputs: the network outputs (N, C) (detached here).
        samples: number of independent target sets (a positive integer).
        generator: random generator for reproducible draws.

    Returns:
        A list of ``samples`` target tensors, each as :func:`loss_function` ``(name)`` expects them.

    Raises:
        ValueError: for an unknown loss, ``samples`` < 1 or non-integer, or CE outputs not (N, C).
    """
    check_loss(name)
    if isinstance(samples, bool) or int(samples) != samples or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    target = outputs.detach()
    if name == "cross_entropy":
        if target.dim() != 2:
            raise ValueError(f"cross_entropy sampling needs outputs (N, classes), got {tuple(target.shape)}")
        labels = torch.multinomial(torch.softmax(target, dim=1), int(samples), replacement=True,
                                   generator=generator)                     # (N, samples)
        return [labels[:, k] for k in range(int(samples))]
    n = max(target.shape[0], 1)
    per_sample_scale = _squared_scale(name, target) * n if target.numel() else 1.0
    sigma = math.sqrt(1.0 / (2.0 * per_sample_scale))
    # one draw per call, in order: the same stream as drawing the sets one at a time
    return [target + sigma * torch.randn(target.shape, generator=generator, dtype=target.dtype,
                                         device=target.device) for _ in range(int(samples))]
