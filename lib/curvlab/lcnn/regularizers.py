"""The LCNN training objective: cross-entropy plus curvature-proxy and input-gradient penalties.

With L̄ the batch-mean loss over B samples and ℓ_i the loss of sample i,

    total = L̄ + λ_β Σ_i β_i + λ_γ Σ_j |log γ_j| + λ_g · mean_i ‖∇ₓℓ_i‖²
            + λ_c · mean_i ‖∇ₓℓ_i(x_i + h z_i) − ∇ₓℓ_i(x_i)‖².

- Curvature proxy (:func:`curvature_proxy`): Σβ over the centred-softplus activations (each β is its
  layer's curvature bound s″/s′ ≤ β) and Σ|log γ| over the Lipschitz batch norms (pulls each cap γ
  towards 1). Linear in β, as the reference's penalty: its gradient with respect to θ = log(β − 1e-3)
  is λ_β (β − 1e-3). A module registered at several positions counts once per position (the
  reference's per-call hooks count a VGG-11 shared β 8 times). A model without such layers gets 0
  (the reference crashes there).
- Gradient norm (:func:`gradient_norm_penalty`): double backprop of the input gradient, with a
  strength λ_g that does not depend on the batch size. The reference's term R = c · 1e5 ‖∇ₓL̄‖²_F / B
  equals λ_g · mean_i ‖∇ₓℓ_i‖² for λ_g = :func:`reference_strength` (c, B) = c · 1e5 / B²
  (6.1e-3 for c = 1e-3, B = 128).
- CURE-style curvature penalty (:func:`cure_penalty`, the reference's history): the change of the
  input gradient along the unit-ℓ2 sign direction z_i = sign(∇ₓℓ_i)/‖sign(∇ₓℓ_i)‖, a finite-difference
  Hessian-vector product; the reference's 1e3 ‖Δ∇ₓL̄‖²/B maps to λ_c = c · 1e3 / B²
  (:func:`cure_reference_strength`).

"Per-sample" gradients here are the rows of B ∇ₓL̄: exactly ∇ₓℓ_i(x_i) when samples do not interact
(eval mode), and the reference's quantity in training mode too (batch statistics couple the rows),
so the mapping to the reference's constants is exact in both modes.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..losses import check_loss, loss_function
from .models import beta_modules, lipschitz_bn_modules

__all__ = ["Objective", "beta_penalty", "cure_penalty", "cure_reference_strength", "curvature_proxy",
           "gamma_penalty", "gradient_norm_penalty", "reference_strength", "regularized_loss"]


def _check_strength(value, name: str) -> float:
    if not (isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
            and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _zero(model: nn.Module) -> Tensor:
    p = next(iter(model.parameters()), None)
    return torch.zeros((), dtype=p.dtype, device=p.device) if p is not None else torch.zeros(())


def beta_penalty(model: nn.Module) -> Tensor:
    """Σβ over the centred-softplus positions of ``model`` (0-dim, differentiable; 0 if there are none)."""
    betas = [m.beta for m in beta_modules(model)]
    return torch.stack(betas).sum() if betas else _zero(model)


def gamma_penalty(model: nn.Module) -> Tensor:
    """Σ|log γ| over the Lipschitz batch-norm positions of ``model`` (0 if there are none)."""
    logs = [m.log_gamma.abs() for m in lipschitz_bn_modules(model)]
    return torch.stack(logs).sum() if logs else _zero(model)


def curvature_proxy(model: nn.Module, reg_beta: float, reg_gamma: float) -> Tensor:
    """λ_β Σβ + λ_γ Σ|log γ|: the data-free curvature proxy (0 for a model without LCNN layers).

    Raises:
        ValueError: if ``reg_beta`` or ``reg_gamma`` is negative or not finite.
    """
    reg_beta, reg_gamma = _check_strength(reg_beta, "reg_beta"), _check_strength(reg_gamma, "reg_gamma")
    total = _zero(model)
    if reg_beta:
        total = total + reg_beta * beta_penalty(model)
    if reg_gamma:
        total = total + reg_gamma * gamma_penalty(model)
    return total


def reference_strength(reg_constant: float, batch_size: int) -> float:
    """λ_g = c · 1e5 / B²: the reference's gradient-norm constant c at batch size B as a strength here.

    Example:
        >>> round(reference_strength(1e-3, 128), 7)
        0.0061035
    """
    reg_constant = _check_strength(reg_constant, "reg_constant")
    return reg_constant * 1e5 / _check_batch_size(batch_size) ** 2


def cure_reference_strength(reg_constant: float, batch_size: int) -> float:
    """λ_c = c · 1e3 / B²: the reference's CURE constant c at batch size B as a strength here."""
    reg_constant = _check_strength(reg_constant, "reg_constant")
    return reg_constant * 1e3 / _check_batch_size(batch_size) ** 2


