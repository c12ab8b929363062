"""Per-sample normalised curvature of the loss in input space, by the power method.

For sample i with loss ℓ_i(x) = loss(f(x), y_i) (cross-entropy by default: −log softmax(f(x))_{y_i}),
the normalised curvature is

    C_i = |λ̂_i| / (‖∇ₓℓ_i(x_i)‖ + ε),

where λ̂_i estimates the eigenvalue of largest modulus of the input Hessian ∇²ₓℓ_i(x_i), i.e. its
spectral norm ‖∇²ₓℓ_i‖₂ (the Hessian is symmetric). C separates how curved the loss is from how steep
it is: multiplying ℓ by a constant leaves C unchanged.

λ̂_i comes from a power iteration per sample (:func:`curvlab.batched_power.batched_power_iteration`) on the
core's per-sample input-Hessian products (:func:`curvlab.hessian.input_hessian_vector_product`),
with the model in eval mode, where samples do not interact. As in the reference estimator, a random
Gaussian start is normalised per sample, ``iters`` power updates u ← H u / ‖H u‖ follow, and λ̂ is the
Rayleigh quotient uᵀ H u of the last iterate, so ``iters`` updates take ``iters + 1`` products. The
reference divides by ‖H u‖ + 1e-6; here by ‖H u‖ exactly (a row with H u = 0 keeps its vector).

Reported per sample: C, |λ̂|, ‖∇ₓℓ‖, the signed λ̂, a convergence flag (relative change of λ̂ between
the last two products below ``tol``) and the eigen-residual ‖H u − λ̂ u‖. Results hold exactly the
measured samples (no padding), so summaries average only them.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields
from typing import Sequence

import torch
from torch import Tensor, nn

from ..batched_power import batched_power_iteration
from ..hessian import input_gradient, input_hessian_vector_product
from ..losses import check_loss

__all__ = ["CurvatureResult", "measure_curvature", "measure_dataset"]

SUMMARY_QUANTITIES = ("curvature", "hessian_norm", "gradient_norm")


@dataclass(frozen=True)
class CurvatureResult:
    """Per-sample curvature measurements; every tensor is shaped (N,) for N measured samples.

    Attributes:
        curvature: C = |λ̂| / (‖∇ₓℓ‖ + ε).
        hessian_norm: |λ̂|, the estimate of ‖∇²ₓℓ‖₂.
        gradient_norm: ‖∇ₓℓ‖₂ (exact, one backward pass).
        eigenvalue: λ̂ with its sign (negative where the loss is locally concave along the top direction).
        converged: relative change of λ̂ between the last two products below the tolerance.
        iterations: Hessian-vector products used for the sample's batch (``iters + 1`` unless every
            sample of the batch converged earlier).
        residual_norm: ‖H u − λ̂ u‖ for the unit vector u of λ̂: some eigenvalue of H lies within it of λ̂.
    """

    curvature: Tensor
    hessian_norm: Tensor
    gradient_norm: Tensor
    eigenvalue: Tensor
    converged: Tensor
    iterations: Tensor
    residual_norm: Tensor

    def __len__(self) -> int:
        return int(self.curvature.shape[0])

    def summary(self) -> dict[str, float]:
        """Mean and standard deviation of C, ‖∇²ℓ‖ and ‖∇ℓ‖ over the measured samples.

        Keys ``<quantity>_mean`` and ``<quantity>_std`` for quantity in curvature, hessian_norm,
        gradient_norm; the standard deviation is the sample one (Bessel-corrected, as ``torch.std``
        in the reference; NaN for a single sample). Also ``n`` (samples) and ``converged_fraction``.
        Every entry is a measured sample: there is no padding to exclude.
        """
        n = len(self)
        out: dict[str, float] = {"n": float(n)}
        for name in SUMMARY_QUANTITIES:
            values = getattr(self, name).detach().double()
            out[f"{name}_mean"] = float(values.mean()) if n else math.nan
            out[f"{name}_std"] = float(values.std()) if n > 1 else math.nan
        out["converged_fraction"] = float(self.converged.double().mean()) if n else math.nan
        return out

    @classmethod
    def concatenate(cls, results: Sequence["CurvatureResult"]) -> "CurvatureResult":
        """One result holding the samples of ``results`` in order."""
        if not results:
            raise ValueError("results must hold at least one CurvatureResult")
        return cls(**{f.name: torch.cat([getattr(r, f.name) for r in results]) for f in fields(cls)})


def _check_int(value, name: str, low: int) -> int:
    if not (isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= low):
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


def _check_nonnegative(value, name: str) -> float:
    if not (isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
            and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _check_batch(inputs, targets) -> None:
    if not (isinstance(inputs, Tensor) and inputs.is_floating_point() and inputs.dim() >= 1):
        raise ValueError("inputs must be a floating tensor (N, ...)")
    if not isinstance(targets, Tensor) or targets.shape[:1] != inputs.shape[:1]:
        raise ValueError("targets must be a tensor with the same number of samples as inputs")


def _measure(model: nn.Module, inputs: Tensor, targets: Tensor, iters: int, eps: float, loss: str,
             tol: float, generator: torch.Generator) -> CurvatureResult:
    """One batch: exact gradients, then iters + 1 per-sample input-Hessian products."""
    x = inputs.detach()
    n = x.shape[0]
    gradient = input_gradient(model, loss, x, targets)
    gradient_norm = torch.linalg.vector_norm(gradient.reshape(n, -1), dim=1)
    start = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)

    def hessian_products(v: Tensor) -> Tensor:
        return input_hessian_vector_product(model, loss, x, targets, v)
    eigenvalue, _, info = batched_power_iteration(hessian_products, start, iters=iters + 1, tol=tol)
    hessian_norm = eigenvalue.abs()
    return CurvatureResult(curvature=hessian_norm / (gradient_norm + eps), hessian_norm=hessian_norm,
                           gradient_norm=gradient_norm, eigenvalue=eigenvalue, converged=info.converged,
                           iterations=torch.full((n,), info.iterations, dtype=torch.int64, device=x.device),
                           residual_norm=info.residual_norm)


def _generator(seed, device: torch.device) -> torch.Generator:
    seed = _check_int(seed, "seed", 0)
    return torch.Generator(device=device).manual_seed(seed)


def measure_curvature(model: nn.Module, inputs: Tensor, targets: Tensor, iters: int = 10, eps: float = 1e-6,
                      loss: str = "cross_entropy", seed: int = 0, tol: float = 1e-3) -> CurvatureResult:
    """Per-sample normalised curvature C, Hessian norm and gradient norm of one batch (module docstring).

    The model runs in eval mode (every module's own mode is restored afterwards) with its parameters
    held fixed: no gradient is accumulated on them. Cost: one input gradient and ``iters + 1``
    input-Hessian-vector products of the batch (fewer if every sample converged earlier).

    Args:
        model: the classifier; its eval-mode samples must not interact.
        inputs: a batch (N, ...) in the model's input space (pixels in [0, 1] for the LCNN models).
        targets: the labels (N,) as the loss expects them.
        iters: power updates after the random start (an int >= 1; 10 in the reference's estimator,
            4 in its older training script).
        eps: ε of C = |λ̂| / (‖∇ℓ‖ + ε), a finite number >= 0 (1e-6 as in the reference).
        loss: a name from :data:`curvlab.losses.LOSSES`.
        seed: seed of the random start (an int >= 0).
        tol: relative-change tolerance of the convergence flags.

    Returns:
        A :class:`CurvatureResult` of N samples.

    Raises:
        ValueError: for ``iters``, ``eps``, ``tol`` or ``seed`` out of range, an unknown loss, or
            inputs and targets that do not form a batch.
    """
    iters, eps = _check_int(iters, "iters", 1), _check_nonnegative(eps, "eps")
    tol = _check_nonnegative(tol, "tol")
    check_loss(loss)
    _check_batch(inputs, targets)
    return _measure(model, inputs, targets, iters, eps, loss, tol, _generator(seed, inputs.device))


def measure_dataset(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 64, iters: int = 10,
                    eps: float = 1e-6, loss: str = "cross_entropy", seed: int = 0,
                    tol: float = 1e-3) -> CurvatureResult:
    """:func:`measure_curvature` over ``x`` in batches of ``batch_size``, concatenated.

    The last batch may be smaller: every sample of ``x`` is measured once and the result holds exactly
    ``len(x)`` entries (the reference sized its arrays for the whole fraction but filled only full
    batches, and its summaries included the unfilled entries). One random generator, seeded once,
    draws the starts of all batches in turn.

    Args:
        model, x, y, iters, eps, loss, seed, tol: as in :func:`measure_curvature`.
        batch_size: samples per batch (an int >= 1; 64 in the reference's estimator).

    Raises:
        ValueError: as :func:`measure_curvature`, and for ``batch_size`` < 1 or an empty ``x``.
    """
    batch_size = _check_int(batch_size, "batch_size", 1)
    iters, eps = _check_int(iters, "iters", 1), _check_nonnegative(eps, "eps")
    tol = _check_nonnegative(tol, "tol")
    check_loss(loss)
    _check_batch(x, y)
    if x.shape[0] == 0:
        raise ValueError("x holds no samples")
    generator = _generator(seed, x.device)
    parts = [_measure(model, x[i:i + batch_size], y[i:i + batch_size], iters, eps, loss, tol, generator)
             for i in range(0, x.shape[0], batch_size)]
    return CurvatureResult.concatenate(parts)
