"""Per-group learning rates of GroupedNewton from the summaries (g_bar, H_bar, D3): the S-dimensional solve.

With S groups, a direction u and phi(eta) = L(theta - sum_s eta_s u_s), the summaries are
g_bar_s = -dphi/deta_s, H_bar_st = d2phi/deta_s deta_t and D3_s = nabla^3 L[u_s, u_s, u_s]. The
learning rates eta minimise a model of phi(eta) - phi(0):

- ``"newton"``: the quadratic model -g·eta + ½ etaᵀH eta, stationary at eta = H⁻¹ g (the "Newton
  summary"; a saddle point if H is indefinite).
- ``"ridge"``: eta = (H + ridge·I)⁻¹ g.
- ``"cubic"`` (the paper's method): the anisotropic cubic model

      m(eta) = -gᵀeta + ½ etaᵀH eta + (λ/6) ‖D eta‖³,   D = diag(|D3_s|^(1/3)),  λ = damping_int,

  whose global minimiser is the eta = (H + (λ/2) r D²)⁻¹ g with r = ‖D eta‖ for which
  H + (λ/2) r D² ⪰ 0. The cube root makes the model invariant under a rescaling of the group
  directions u_s -> c_s u_s (g -> Cg, H -> CHC, D3 -> C³D3, so D -> |C|D): the minimiser becomes
  C⁻¹eta and the applied steps eta_s u_s do not change.

Cubic solve (all in float64, S×S dense algebra):

1. Groups with D_s = 0 (exactly quadratic along u_s; or |D_s| <= threshold·max|D| with a relative
   ``threshold``) form the set N, the others R. Minimising m over eta_N for fixed eta_R is a
   quadratic problem, bounded below only if H_NN is positive definite (otherwise m -> -inf along
   ker D: the problem is infeasible and reported as such). Its solution
   eta_N = H_NN⁻¹ (g_N - H_NR eta_R) leaves the same cubic problem in eta_R with the Schur complement
   S̃ = H_RR - H_RN H_NN⁻¹ H_NR and ĝ = g_R - H_RN H_NN⁻¹ g_N.
2. In y = D_R eta_R the model is isotropic: -cᵀy + ½ yᵀK y + (λ/6)‖y‖³ with K = D_R⁻¹ S̃ D_R⁻¹,
   c = D_R⁻¹ ĝ. Its global minimiser is y = (K + μI)⁻¹ c with μ = (λ/2)‖y‖ and K + μI ⪰ 0
   (the standard characterisation for cubic regularisation). With K = Q diag(κ) Qᵀ and b = Qᵀc,
   μ solves the secular equation ‖b / (κ + μ)‖ = 2μ/λ on μ >= max(0, -κ_1).
3. The root is sought in the shift t = μ - max(0, -κ_1) >= 0 above the bottom of the admissible
   interval, with denominators κ̂ + t, κ̂ = κ + max(0, -κ_1) >= 0 (κ̂_1 = 0 exactly when K is
   indefinite). A root close to the pole is then resolved with full relative precision in t, which a
   root in μ would lose to cancellation. psi(t) = ‖b / (κ̂ + t)‖ - (max(0, -κ_1) + t)·2/λ is strictly
   decreasing, and psi(t) <= ‖b‖/t - 2t/λ < 0 at t = 2·sqrt(λ‖b‖/2): that end of the bracket changes
   sign by construction, and bisection finds the root to adjacent floats.
4. Hard case: b has no component along the bottom eigenspace of K (relative to ‖b‖, 128 eps) and
   psi stays <= 0 at t = 0 without that eigenspace. Then μ = max(0, -κ_1), K + μI is singular and
   the minimiser is y = Σ_{rest} b_i/κ̂_i q_i + τ v, with v a unit vector of the bottom eigenspace
   and τ >= 0 chosen so that ‖y‖ = 2μ/λ.

λ = 0 (no cubic term) needs H positive definite and gives H⁻¹ g. Invalid settings raise
``ValueError`` naming the parameter; a problem that cannot be solved (non-finite input, infeasible,
singular) returns ``ok=False`` with a reason, never NaN rates.

Example:
    >>> g = torch.tensor([1.0, 0.5], dtype=torch.float64)
    >>> H = torch.tensor([[2.0, 0.0], [0.0, -1.0]], dtype=torch.float64)      # indefinite
    >>> sol = solve_learning_rates(g, H, torch.tensor([8.0, 8.0], dtype=torch.float64))
    >>> sol.ok, sol.hard_case, round(sol.radius, 6)
    (True, False, 1.042932)
    >>> solve_learning_rates(g, H, None, regularization="newton").eta
    tensor([ 0.5000, -0.5000], dtype=torch.float64)
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["LRSolution", "REGULARIZATIONS", "cubic_model", "cube_root_scale", "solve_learning_rates"]

REGULARIZATIONS = ("cubic", "newton", "ridge")

_EPS = torch.finfo(torch.float64).eps
# b's weight on the bottom eigenspace of K, relative to ‖b‖, below which the hard-case formula is used:
# round-off level (an exact hard case computes to ~eps there). Above it the root in t is resolved next
# to the pole with full relative precision (stationarity to ~1e-16 measured at 1e-12); below it the
# hard-case y is the exact minimiser for c changed by at most this much (in the D-scaled coordinates).
_HARD_CASE_TOL = 128 * _EPS
# eigenvalues within this many eps·max|κ| of the smallest one belong to the bottom eigenspace
_EIG_TOL = 64.0
_MAX_BISECTIONS = 4000  # ample: each halves the bracket or its ratio, and stops at adjacent floats


class LRSolution(NamedTuple):
    """Result of :func:`solve_learning_rates`.

    Attributes:
        eta: float64 tensor (S,) of learning rates, or None when ``ok`` is False.
        ok: whether a solution was found.
        reason: why not ("" when ``ok``).
        radius: r = ‖D eta‖ for the cubic model (the groups treated as D_s = 0 contribute nothing);
            nan for "newton" / "ridge" and on failure.
        hard_case: whether the cubic minimiser lies on the boundary μ = -κ_1, where H + (λ/2) r D² is
            singular (g has no component along the bottom eigenvector of the scaled Hessian).
    """

    eta: Tensor | None
    ok: bool
    reason: str
    radius: float
    hard_case: bool


def _failure(reason: str) -> LRSolution:
    return LRSolution(None, False, reason, math.nan, False)


def cube_root_scale(d3: Tensor) -> Tensor:
    """D_s = |D3_s|^(1/3): the per-group scale of the cubic term (float64).

    The cube root is what makes the model invariant under u_s -> c_s u_s (D3_s -> c_s³ D3_s).
    """
    return torch.as_tensor(d3, dtype=torch.float64).abs().pow(1.0 / 3.0)


def cubic_model(eta: Tensor, g: Tensor, H: Tensor, D: Tensor, damping_int: float) -> float:
    """m(eta) = -g·eta + ½ etaᵀH eta + (λ/6)‖D eta‖³, in float64.

    Args:
        eta: (S,) learning rates.
        g: (S,) g_bar.
        H: (S, S) H_bar.
        D: (S,) the cubic scales D_s = |D3_s|^(1/3) (a vector, not the raw third derivatives).
        damping_int: λ >= 0.

    Returns:
        The model value as a Python float.
    """
    eta, g, H, D = (torch.as_tensor(q, dtype=torch.float64) for q in (eta, g, H, D))
    cubic = damping_int / 6.0 * torch.linalg.vector_norm(D * eta) ** 3
    return float(-(g @ eta) + 0.5 * (eta @ (H @ eta)) + cubic)


def _check_nonneg(value: float, name: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return value


def _as_vector(x: Tensor, name: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a tensor, got {type(x).__name__}")
    if x.dim() != 1 or x.numel() == 0:
        raise ValueError(f"{name} must have shape (S,) with S >= 1, got {tuple(x.shape)}")
    return x.detach().to(device="cpu", dtype=torch.float64)


def solve_learning_rates(g: Tensor, H: Tensor, d3: Tensor | None, *, damping_int: float = 1.0,
                         regularization: str = "cubic", ridge: float = 0.0,
                         threshold: float = 0.0) -> LRSolution:
    """Learning rates eta (S,) from g_bar (S,), H_bar (S, S) and the order-3 diagonal D3 (S,).

    ``"cubic"``: the global minimiser of m(eta) = -gᵀeta + ½ etaᵀH eta + (λ/6)‖D eta‖³ with
    D = |D3|^(1/3), eta = (H + (λ/2) r D²)⁻¹ g, r = ‖D eta‖, H + (λ/2) r D² ⪰ 0 (see the module
    docstring for the method). ``"newton"``: H⁻¹ g. ``"ridge"``: (H + ridge·I)⁻¹ g. Only the symmetric
    part (H + Hᵀ)/2 is used (the models depend on nothing else). Computed in float64 on the CPU; eta is
    returned on ``g``'s device.

    Args:
        g: (S,) g_bar_s = <grad_{T_s} L, u_s>.
        H: (S, S) H_bar_st = u_sᵀ H u_t.
        d3: (S,) D3_s = nabla³L[u_s, u_s, u_s] (its sign is irrelevant); required for "cubic", may be
            None otherwise.
        damping_int: λ >= 0, the weight of the cubic term (dimensionless). λ = 0 requires H positive
            definite. Used by "cubic" only.
        regularization: "cubic", "newton" or "ridge".
        ridge: >= 0, added to H's diagonal by "ridge" (ignored by the others).
        threshold: relative singularity threshold in [0, 1): groups with |D_s| <= threshold·max|D| are
            treated as D_s = 0 (with 0, only exact zeros; a relative threshold keeps the invariance).

    Returns:
        :class:`LRSolution`. ``ok`` is False, with a reason, for non-finite input ("non-finite input"),
        an infeasible cubic problem ("H not positive definite on ker D (infeasible)"), λ = 0 with H not
        positive definite, or a singular system ("singular H").

    Raises:
        ValueError: for a wrong shape, an unknown ``regularization``, or an invalid ``damping_int``,
            ``ridge`` or ``threshold`` (the message names the parameter).
    """
    if regularization not in REGULARIZATIONS:
        raise ValueError(f"regularization must be one of {REGULARIZATIONS}, got {regularization!r}")
    damping_int = _check_nonneg(damping_int, "damping_int")
    ridge = _check_nonneg(ridge, "ridge")
    threshold = _check_nonneg(threshold, "threshold")
    if threshold >= 1:
        raise ValueError(f"threshold must be in [0, 1), got {threshold!r}")
    device = g.device if isinstance(g, Tensor) else torch.device("cpu")
    g = _as_vector(g, "g")
    S = g.numel()
    if not isinstance(H, Tensor) or tuple(H.shape) != (S, S):
        got = tuple(H.shape) if isinstance(H, Tensor) else type(H).__name__
        raise ValueError(f"H must be a tensor of shape ({S}, {S}), got {got}")
    H = H.detach().to(device="cpu", dtype=torch.float64)
    if d3 is None:
        if regularization == "cubic":
            raise ValueError("d3 is required for regularization='cubic'")
    else:
        d3 = _as_vector(d3, "d3")
        if d3.numel() != S:
            raise ValueError(f"d3 must have shape ({S},) like g, got {tuple(d3.shape)}")
    if not all(bool(torch.isfinite(q).all()) for q in (g, H) + ((d3,) if d3 is not None else ())):
        return _failure("non-finite input")
    H = 0.5 * (H + H.mT)

    if regularization == "newton":
        solution = _linear_solve(H, g)
    elif regularization == "ridge":
        solution = _linear_solve(H + ridge * torch.eye(S, dtype=torch.float64), g)
    else:
        solution = _cubic(g, H, cube_root_scale(d3), damping_int, threshold)
    if solution.ok and not bool(torch.isfinite(solution.eta).all()):
        return _failure("non-finite result")
    if solution.ok:
        solution = solution._replace(eta=solution.eta.to(device))
    return solution


def _rank_tol(eigenvalues: Tensor) -> float:
    """Eigenvalues at or below this (in absolute value) are numerically zero for an S×S matrix."""
    return eigenvalues.numel() * _EPS * float(eigenvalues.abs().max())


def _linear_solve(A: Tensor, g: Tensor) -> LRSolution:
    """A⁻¹ g for a symmetric A, or failure if A is numerically singular."""
    eigenvalues = torch.linalg.eigvalsh(A)
    if float(eigenvalues.abs().min()) <= _rank_tol(eigenvalues):
        return _failure("singular H")
    return LRSolution(torch.linalg.solve(A, g), True, "", math.nan, False)


def _is_pd(A: Tensor) -> bool:
    """Whether a symmetric A is numerically positive definite (λ_min > S·eps·max|λ|)."""
    eigenvalues = torch.linalg.eigvalsh(A)
    return float(eigenvalues.min()) > _rank_tol(eigenvalues)


def _cubic(g: Tensor, H: Tensor, D: Tensor, lam: float, threshold: float) -> LRSolution:
    """Global minimiser of the cubic model; ker D eliminated by a Schur complement (module docstring)."""
    if lam == 0.0:
        if not _is_pd(H):
            return _failure("H not positive definite (damping_int = 0 leaves no cubic term)")
        eta = torch.linalg.solve(H, g)
        return LRSolution(eta, True, "", float(torch.linalg.vector_norm(D * eta)), False)
    d_max = float(D.max())
    regular = D > threshold * d_max if threshold > 0 else D > 0
    R = torch.nonzero(regular).flatten()
    N = torch.nonzero(~regular).flatten()
    infeasible = _failure("H not positive definite on ker D (infeasible)")
    if N.numel() and not _is_pd(H[N][:, N]):
        return infeasible
    if R.numel() == 0:                       # m is the quadratic model: H is PD (checked above)
        return LRSolution(torch.linalg.solve(H, g), True, "", 0.0, False)
    H_RR, g_R = H[R][:, R], g[R]
    if N.numel():
        # Schur complement: minimise over eta_N exactly, eta_N = H_NN⁻¹ (g_N - H_NR eta_R)
        factor = torch.linalg.cholesky(H[N][:, N])
        H_NR = H[N][:, R]
        X = torch.cholesky_solve(H_NR, factor)                       # H_NN⁻¹ H_NR
        w = torch.cholesky_solve(g[N, None], factor).flatten()       # H_NN⁻¹ g_N
        S_tilde = H_RR - H_NR.mT @ X
        S_tilde = 0.5 * (S_tilde + S_tilde.mT)
        g_hat = g_R - H_NR.mT @ w
    else:
        S_tilde, g_hat = H_RR, g_R
    D_R = D[R]
    K = S_tilde / D_R[:, None] / D_R[None, :]
    K = 0.5 * (K + K.mT)
    y, radius, hard = _isotropic_cubic(K, g_hat / D_R, 0.5 * lam)
    eta = torch.empty_like(g)
    eta[R] = y / D_R
    if N.numel():
        eta[N] = w - X @ eta[R]
    return LRSolution(eta, True, "", radius, hard)


def _isotropic_cubic(K: Tensor, c: Tensor, sigma: float) -> tuple[Tensor, float, bool]:
    """Global minimiser y of -cᵀy + ½ yᵀK y + (σ/3)‖y‖³ (σ = λ/2 > 0), its norm, and the hard-case flag.

    y = (K + μI)⁻¹ c with μ = σ‖y‖, K + μI ⪰ 0; μ from the secular equation in the shift t above
    μ_lo = max(0, -κ_1) (module docstring, steps 2-4).
    """
    kappa, Q = torch.linalg.eigh(K)
    b = Q.mT @ c
    kappa_1 = float(kappa[0])
    mu_lo = max(0.0, -kappa_1)
    # shifted eigenvalues κ̂ = κ + μ_lo >= 0; the bottom one exactly 0 when K is indefinite
    k_hat = (kappa - kappa[0]) if kappa_1 < 0 else kappa.clone()
    k_hat = k_hat.clamp(min=0.0)
    kh, bb = k_hat.tolist(), b.tolist()
    b_norm = math.sqrt(sum(v * v for v in bb))
    scale = float(kappa.abs().max())
    bottom = [i for i, k in enumerate(kh) if k <= _EIG_TOL * _EPS * scale]   # empty unless κ_1 ~<= 0

    def norm_y(t: float, skip: set[int] = frozenset()) -> float:
        total = 0.0
        for i, (k, v) in enumerate(zip(kh, bb)):
            if i in skip or v == 0.0:
                continue
            if k + t == 0.0:
                return math.inf
            total += (v / (k + t)) ** 2
        return math.sqrt(total)

    def psi(t: float, skip: set[int] = frozenset()) -> float:
        return norm_y(t, skip) - (mu_lo + t) / sigma

    if bottom:
        b_bottom = math.sqrt(sum(bb[i] ** 2 for i in bottom))
        psi_rest = psi(0.0, set(bottom))
        if psi_rest <= 0.0 and (b_bottom <= _HARD_CASE_TOL * b_norm or psi(0.0) <= 0.0):
            return _hard_case(Q, b, k_hat, bottom, mu_lo / sigma)
    if psi(0.0) <= 0.0:                      # only when b = 0 and K is PD: the minimiser is 0
        return torch.zeros_like(c), 0.0, False
    # psi(t) <= ‖b‖/t - t/σ: negative for t > sqrt(σ‖b‖); the loop is a guard against round-off
    hi = 2.0 * math.sqrt(sigma * b_norm)
    while psi(hi) >= 0.0:
        hi *= 2.0
    t = _bisect_decreasing(psi, 0.0, hi)
    y = Q @ (b / (k_hat + t))
    return y, float(torch.linalg.vector_norm(y)), False


def _hard_case(Q: Tensor, b: Tensor, k_hat: Tensor, bottom: list[int],
               radius: float) -> tuple[Tensor, float, bool]:
    """The minimiser on the boundary μ = -κ_1: y = Σ_{i not bottom} b_i/κ̂_i q_i + τ v, ‖y‖ = radius.

    v is the unit vector of the bottom eigenspace along b's (tiny) component there, or its first
    eigenvector if that component is exactly 0; either sign gives the same model value up to that
    component, and this choice is the one continuous in b.
    """
    S = b.numel()
    rest = torch.tensor([i not in bottom for i in range(S)])
    z = torch.zeros_like(b)
    z[rest] = b[rest] / k_hat[rest]
    tau_sq = radius ** 2 - float(z @ z)
    tau = math.sqrt(max(tau_sq, 0.0))
    index = torch.tensor(bottom)
    b_bottom = b[index]
    norm = float(torch.linalg.vector_norm(b_bottom))
    v = b_bottom / norm if norm > 0 else torch.nn.functional.one_hot(torch.tensor(0), len(bottom)).to(b)
    z[index] = tau * v
    y = Q @ z
    return y, radius, True


def _bisect_decreasing(f, lo: float, hi: float) -> float:
    """Root of a strictly decreasing f with f(lo+) > 0 > f(hi), to adjacent floats.

    Safeguarded bisection: the arithmetic midpoint while the bracket spans less than a factor 4, the
    geometric one (lo > 0) or hi/16 (lo = 0) otherwise, so that roots many orders of magnitude below
    hi are reached in a logarithmic number of steps. Returns the end with the smaller |f|.
    """
    f_lo, f_hi = math.inf, f(hi)
    for _ in range(_MAX_BISECTIONS):
        if lo > 0 and hi <= 4.0 * lo:
            mid = lo + 0.5 * (hi - lo)
        elif lo > 0:
            mid = math.sqrt(lo) * math.sqrt(hi)
        else:
            mid = hi / 16.0
        if not lo < mid < hi:
            break
        f_mid = f(mid)
        if f_mid == 0.0:
            return mid
        if f_mid > 0.0:
            lo, f_lo = mid, f_mid
        else:
            hi, f_hi = mid, f_mid
    return lo if (lo > 0 and abs(f_lo) < abs(f_hi)) else hi
