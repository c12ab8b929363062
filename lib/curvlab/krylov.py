"""Krylov methods on callables: preconditioned conjugate gradient and power iteration.

These know nothing of networks. A *vector* is either one tensor or a tuple/list of tensors (for
example shaped like a model's parameters); inner products run over all entries of all tensors. Each
function returns vectors of the same structure as its input: a tensor for a tensor, a tuple for a
sequence. ``matvec`` maps a vector to a vector of the same structure.

Conjugate gradient works internally on one flat copy (P,) of the vector: each product costs one
``torch.cat`` of the result (the operator sees views of the flat iterate), and every inner product,
update and norm is a single kernel, which matters for small models where per-tensor Python overhead
would rival the products. Scalars (step lengths, inner products, the residual norm) are moved to
Python floats, so each iteration synchronises a few times with the device.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Union

import torch
from torch import Tensor

Vector = Union[Tensor, Sequence[Tensor]]
MatVec = Callable[[Vector], Vector]

__all__ = ["CGInfo", "PowerInfo", "conjugate_gradient", "power_iteration", "inner", "norm",
           "max_abs", "add_scaled"]


# --------------------------------------------------------------------------------------------------
# Vector helpers on tuples of tensors
# --------------------------------------------------------------------------------------------------

def _parts(v: Vector) -> tuple[Tensor, ...]:
    return (v,) if isinstance(v, Tensor) else tuple(v)


def _like(parts: Sequence[Tensor], template: Vector) -> Vector:
    return parts[0] if isinstance(template, Tensor) else tuple(parts)


def inner(a: Vector, b: Vector) -> Tensor:
    """<a, b> summed over all tensors, as a 0-dim tensor."""
    return sum(torch.vdot(x.reshape(-1), y.reshape(-1)) for x, y in zip(_parts(a), _parts(b)))


def norm(a: Vector) -> float:
    """Euclidean norm over all entries."""
    return math.sqrt(max(float(inner(a, a)), 0.0))


def max_abs(a: Vector) -> float:
    """Infinity norm over all entries (NaN if any entry is NaN)."""
    parts = _parts(a)
    return float(torch.stack([x.abs().max() if x.numel() else x.new_zeros(()) for x in parts]).max()
                 if parts else 0.0)


def add_scaled(x: Vector, y: Vector, alpha: float) -> Vector:
    """Return x + alpha * y, as new tensors."""
    return _like(torch._foreach_add(list(_parts(x)), list(_parts(y)), alpha=alpha), x)


def _flatten(v: Vector) -> Tensor:
    """One flat copy of a vector (P,)."""
    if isinstance(v, Tensor):
        return v.reshape(-1).clone()
    return torch.cat([t.reshape(-1) for t in v])


def _unflatten(flat: Tensor, template: Vector) -> Vector:
    """Views of ``flat`` in the structure of ``template``."""
    if isinstance(template, Tensor):
        return flat.view(template.shape)
    parts = tuple(template)
    chunks = torch.split(flat, [t.numel() for t in parts])
    return tuple(c.view(t.shape) for c, t in zip(chunks, parts))


def _describe(v) -> str:
    if isinstance(v, Tensor):
        return f"a {v.dtype} tensor of shape {tuple(v.shape)}"
    if isinstance(v, (tuple, list)) and all(isinstance(t, Tensor) for t in v):
        return "tensors of shapes " + str([tuple(t.shape) for t in v])
    return f"a {type(v).__name__}"


def _check_vector(v, name: str) -> None:
    """A vector is a floating tensor or a non-empty sequence of floating tensors."""
    parts = (v,) if isinstance(v, Tensor) else tuple(v) if isinstance(v, (tuple, list)) else None
    if not parts or not all(isinstance(t, Tensor) and t.is_floating_point() for t in parts):
        raise ValueError(f"{name} must be a floating-point tensor or a non-empty sequence of them, "
                         f"got {_describe(v)}")


def _check_like(value, template: Vector, name: str) -> None:
    """Check that ``value`` has the structure of ``template``.

    A tensor for a tensor, else a sequence of tensors of the same length; the same shapes and dtypes
    (a wrong shape would otherwise be reshaped or broadcast silently, or fail deep inside torch).
    """
    if isinstance(template, Tensor):
        ok = (isinstance(value, Tensor) and value.shape == template.shape and value.dtype == template.dtype)
    else:
        ok = (isinstance(value, (tuple, list)) and len(value) == len(template)
              and all(isinstance(a, Tensor) and a.shape == b.shape and a.dtype == b.dtype
                      for a, b in zip(value, template)))
    if not ok:
        raise ValueError(f"{name} must be shaped like rhs ({_describe(template)}), got {_describe(value)}")


def _flat_operator(f: MatVec, template: Vector, name: str) -> Callable[[Tensor], Tensor]:
    """Apply f to flat vectors: unflatten (views), apply, check the structure, flatten."""
    if isinstance(template, Tensor):
        def apply(flat: Tensor) -> Tensor:
            out = f(flat.view(template.shape))
            _check_like(out, template, name)
            return out.reshape(-1)
        return apply
    parts = tuple(template)

    def apply_parts(flat: Tensor) -> Tensor:
        out = f(_unflatten(flat, template))
        _check_like(out, parts, name)
        return torch.cat([t.reshape(-1) for t in out])
    return apply_parts


def _check_count(value, name: str, low: int) -> int:
    if not (isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= low):
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


def _check_tol(value, name: str = "tol") -> float:
    if not (isinstance(value, numbers.Real) and not isinstance(value, bool) and value >= 0):
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")     # (NaN fails value >= 0)
    return float(value)


# --------------------------------------------------------------------------------------------------
# Preconditioned conjugate gradient
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CGInfo:
    """What a conjugate-gradient run did.

    Attributes:
        iterations: number of products with A in the loop (0 if the start already satisfied ``tol``).
        residual_norm: ``||b - A x||_inf`` of the returned x (the recursively updated residual).
        converged: ``residual_norm <= tol``.
        breakdown: stopped early because ``p^T A p`` was not positive and finite (A not positive
            definite along p, or NaN/Inf in the products); x is the last good iterate.
        residual: the final residual ``b - A x`` (same structure as ``rhs``), reused by callers that
            need ``x^T A x = x^T (b - r)`` without another product; None when the last iteration used
            ``curvature`` (then ``residual_norm`` is NaN).
    """

    iterations: int
    residual_norm: float
    converged: bool
    breakdown: bool = False
    residual: Optional[Vector] = None


def conjugate_gradient(matvec: MatVec, rhs: Vector, x0: Optional[Vector] = None, *,
                       max_iter: Optional[int] = None, tol: float = 1e-6, min_iter: int = 0,
                       preconditioner: Optional[MatVec] = None,
                       on_step: Optional[Callable[[float], None]] = None,
                       curvature: Optional[Callable[[Vector], float]] = None) -> tuple[Vector, CGInfo]:
    r"""Solve ``A x = b`` for symmetric positive definite ``A`` given as ``matvec``.

    Textbook preconditioned CG (Nocedal & Wright, *Numerical Optimization*, Alg. 5.3) with
    ``r = b - A x``, ``y = M r``, ``p_0 = y_0``:

    .. math::

        a_k = r_k^T y_k / p_k^T A p_k,\quad x_{k+1} = x_k + a_k p_k,\quad r_{k+1} = r_k - a_k A p_k,
        \quad b_k = r_{k+1}^T y_{k+1} / r_k^T y_k,\quad p_{k+1} = y_{k+1} + b_k p_k.

    Args:
        matvec: v -> A v.
        rhs: b, a tensor or a sequence of tensors.
        x0: starting point (default 0, which costs no product; a non-zero x0 costs one).
        max_iter: cap on the number of products in the loop (default: the number of unknowns).
        tol: stop as soon as ``||r||_inf <= tol`` (absolute, on the residual of the system as given).
        min_iter: run at least this many iterations even when ``tol`` is met (stops anyway when the
            residual is exactly zero).
        preconditioner: v -> M v with M an SPD approximation of ``A^{-1}`` (the *inverse*
            preconditioner), e.g. ``lambda r: [d * ri for d, ri in zip(inv_diag, r)]``.
        on_step: called with each step length a_k right after ``x += a_k p_k`` (p_k being the vector of
            the most recent ``matvec`` call), e.g. to follow x along quantities computed in the products.
            With ``x0`` it is first called with 1.0 after the product ``A x0``, so that always
            ``x = sum_k a_k v_k`` over the calls, v_k the vector of the ``matvec`` call before each.
        curvature: v -> v^T A v, computed without forming A v (e.g. ``||J v||^2_H`` for a Gauss-Newton
            matrix, which skips the backward pass of the product). When given, the last iteration that
            ``max_iter`` allows uses it instead of ``matvec``: only ``a_k`` needs ``p^T A p``, and
            ``r_{k+1}`` would only be reported. x is then exact as before, but the final residual is
            unknown: ``residual`` is None, ``residual_norm`` NaN and ``converged`` False. ``on_step``
            is called as usual, the vector of the ``curvature`` call counting as that of a product.

    Returns:
        ``(x, CGInfo)``; x has the structure of ``rhs``.

    Raises:
        ValueError: ``rhs`` not a floating tensor or sequence of them; ``x0``, or the result of
            ``matvec`` or ``preconditioner``, not shaped like ``rhs`` (same structure, shapes and dtypes);
            ``max_iter`` or ``min_iter`` not an int >= 0; ``tol`` not a number >= 0.
    """
    _check_vector(rhs, "rhs")
    if x0 is not None:
        _check_like(x0, rhs, "x0")
    b = _flatten(rhs)                                   # (P,): work on one flat vector
    max_iter = b.numel() if max_iter is None else _check_count(max_iter, "max_iter", 0)
    tol = _check_tol(tol)
    min_iter = _check_count(min_iter, "min_iter", 0)
    A = _flat_operator(matvec, rhs, "matvec(v)")
    M = _flat_operator(preconditioner, rhs, "preconditioner(v)") if preconditioner is not None else None

    if x0 is None:
        x, r = torch.zeros_like(b), b                   # r = b - A 0
    else:
        x = _flatten(x0)
        r = b - A(x)
        if on_step is not None:                         # x = 1 * x0, the vector of that product
            on_step(1.0)
    res = float(r.abs().max()) if r.numel() else 0.0
    y = M(r) if M is not None else r
    ry = float(torch.dot(r, y))
    p = y.clone()                                       # r is updated in place below
    k, breakdown = 0, False
    while k < max_iter and (k < min_iter or not res <= tol):
        if ry == 0.0:                                   # r = 0 exactly: x solves the system
            break
        if k > 0:
            y = M(r) if M is not None else r
            ry_new = float(torch.dot(r, y))
            p = torch.add(y, p, alpha=ry_new / ry)      # p = y + beta p
            ry = ry_new
            if ry == 0.0:
                break
        last = curvature is not None and k == max_iter - 1
        q = None if last else A(p)                      # A p
        pq = _curvature(curvature, p, rhs) if last else float(torch.dot(p, q))
        if not (pq > 0.0 and math.isfinite(pq)):
            breakdown = True
            break
        a = ry / pq
        x.add_(p, alpha=a)                              # x += a p
        if last:                                        # the residual is not needed any more
            r, res = None, math.nan
        else:
            r.sub_(q, alpha=a)                          # r -= a A p
            res = float(r.abs().max())
        if on_step is not None:
            on_step(a)
        k += 1
    info = CGInfo(iterations=k, residual_norm=res, converged=bool(res <= tol), breakdown=breakdown,
                  residual=None if r is None else _unflatten(r, rhs))
    return _unflatten(x, rhs), info


def _curvature(curvature: Callable[[Vector], float], flat: Tensor, template: Vector) -> float:
    """``curvature`` of the flat vector, given in the structure of ``template``; checked to be a number."""
    value = curvature(_unflatten(flat, template))
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise ValueError(f"curvature(v) must return a real number (v^T A v), got {type(value).__name__}")
    return float(value)


# --------------------------------------------------------------------------------------------------
# Power iteration
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PowerInfo:
    """Convergence record of ``power_iteration``.

    Attributes:
        iterations: products with A used.
        converged: the eigen-residual met the tolerance, ``residual_norm <= tol |eigenvalue|``.
        relative_change: last relative change ``|lambda_k - lambda_{k-1}| / |lambda_k|`` of the Rayleigh
            quotient (small also when it stalls without converging, e.g. at 0 between +mu and -mu).
        residual_norm: ``||A v - lambda v||_2`` of the returned pair (``||v|| = 1``).
        magnitude: ``||A v||_2``, an estimate of the largest |eigenvalue| from below that converges
            also when the two largest eigenvalues are +mu and -mu (there the Rayleigh quotient does not).
    """

    iterations: int
    converged: bool
    relative_change: float
    residual_norm: float = math.nan
    magnitude: float = math.nan


def _is_shape(v) -> bool:
    return isinstance(v, torch.Size) or (isinstance(v, (tuple, list)) and all(isinstance(s, int) for s in v))


def power_iteration(matvec: MatVec, v0: Union[Vector, torch.Size, Sequence[int], Sequence[Sequence[int]]],
                    *, max_iter: int = 100, tol: float = 1e-6,
                    generator: Optional[torch.Generator] = None, dtype: Optional[torch.dtype] = None,
                    device: Optional[torch.device] = None) -> tuple[float, Vector, PowerInfo]:
    """Dominant eigenpair (largest |lambda|) of a symmetric operator; for a PSD one, the top eigenvalue.

    Iterates ``v <- A v / ||A v||`` with the Rayleigh quotient ``lambda = v^T A v`` (``||v|| = 1``) and
    stops when the eigen-residual is small, ``||A v - lambda v|| <= tol |lambda|``, or after ``max_iter``
    products. For a symmetric A the residual certifies the answer: some eigenvalue lies within
    ``||A v - lambda v||`` of lambda (so within ``tol |lambda|`` on convergence), and within
    ``||A v - lambda v||^2 / gap`` when the other eigenvalues are at least ``gap`` away. Convergence is
    geometric with ratio |lambda_2 / lambda_1|, slow for clustered spectra. When the two largest
    eigenvalues are +mu and -mu the iterate never settles: the Rayleigh quotient stays between them
    (e.g. 0 for diag(1, -1) from (1, 1)), the residual stays large and ``converged`` is False, while
    ``PowerInfo.magnitude = ||A v||`` tends to mu. A start orthogonal to the dominant eigenvector can
    converge to another eigenpair (for instance ``A v = 0``: eigenvalue 0, residual 0).

    Args:
        matvec: v -> A v (the same structure, shapes and dtypes as v).
        v0: the starting vector (tensor or sequence of tensors), or a shape / sequence of shapes from
            which a standard normal start is drawn with ``generator`` (``dtype``, ``device``).
        max_iter: cap on the number of products (an int >= 1).
        tol: relative tolerance of the eigen-residual (a number >= 0).
        generator: random source for a drawn start, for reproducible estimates.
        dtype: dtype of a drawn start (default: torch's default dtype).
        device: device of a drawn start.

    Returns:
        ``(eigenvalue, unit eigenvector estimate, PowerInfo)``; the pair is the one ``residual_norm``
        was measured on.

    Raises:
        ValueError: a zero or non-floating start, ``matvec`` returning a vector not shaped like v,
            ``max_iter`` not an int >= 1, ``tol`` not a number >= 0.
    """
    max_iter = _check_count(max_iter, "max_iter", 1)
    tol = _check_tol(tol)
    if _is_shape(v0) or (isinstance(v0, (tuple, list)) and v0 and all(_is_shape(s) for s in v0)):
        shapes = [v0] if _is_shape(v0) else list(v0)
        drawn = [torch.randn(tuple(s), generator=generator, dtype=dtype, device=device) for s in shapes]
        v0 = drawn[0] if _is_shape(v0) else tuple(drawn)
    _check_vector(v0, "v0")
    template = v0
    v = list(_parts(v0))
    nv = norm(v)
    if nv == 0.0:
        raise ValueError("the starting vector is zero")
    v = torch._foreach_div(v, nv)
    eig, change, res, nw, k, converged = math.nan, math.inf, math.nan, math.nan, 0, False
    while k < max_iter:
        out = matvec(_like(v, template))
        _check_like(out, template if isinstance(template, Tensor) else tuple(template), "matvec(v)")
        w = list(_parts(out))
        k += 1
        new_eig = float(inner(v, w))
        nw = norm(w)
        res = norm(torch._foreach_add(w, v, alpha=-new_eig))    # ||A v - lambda v||
        if k > 1:
            change = abs(new_eig - eig) / max(abs(new_eig), 1e-300)
        eig = new_eig
        if not math.isfinite(nw):                               # overflow or NaN in the products
            break
        if res <= tol * abs(eig):                               # (v, eig) is certified: keep v
            converged = True                                    # (A v = 0 lands here: res = 0)
            break
        if k < max_iter:
            v = torch._foreach_div(w, nw)
    return eig, _like(v, template), PowerInfo(iterations=k, converged=converged, relative_change=change,
                                             residual_norm=res, magnitude=nw)
