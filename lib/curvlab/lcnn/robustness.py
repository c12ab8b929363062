"""Off-the-shelf robustness probes: PGD-ℓ2 attacks, robust accuracy, input-gradient stability.

PGD-ℓ2 (Madry et al. 2018) maximises the per-sample loss ℓ_i(x_i + δ_i) over the ball ‖δ_i‖₂ ≤ ε
by normalised gradient ascent with projection:

    δ ← Π(δ + α ∇ℓ_i / ‖∇ℓ_i‖),   Π: scale back to ‖δ‖ ≤ ε, then clip x + δ to the pixel box.

Clipping a point of the box towards it can only shrink each |δ_j|, so the result stays in the ball.
The start is uniform in the ball (a random start, ``seed``) or δ = 0. The default step α = 2.5 ε /
steps (Madry's choice, ε/4 for 10 steps) reaches the sphere in 4 steps; the reference's history
used ε/10 with cleverhans, and its adversarial-training baseline 3 steps of 0.01 at ε = 0.1.

Gradient stability compares the input gradient at x with the one at x + σξ, ξ ~ N(0, I), by their
cosine similarity: 1 means the gradient direction does not move under small input noise.

Every probe runs the model in eval mode, restores every module's own mode, and accumulates no
gradient on the parameters (the input gradients come from :func:`curvlab.hessian.input_gradient`).
"""
from __future__ import annotations

import math
import numbers
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from ..hessian import eval_mode, input_gradient
from ..losses import check_loss

__all__ = ["gradient_stability", "pgd_l2", "robust_accuracy"]