def _check_batch_size(value) -> int:
    if not (isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1):
        raise ValueError(f"batch_size must be an int >= 1, got {value!r}")
    return int(value)


def _loss_and_rows(model: nn.Module, inputs: Tensor, targets: Tensor, loss: str) -> tuple[Tensor, Tensor]:
    """(L̄(x), B ∇ₓL̄(x)) with the gradient kept in the graph (create_graph) for double backprop."""
    with torch.enable_grad():
        x = inputs.detach().requires_grad_(True)
        value = loss_function(loss)(model(x), targets)
        (grad,) = torch.autograd.grad(value, x, create_graph=True, allow_unused=True, materialize_grads=True)
    return value, grad * x.shape[0]


def _mean_square(rows: Tensor) -> Tensor:
    return rows.reshape(rows.shape[0], -1).square().sum(1).mean()


def gradient_norm_penalty(model: nn.Module, inputs: Tensor, targets: Tensor, strength: float,
                          loss: str = "cross_entropy") -> tuple[Tensor, Tensor]:
    """``(λ_g · mean_i ‖∇ₓℓ_i‖², L̄)`` from one forward pass, both differentiable in the parameters.

    The model runs in its current mode (training mode during training, as the reference). The
    penalty's gradient with respect to the parameters goes through the input gradient (double
    backprop), about two to three times the cost of a plain step. ``strength = 0`` skips the double
    backprop and returns a zero penalty.

    Raises:
        ValueError: if ``strength`` is negative or not finite, or for an unknown loss.
    """
    strength = _check_strength(strength, "strength")
    check_loss(loss)
    if strength == 0:
        with torch.enable_grad():
            value = loss_function(loss)(model(inputs), targets)
        return torch.zeros_like(value), value
    value, rows = _loss_and_rows(model, inputs, targets, loss)
    return strength * _mean_square(rows), value


def _cure_term(model: nn.Module, inputs: Tensor, targets: Tensor, rows: Tensor, loss: str,
               step: float) -> Tensor:
    """mean_i ‖∇ₓℓ_i(x_i + h z_i) − ∇ₓℓ_i(x_i)‖² with z_i = sign(g_i)/‖sign(g_i)‖ held constant."""
    sign = rows.detach().sign()
    norms = torch.linalg.vector_norm(sign.reshape(sign.shape[0], -1), dim=1)
    z = sign / norms.clamp_min(1.0).reshape(-1, *([1] * (sign.dim() - 1)))
    _, moved = _loss_and_rows(model, inputs.detach() + step * z, targets, loss)
    return _mean_square(moved - rows)


