"""Small dense linear algebra shared by the methods: damping checks, SPD solves, flat vectors.

Pure functions, no knowledge of networks. ``solve_spd`` is the one place where a method solves a
symmetric positive-definite system; ``flatten``/``unflatten_like`` convert between a tuple of
parameter-shaped tensors and one flat vector (P,).
"""
from __future__ import annotations

import functools
import math
from typing import Sequence

import torch
from torch import Tensor

__all__ = ["check_damping", "solve_spd", "flatten", "unflatten_like", "identity"]

Tensors = tuple[Tensor, ...]


def check_damping(value: float, name: str) -> float:
    """Return ``value`` as a float, or raise ``ValueError`` unless it is finite and > 0."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return value


@functools.lru_cache(maxsize=16)
def _cached_identity(k: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    return torch.eye(k, dtype=dtype, device=device)


def identity(k: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """I_k, cached for the small sizes the batch form uses every step (read, never written)."""
    return _cached_identity(k, dtype, device) if k <= 1024 else torch.eye(k, dtype=dtype, device=device)


def solve_spd(matrix: Tensor, rhs: Tensor, *, left: bool = True) -> Tensor:
    """``matrix⁻¹ rhs`` (``left``) or ``rhs matrix⁻¹`` for a symmetric positive-definite ``matrix``.

    Cholesky factor L, then two triangular solves on the right, rhs L⁻ᵀ L⁻¹ (for ``left``, the same
    on rhsᵀ, as the matrix is symmetric). This is the solve ``torch.cholesky_solve`` does, but the
    right-sided ``solve_triangular`` runs 2.5-3x faster for the wide right-hand sides here (60×60
    system, 400 columns: 0.11 ms against 0.28 ms on one CPU core). If the factorisation fails
    (round-off at extreme scales) it falls back to an LU solve. A non-finite ``matrix`` gives an
    all-NaN result: LU can turn an ``inf`` entry into finite but meaningless numbers, which would be
    a silently wrong step.
    """
    factor, info = torch.linalg.cholesky_ex(matrix)
    # info == 0 with a finite diagonal implies a finite factor, hence a finite matrix. (A finite
    # diagonal whose sum overflows only sends an extreme case down the LU path.)
    # detach: inside torch.func.grad the factor tracks gradients, and reading a scalar from it warns
    if int(info) == 0 and math.isfinite(float(factor.diagonal().detach().sum())):
        right = rhs.mT if left else rhs
        y = torch.linalg.solve_triangular(factor.mT, right, upper=True, left=False)
        x = torch.linalg.solve_triangular(factor, y, upper=False, left=False)
        return x.mT if left else x
    if not bool(torch.isfinite(matrix).all()):
        return torch.full_like(rhs, float("nan"))
    return torch.linalg.solve(matrix, rhs, left=left)


def flatten(tensors: Sequence[Tensor]) -> Tensor:
    """Concatenate tensors into one flat vector (P,)."""
    return torch.cat([t.reshape(-1) for t in tensors])


def unflatten_like(flat: Tensor, like: Sequence[Tensor]) -> Tensors:
    """Split a flat vector (P,) into a tuple of tensors shaped like ``like``."""
    sizes = [t.numel() for t in like]
    if flat.numel() != sum(sizes):
        raise ValueError(f"flat vector has {flat.numel()} entries, the shapes need {sum(sizes)}")
    return tuple(c.view_as(t) for c, t in zip(torch.split(flat.reshape(-1), sizes), like))
