"""Centred softplus: a smooth ReLU whose curvature is one scalar β, fixed at the origin.

With β > 0 the centred softplus is

    s_β(x) = (softplus(βx) − log 2) / β = (log(1 + e^{βx}) − log 2) / β.

Its derivatives are those of the logistic function σ:

    s′(x) = σ(βx) ∈ (0, 1)                 (so s is 1-Lipschitz),
    s″(x) = β σ(βx) (1 − σ(βx)) ≤ β/4      (the maximum sits at x = 0),
    s″(x) / s′(x) = β (1 − σ(βx)) ≤ β      (β is the layer's normalised curvature).

Subtracting log 2 pins s(0) = 0 for every β. As β → ∞, s → ReLU (the gap is at most log 2 / β,
reached at x = 0); as β → 0, s → x/2, a linear map. Plain softplus log(1 + e^{βx}) / β instead
drifts away as β → 0, by log 2 / β at the origin.

Numerics. For |βx| ≥ 1 the value is computed as (softplus(βx) − log 2) / β: no exponential of a
large number is ever formed, so large βx gives the linear branch x − log 2 / β (exactly, in floating
point, once e^{−βx} is below the rounding unit — for βx > 20 the difference is below e^{−20} / β, the
point where torch's ``softplus`` switches to its linear branch), and the gradient σ(βx) stays finite.
For |βx| < 1 the difference log(1 + e^{βx}) − log 2 would cancel, so the identity
log(1 + e^{z}) − log 2 = z/2 + log cosh(z/2) = z/2 + log1p(2 sinh²(z/4)) is used instead; it keeps
full relative accuracy as β → 0, where s(x) = x/2 + βx²/8 + O(β³x⁴). Both branches are
differentiable to any order (autograd's double backward gives s″ exactly), and each branch only
ever sees inputs in its own range, so the unused one contributes no inf or nan to the gradient.

:class:`CenteredSoftplus` runs the fused form :func:`centered_softplus_fast` by default (three
kernels, exact derivatives, value error ≈ rounding/β near the origin) because the two-branch form
costs a training step several times the activation's time; ``precise=True`` selects the above.
"""
from __future__ import annotations

import math
from typing import Union

import torch
from torch import Tensor, nn

__all__ = ["BETA_FLOOR", "centered_softplus", "centered_softplus_fast", "CenteredSoftplus"]

BETA_FLOOR = 1e-3
"""β = exp(θ) + BETA_FLOOR: the floor keeps β positive however far θ is pushed down."""

_LOG2 = math.log(2.0)


def centered_softplus_fast(x: Tensor, beta: Union[float, Tensor]) -> Tensor:
    """s_β(x) as (softplus(βx) − log 2)/β with torch's fused softplus: what a training step runs.

    Three elementwise kernels instead of the two-branch :func:`centered_softplus`'s dozen. The
    derivatives are exact (autograd differentiates softplus into σ(βx) and β σ(1 − σ) to any
    order); only the value near the origin loses the relative accuracy of the precise form: its
    absolute error is about the rounding unit of log 2 divided by β (float32: ≈ 6e-8/β, at most
    6e-5 at the floor β = 1e-3), and beyond βx > 20 softplus is linear (error below e^{−20}/β).
    """
    z = beta * x
    return (torch.nn.functional.softplus(z) - _LOG2) / beta


def centered_softplus(x: Tensor, beta: Union[float, Tensor]) -> Tensor:
    """Centred softplus s_β(x) = (log(1 + e^{βx}) − log 2) / β, elementwise.

    Args:
        x: input of any shape.
        beta: β > 0, a number or a tensor broadcastable against ``x`` (a 0-dim tensor for one β per
            layer). Gradients flow to ``beta`` when it is a tensor that requires them.

    Returns:
        s_β(x), the shape of ``x`` broadcast with ``beta``. s(0) = 0, s′ = σ(βx), s″ ≤ β/4.

    Raises:
        ValueError: if ``beta`` is a number that is not finite and positive.
    """
    if not isinstance(beta, Tensor):
        beta = float(beta)
        if not (math.isfinite(beta) and beta > 0.0):
            raise ValueError(f"beta must be finite and > 0, got {beta}")
    z = beta * x
    small = z.abs() < 1.0
    # |z| >= 1: softplus never overflows (linear beyond z > 50, where e^{-z} is below float64's
    # rounding), and its derivatives σ(z), σ(1 − σ) stay finite to any order (logaddexp's second
    # derivative is NaN once e^z underflows).
    z_large = torch.where(small, torch.ones_like(z), z)
    large = torch.nn.functional.softplus(z_large, threshold=50.0) - _LOG2
    # |z| < 1: log(1 + e^z) - log 2 = z/2 + log1p(2 sinh²(z/4)), without cancellation.
    z_small = torch.where(small, z, torch.zeros_like(z))
    near = 0.5 * z_small + torch.log1p(2.0 * torch.sinh(0.25 * z_small) ** 2)
    return torch.where(small, near, large) / beta


class CenteredSoftplus(nn.Module):
    """Centred softplus with one learnable β per module: s_β(x) = (softplus(βx) − log 2) / β.

    β is parametrised as β = exp(θ) + 1e-3 with θ = ``log_beta`` (0-dim), initialised to
    θ₀ = log(beta_init − 1e-3) so that β starts at exactly ``beta_init``. The floor keeps β > 0; the
    exponential makes multiplicative changes of β the natural step. β is the layer's curvature bound
    (s″/s′ ≤ β), which is what a penalty λ Σβ pulls down. One β is shared by all channels; create one
    module per use to give every layer its own β.

    Args:
        beta_init: initial β, finite and > 1e-3 (the floor). 5.0 as in the reference.
        learnable: if True θ is an ``nn.Parameter``; otherwise a buffer (saved in the state dict,
            never trained).
        precise: evaluate with the two-branch :func:`centered_softplus` (full relative accuracy
            near the origin and as β → 0) instead of the fused :func:`centered_softplus_fast`
            (same derivatives, absolute error ≈ rounding/β in the value, several times faster).

    Raises:
        ValueError: if ``beta_init`` is not finite or not above the floor.
    """

    def __init__(self, beta_init: float = 5.0, learnable: bool = True, precise: bool = False):
        super().__init__()
        self.precise = bool(precise)
        beta_init = float(beta_init)
        if not (math.isfinite(beta_init) and beta_init > BETA_FLOOR):
            raise ValueError(f"beta_init must be finite and > {BETA_FLOOR}, got {beta_init}")
        theta = torch.tensor(math.log(beta_init - BETA_FLOOR), dtype=torch.get_default_dtype())
        if learnable:
            self.log_beta = nn.Parameter(theta)
        else:
            self.register_buffer("log_beta", theta)
        self.learnable = bool(learnable)

    @property
    def beta(self) -> Tensor:
        """β = exp(θ) + 1e-3 as a 0-dim tensor, differentiable with respect to θ."""
        return torch.exp(self.log_beta) + BETA_FLOOR

    def forward(self, x: Tensor) -> Tensor:
        """s_β(x), elementwise."""
        return (centered_softplus if self.precise else centered_softplus_fast)(x, self.beta)

    def extra_repr(self) -> str:
        """Current β and whether it is trained."""
        return f"beta={float(self.beta.detach()):.4g}, learnable={self.learnable}, precise={self.precise}"