def cure_penalty(model: nn.Module, inputs: Tensor, targets: Tensor, strength: float, step: float = 1.0,
                 loss: str = "cross_entropy") -> tuple[Tensor, Tensor]:
    """``(λ_c · mean_i ‖∇ₓℓ_i(x_i + h z_i) − ∇ₓℓ_i(x_i)‖², L̄)``, CURE-style (module docstring).

    z_i = sign(∇ₓℓ_i)/‖sign(∇ₓℓ_i)‖ is a unit-ℓ2 direction (0 where the gradient vanishes) treated
    as a constant; h = ``step`` (1, the reference's unit step). Both gradients stay in the graph. Two
    forward passes (the second, at the shifted inputs, also updates batch-norm running statistics in
    training mode).

    Raises:
        ValueError: if ``strength`` or ``step`` is negative or not finite, or for an unknown loss.
    """
    strength, step = _check_strength(strength, "strength"), _check_strength(step, "step")
    check_loss(loss)
    value, rows = _loss_and_rows(model, inputs, targets, loss)
    if strength == 0:
        return torch.zeros_like(value), value
    return strength * _cure_term(model, inputs, targets, rows, loss, step), value


@dataclass(frozen=True)
class Objective:
    """The regularised loss of the module docstring as a callable ``(model, x, y) -> (total, parts)``.

    Attributes:
        reg_beta: λ_β on Σβ (1e-2 in the reference's current defaults, 1e-3 before 2023).
        reg_gamma: λ_γ on Σ|log γ|.
        reg_gnorm: λ_g on mean_i ‖∇ₓℓ_i‖² (batch-size free; see :func:`reference_strength`).
        reg_cure: λ_c of the CURE-style term.
        cure_step: h of the CURE-style term.
        loss: a name from :data:`curvlab.losses.LOSSES`.

    ``parts`` holds detached 0-dim tensors: ``loss`` (L̄) and the weighted terms ``beta``, ``gamma``,
    ``gnorm``, ``cure`` whose sum with ``loss`` is ``total``. One forward pass at x serves every term
    (a second one at x + h z for CURE).

    Raises:
        ValueError: for a negative or non-finite coefficient or step, or an unknown loss.
    """

    reg_beta: float = 0.0
    reg_gamma: float = 0.0
    reg_gnorm: float = 0.0
    reg_cure: float = 0.0
    cure_step: float = 1.0
    loss: str = "cross_entropy"

    def __post_init__(self):
        for name in ("reg_beta", "reg_gamma", "reg_gnorm", "reg_cure", "cure_step"):
            object.__setattr__(self, name, _check_strength(getattr(self, name), name))
        check_loss(self.loss)

    def __call__(self, model: nn.Module, inputs: Tensor, targets: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """``(total, parts)`` for one batch; ``total`` is differentiable in the parameters."""
        if self.reg_gnorm or self.reg_cure:
            value, rows = _loss_and_rows(model, inputs, targets, self.loss)
        else:
            with torch.enable_grad():
                value, rows = loss_function(self.loss)(model(inputs), targets), None
        zero = torch.zeros_like(value)
        terms = {
            "beta": self.reg_beta * beta_penalty(model) if self.reg_beta else zero,
            "gamma": self.reg_gamma * gamma_penalty(model) if self.reg_gamma else zero,
            "gnorm": self.reg_gnorm * _mean_square(rows) if self.reg_gnorm else zero,
            "cure": (self.reg_cure * _cure_term(model, inputs, targets, rows, self.loss, self.cure_step)
                     if self.reg_cure else zero),
        }
        total = value + sum(terms.values())
        return total, {"loss": value.detach(), **{k: t.detach() for k, t in terms.items()}}


def regularized_loss(model: nn.Module, inputs: Tensor, targets: Tensor, reg_beta: float = 0.0,
                     reg_gamma: float = 0.0, reg_gnorm: float = 0.0, reg_cure: float = 0.0,
                     loss: str = "cross_entropy") -> tuple[Tensor, dict[str, Tensor]]:
    """``Objective(reg_beta, reg_gamma, reg_gnorm, reg_cure, loss=loss)(model, inputs, targets)``."""
    return Objective(reg_beta=reg_beta, reg_gamma=reg_gamma, reg_gnorm=reg_gnorm, reg_cure=reg_cure,
                     loss=loss)(model, inputs, targets)