def _check_radius(value, name: str) -> float:
    if not (isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
            and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _check_int(value, name: str, low: int) -> int:
    if not (isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= low):
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


def _per_row(s: Tensor, like: Tensor) -> Tensor:
    return s.reshape(-1, *([1] * (like.dim() - 1)))


def _row_norms(t: Tensor) -> Tensor:
    """‖t_i‖₂ per sample, shaped (N, 1, ..., 1) for broadcasting."""
    return _per_row(torch.linalg.vector_norm(t.reshape(t.shape[0], -1), dim=1), t)


def _unit_rows(t: Tensor) -> Tensor:
    """t_i / ‖t_i‖ per sample, 0 for a zero row."""
    norms = _row_norms(t)
    return torch.where(norms > 0, t / torch.where(norms > 0, norms, 1.0), 0.0)


def _check_box(x: Tensor, clamp: Optional[tuple[float, float]]) -> Optional[tuple[float, float]]:
    if clamp is None:
        return None
    lo, hi = (float(c) for c in clamp)
    if not lo < hi:
        raise ValueError(f"clamp must be (low, high) with low < high, got {clamp!r}")
    if bool((x < lo).any() or (x > hi).any()):
        raise ValueError(f"x must lie in the clamp box [{lo}, {hi}]")
    return lo, hi


def _project(x: Tensor, delta: Tensor, eps: float, box: Optional[tuple[float, float]]) -> Tensor:
    norms = _row_norms(delta)
    delta = torch.where(norms > eps, delta * (eps / torch.where(norms > eps, norms, 1.0)), delta)
    if box is not None:
        delta = (x + delta).clamp(*box) - x
    return delta


def pgd_l2(model: nn.Module, x: Tensor, y: Tensor, eps: float, steps: int = 10,
           step_size: Optional[float] = None, seed: int = 0, random_start: bool = True,
           clamp: Optional[tuple[float, float]] = (0.0, 1.0), loss: str = "cross_entropy") -> Tensor:
    """Adversarial inputs x + δ, ‖δ_i‖₂ ≤ ``eps`` per sample, by projected normalised gradient ascent.

    Args:
        model: the classifier (eval mode during the attack; modes restored).
        x: clean inputs (N, ...), inside the ``clamp`` box.
        y: labels (N,).
        eps: the ℓ2 radius, a finite number >= 0 (0 returns ``x``).
        steps: ascent steps, an int >= 1.
        step_size: α, a finite number > 0 (default 2.5 ε / steps).
        seed: seed of the random start.
        random_start: start uniformly in the ball (else at δ = 0).
        clamp: the pixel box (low, high), or None for no box.
        loss: a name from :data:`curvlab.losses.LOSSES`.

    Returns:
        The adversarial batch, detached, shaped like ``x``.

    Raises:
        ValueError: for ``eps``, ``steps``, ``step_size`` or ``seed`` out of range, a bad box or x
            outside it, or an unknown loss.
    """
    eps, steps = _check_radius(eps, "eps"), _check_int(steps, "steps", 1)
    alpha = 2.5 * eps / steps if step_size is None else _check_radius(step_size, "step_size")
    if step_size is not None and alpha == 0:
        raise ValueError("step_size must be > 0")
    seed = _check_int(seed, "seed", 0)
    check_loss(loss)
    x = x.detach()
    box = _check_box(x, clamp)
    if eps == 0:
        return x.clone()
    if random_start:
        g = torch.Generator(device=x.device).manual_seed(seed)
        direction = torch.randn(x.shape, generator=g, dtype=x.dtype, device=x.device)
        radius = torch.rand((x.shape[0],), generator=g, dtype=x.dtype, device=x.device)
        radius = eps * radius ** (1.0 / x[0].numel())          # uniform in the ball
        delta = _project(x, _unit_rows(direction) * _per_row(radius, x), eps, box)
    else:
        delta = torch.zeros_like(x)
    for _ in range(steps):
        delta = _project(x, delta + alpha * _unit_rows(input_gradient(model, loss, x + delta, y)), eps, box)
    return (x + delta).detach()


def _check_radii(radii) -> list[float]:
    if isinstance(radii, numbers.Real) or not isinstance(radii, Sequence) or len(radii) == 0:
        raise ValueError(f"radii must be a non-empty sequence of numbers >= 0, got {radii!r}")
    return [_check_radius(r, "radii") for r in radii]


def robust_accuracy(model: nn.Module, x: Tensor, y: Tensor, radii: Sequence[float], steps: int = 10,
                    step_size_factor: float = 2.5, batch_size: int = 256, seed: int = 0,
                    random_start: bool = True, clamp: Optional[tuple[float, float]] = (0.0, 1.0),
                    loss: str = "cross_entropy") -> dict[float, float]:
    """Accuracy under :func:`pgd_l2` for each radius: ``{radius: fraction correct}`` (radius 0: clean).

    The step is ``step_size_factor · ε / steps`` (2.5: Madry's; 1: the reference's ε/10 at 10
    steps). Batches of ``batch_size`` are attacked in turn, batch b with seed ``seed + b``.

    Raises:
        ValueError: for empty or negative ``radii``, ``steps`` or ``batch_size`` < 1, a non-positive
            ``step_size_factor``, or what :func:`pgd_l2` refuses.
    """
    radii = _check_radii(radii)
    steps, batch_size = _check_int(steps, "steps", 1), _check_int(batch_size, "batch_size", 1)
    factor = _check_radius(step_size_factor, "step_size_factor")
    if factor == 0:
        raise ValueError("step_size_factor must be > 0")
    seed = _check_int(seed, "seed", 0)
    check_loss(loss)
    _check_box(x, clamp)
    out: dict[float, float] = {}
    for eps in radii:
        correct = 0
        for b, i in enumerate(range(0, x.shape[0], batch_size)):
            xb, yb = x[i:i + batch_size], y[i:i + batch_size]
            adv = pgd_l2(model, xb, yb, eps, steps, factor * eps / steps if eps else None, seed + b,
                         random_start, clamp, loss)
            with eval_mode(model), torch.no_grad():
                correct += int((model(adv).argmax(-1) == yb).sum())
        out[eps] = correct / x.shape[0]
    return out


def gradient_stability(model: nn.Module, x: Tensor, y: Tensor, sigma: float, n_draws: int = 10,
                       seed: int = 0, loss: str = "cross_entropy") -> Tensor:
    """Per-sample mean cosine similarity of ∇ₓℓ_i at x_i and at x_i + σξ, over ``n_draws`` draws ξ ~ N(0, I).

    cos(a, b) = aᵀb / (‖a‖‖b‖), taken as 0 where either gradient is exactly 0. No pixel clipping
    of the noisy inputs.

    Returns:
        A tensor (N,) with entries in [−1, 1] (exactly 1 up to rounding for σ = 0).

    Raises:
        ValueError: for ``sigma`` negative or not finite, ``n_draws`` < 1, a bad ``seed`` or loss.
    """
    sigma, n_draws = _check_radius(sigma, "sigma"), _check_int(n_draws, "n_draws", 1)
    seed = _check_int(seed, "seed", 0)
    check_loss(loss)
    x = x.detach()
    n = x.shape[0]
    clean = input_gradient(model, loss, x, y).reshape(n, -1)
    g = torch.Generator(device=x.device).manual_seed(seed)
    total = torch.zeros(n, dtype=clean.dtype, device=clean.device)
    for _ in range(n_draws):
        noise = torch.randn(x.shape, generator=g, dtype=x.dtype, device=x.device)
        noisy = input_gradient(model, loss, x + sigma * noise, y).reshape(n, -1)
        total += (_unit_rows(clean) * _unit_rows(noisy)).sum(1)
    return total / n_draws
