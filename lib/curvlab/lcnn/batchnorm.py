"""Batch norm with its Lipschitz constant capped at a learnable γ ("clipped BN").

An affine-free batch norm maps channel c of x to (x_c − μ_c) / σ_c with σ_c = sqrt(var_c + eps). In
eval mode (running statistics) this is a diagonal affine map whose Lipschitz constant is the largest
gain 1/σ_min, σ_min = min_c σ_c, which can be large when one channel has small variance. The clipped
layer rescales the whole output by one scalar,

    y = BN(x) · σ_min · min(1/σ_min, γ) = BN(x) · min(1, γ σ_min),

with σ_min taken from the **running** variance (in training mode too, where BN(x) itself uses the
batch statistics). In eval mode the gain of channel c is min(1/σ_c, γ σ_min/σ_c) and the largest gain,
the layer's Lipschitz constant, is

    L = min(1/σ_min, γ) ≤ γ,

returned by :meth:`lipschitz`. γ = exp(``log_gamma``) starts at ``gamma_init`` (10 in the reference).
It only receives a gradient from the data loss while it binds (γ < 1/σ_min); otherwise only a penalty
such as Σ|log γ| acts on it.

Affine choice: faithful to the reference, the normalisation has **no** per-channel scale or shift
(``affine=False``); the only learnable quantity is γ. (With a scale w_c the Lipschitz constant would
be max_c |w_c| / σ_c; that extension is not offered here.)

Both classes are ``torch.nn.modules.batchnorm._BatchNorm`` subclasses, so running statistics,
momentum, ``train()``/``eval()`` and state dicts behave as in torch's batch norms; they share one
forward and differ only in the input shapes they accept.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["LipschitzBatchNorm1d", "LipschitzBatchNorm2d"]


class _LipschitzBatchNorm(_BatchNorm):
    """Shared body of the clipped batch norms (see the module docstring).

    Args:
        num_features: number of channels C (a positive integer).
        gamma_init: initial Lipschitz cap γ, finite and > 0.
        eps: added to the variance before the square root, > 0 (also inside σ_min).
        momentum: running-statistics momentum in [0, 1], or None for a cumulative average.

    Raises:
        ValueError: naming the parameter, for a non-positive ``num_features``, a non-finite or
            non-positive ``gamma_init`` or ``eps``, or a ``momentum`` outside [0, 1].
    """

    def __init__(self, num_features: int, gamma_init: float = 10.0, eps: float = 1e-5,
                 momentum: Optional[float] = 0.1):
        if isinstance(num_features, bool) or not isinstance(num_features, int) or num_features < 1:
            raise ValueError(f"num_features must be a positive integer, got {num_features!r}")
        gamma_init = float(gamma_init)
        if not (math.isfinite(gamma_init) and gamma_init > 0.0):
            raise ValueError(f"gamma_init must be finite and > 0, got {gamma_init}")
        eps = float(eps)
        if not (math.isfinite(eps) and eps > 0.0):
            raise ValueError(f"eps must be finite and > 0, got {eps}")
        if momentum is not None and not (0.0 <= float(momentum) <= 1.0):
            raise ValueError(f"momentum must be in [0, 1] or None, got {momentum}")
        super().__init__(num_features, eps=eps, momentum=momentum, affine=False, track_running_stats=True)
        self.log_gamma = nn.Parameter(torch.tensor(math.log(gamma_init), dtype=torch.get_default_dtype()))

    @property
    def gamma(self) -> Tensor:
        """γ = exp(log_gamma), the cap on the Lipschitz constant (0-dim, differentiable)."""
        return torch.exp(self.log_gamma)

    def sigma_min(self) -> Tensor:
        """σ_min = min_c sqrt(running_var_c + eps), from the running statistics (no gradient)."""
        return torch.sqrt(self.running_var.min() + self.eps)

    def lipschitz(self) -> Tensor:
        """The eval-mode Lipschitz constant min(1/σ_min, γ) (0-dim, differentiable w.r.t. γ)."""
        return torch.minimum(1.0 / self.sigma_min(), self.gamma)

    def forward(self, x: Tensor) -> Tensor:
        """Return BN(x) · min(1, γ σ_min); in training mode the running statistics update first."""
        y = super().forward(x)
        scale = torch.minimum(torch.ones_like(self.log_gamma), self.gamma * self.sigma_min())
        return y * scale.to(y.dtype)

    def extra_repr(self) -> str:
        """Torch's batch-norm settings and the current γ."""
        return f"{super().extra_repr()}, gamma={float(self.gamma.detach()):.4g}"


class LipschitzBatchNorm2d(_LipschitzBatchNorm):
    """Clipped batch norm for (N, C, H, W) inputs: y = BN(x) · σ_min · min(1/σ_min, γ).

    See :class:`_LipschitzBatchNorm` for the arguments and the module docstring for the mathematics.
    """

    def _check_input_dim(self, x: Tensor) -> None:
        if x.dim() != 4:
            raise ValueError(f"expected a 4D input (N, C, H, W), got {x.dim()}D")


class LipschitzBatchNorm1d(_LipschitzBatchNorm):
    """Clipped batch norm for (N, C) or (N, C, L) inputs: y = BN(x) · σ_min · min(1/σ_min, γ).

    See :class:`_LipschitzBatchNorm` for the arguments and the module docstring for the mathematics.
    """

    def _check_input_dim(self, x: Tensor) -> None:
        if x.dim() not in (2, 3):
            raise ValueError(f"expected a 2D (N, C) or 3D (N, C, L) input, got {x.dim()}D")
