"""Batched power iteration: N independent eigenproblems, one per leading index, in one loop.

For operators that act row by row (``matvec(v)[i]`` depends on ``v[i]`` only), such as the per-sample
input Hessians of a network in eval mode, each row gets its own norm, Rayleigh quotient and
convergence flag. Knows nothing of networks; the argument checks are :mod:`curvlab.krylov`'s.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from .krylov import _check_count, _check_like, _check_tol, _describe

__all__ = ["BatchedPowerInfo", "batched_power_iteration"]


@dataclass(frozen=True)
class BatchedPowerInfo:
    """Per-sample convergence record of ``batched_power_iteration`` (all tensors shaped (N,)).

    Attributes:
        iterations: products with the operator used (the same for every sample).
        converged: the relative change of the sample's Rayleigh quotient between the last two products
            was below ``tol`` (a stall test, not a certificate: see ``residual_norm``).
        relative_change: ``|lambda_k - lambda_{k-1}| / |lambda_k|`` at the last product (inf after a
            single product; 0 when both are exactly equal, also when both are 0).
        residual_norm: ``||A_i v_i - lambda_i v_i||`` of the returned pairs (``||v_i|| = 1``); some
            eigenvalue of A_i lies within it of lambda_i.
        magnitude: ``||A_i v_i||``, which tends to the largest |eigenvalue| also when the two largest
            are +mu and -mu (there the Rayleigh quotient does not settle).
    """

    iterations: int
    converged: Tensor
    relative_change: Tensor
    residual_norm: Tensor
    magnitude: Tensor


def batched_power_iteration(matvec: Callable[[Tensor], Tensor], v0: Tensor, *, iters: int = 20,
                            tol: float = 1e-3) -> tuple[Tensor, Tensor, BatchedPowerInfo]:
    """Dominant eigenpairs of N independent symmetric operators at once, one per leading index.

    ``matvec`` maps a batch of vectors V shaped (N, ...) to (A_1 v_1, ..., A_N v_N) of the same shape:
    row i is acted on by its own operator A_i only (e.g. a block-diagonal operator with one block per
    sample). Every row runs its own power iteration ``v_i <- A_i v_i / ||A_i v_i||`` with its own norm
    and its own Rayleigh quotient ``lambda_i = v_i^T A_i v_i`` (``||v_i|| = 1``), so lambda_i tends to
    the eigenvalue of A_i of largest modulus, with its sign, geometrically at rate
    ``|lambda_2 / lambda_1|`` of that row. A row with ``A_i v_i = 0`` keeps its vector (an exact
    eigenpair with eigenvalue 0).

    Each of the ``iters`` products yields a Rayleigh quotient; a row counts as converged when its
    quotient changed by less than ``tol`` relative to its modulus between the last two products. The
    loop stops early once every row has converged. Rows do not interact, so a row's estimate does
    not depend on the others except through that common stopping time.

    Args:
        matvec: V -> (A_i v_i)_i, shaped and typed like V.
        v0: the starting vectors (N, ...), a floating tensor with no zero row.
        iters: cap on the number of products (an int >= 1).
        tol: relative-change tolerance of the convergence flags (a number >= 0; 0 never flags).

    Returns:
        ``(eigenvalues (N,), unit vectors (N, ...), BatchedPowerInfo)``: the Rayleigh quotients at the
        last product and the vectors they were measured on.

    Raises:
        ValueError: ``iters`` not an int >= 1, ``tol`` not a number >= 0, ``v0`` not a floating tensor
            with a leading batch dimension and non-zero rows, ``matvec`` returning another shape or dtype.

    Example:
        >>> A = torch.stack([torch.diag(torch.tensor([3.0, 1.0])), torch.diag(torch.tensor([-2.0, 0.5]))])
        >>> eig, _, info = batched_power_iteration(lambda v: (A @ v[..., None])[..., 0],
        ...                                        torch.ones(2, 2), iters=60, tol=1e-9)
        >>> [round(float(e), 6) for e in eig], info.converged.tolist()
        ([3.0, -2.0], [True, True])
    """
    iters = _check_count(iters, "iters", 1)
    tol = _check_tol(tol)
    if not (isinstance(v0, Tensor) and v0.is_floating_point() and v0.dim() >= 1 and v0.shape[0] > 0):
        raise ValueError(f"v0 must be a floating tensor (N, ...) with N >= 1, got {_describe(v0)}")
    n = v0.shape[0]

    def row_norms(t: Tensor) -> Tensor:
        return torch.linalg.vector_norm(t.reshape(n, -1), dim=1)

    def per_row(s: Tensor) -> Tensor:
        return s.reshape(n, *([1] * (v0.dim() - 1)))

    nv = row_norms(v0)
    if not bool((nv > 0).all()):
        raise ValueError("v0 has a zero row: every sample needs a non-zero starting vector")
    v = v0 / per_row(nv)
    eig = torch.full((n,), math.nan, dtype=v0.dtype, device=v0.device)
    change = torch.full_like(eig, math.inf)
    k = 0
    while True:
        w = matvec(v)
        _check_like(w, v, "matvec(v)")
        k += 1
        new_eig = (v * w).reshape(n, -1).sum(1)
        magnitude = row_norms(w)
        if k > 1:
            diff = (new_eig - eig).abs()
            change = torch.where(diff == 0, torch.zeros_like(diff), diff / new_eig.abs())
        eig = new_eig
        converged = change < tol
        if k >= iters or bool(converged.all()):
            break
        nonzero = magnitude > 0
        v = torch.where(per_row(nonzero), w / per_row(torch.where(nonzero, magnitude, 1.0)), v)
    residual = row_norms(w - per_row(eig) * v)
    return eig, v, BatchedPowerInfo(iterations=k, converged=converged, relative_change=change,
                                    residual_norm=residual, magnitude=magnitude)
