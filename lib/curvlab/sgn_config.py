"""The hyperparameters of SGN as one frozen, validated value (``SGNConfig``).

A run record stores ``config.as_dict()`` whole; ``SGNConfig.from_dict`` rebuilds it, so a record says
exactly which optimizer produced it. Every field is checked once, in ``__post_init__``: an invalid value
raises ``ValueError`` naming the parameter, and integral / real values are normalised to ``int`` /
``float`` (so ``as_dict()`` is JSON-ready even when numpy scalars were passed).
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

from curvlab._config import ConfigMixin
from curvlab.curvature import METHODS

__all__ = ["SGNConfig", "RHO_SCHEDULES", "LINE_SEARCH_RULES", "PREDICTION_RULES"]

RHO_SCHEDULES = ("const", "linear", "cos")
LINE_SEARCH_RULES = ("armijo", "reference")
PREDICTION_RULES = ("model", "reference")

_INTS = ("cg_max_iter", "cg_warmup_iter", "cg_warmup_steps", "schedule_steps", "max_backtracks")
_REALS = ("rho", "rho_min", "cg_tol", "precond_exponent", "tr_lower", "tr_upper", "tr_factor", "armijo_c",
          "backtrack_factor", "alpha", "beta")
_BOOLS = ("preconditioner", "trust_region", "line_search", "reject_uphill")


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(float(v))


@dataclass(frozen=True)
class SGNConfig(ConfigMixin):
    """Hyperparameters of ``curvlab.sgn.SGN`` (defaults: the published runs of Gargiani et al. 2020).

    Each iteration solves (G + rho I) Delta = -m_hat by CG, tries theta + alpha Delta, adapts rho by the
    trust ratio (L_new - L) / pred and backtracks alpha until an Armijo condition holds (see ``curvlab.sgn``).

    Attributes:
        rho: initial Levenberg-Marquardt damping rho_0 (published runs 1e-4; the reference class
            default is 1e-3). Sets the trust region of the first steps: too large and the first steps are
            gradient steps of length 1/rho (slow start), too small and the first directions can overshoot
            before the trust region has raised it (the line search then backtracks). With a schedule it is
            the starting value.
        rho_min: floor for rho, 0 <= rho_min <= rho (published 1e-6; the reference class default 0). In
            float32 a floor much below ~1e-7 relative to the GGN's scale makes (G + rho I) numerically
            singular, and CG directions become noisy along the GGN's null space (roughly P - N C
            directions).
        cg_max_iter: CG iterations per step after the warm-up ("SGN(k)"; published 1-40). More gives a
            better Newton direction per step but costs about one GGN product (~1-2 gradient passes)
            each; with tiny rho, many iterations on a small minibatch overfit it.
        cg_warmup_iter: CG iterations during the first ``cg_warmup_steps`` steps (the reference's
            ``MIN_CG_ITERS``, which is *not* a minimum; published 10).
        cg_warmup_steps: number of warm-up steps (the reference's ``K_CG - 1``; published K_CG = 10, so 9).
            0 disables the warm-up.
        cg_tol: CG stops when ||(G + rho I) Delta + m_hat||_inf <= cg_tol (absolute; 1e-6). In practice the
            iteration cap binds; a larger tolerance saves products once the gradient is small.
        preconditioner: diagonal CG preconditioner M = 1 / (m_hat^2 + rho)^precond_exponent (element-wise;
            unused in the published runs). The "diagonal" is the squared minibatch-mean gradient, a crude
            proxy that depends on rho, as in the reference. Can slow CG down when m_hat is a poor
            curvature proxy.
        precond_exponent: exponent in [0, 1] of the preconditioner (0 = no preconditioning).
        trust_region: adapt rho by the trust ratio (default, as in every published run; the reference
            class default was False). Adaptive damping assumes the same-minibatch quadratic model is
            informative: with tiny, very noisy minibatches the ratio is noise and rho random-walks.
        tr_lower: ratio below which rho is raised (1/4); 0 <= tr_lower < tr_upper.
        tr_upper: ratio above which rho is lowered (3/4).
        tr_factor: rho *= tr_factor or rho /= tr_factor (1.5); > 1.
        rho_schedule: damping schedule used when ``trust_region=False``: ``"const"``, ``"linear"``
            (rho_0 to rho_min over ``schedule_steps``) or ``"cos"``; a non-const schedule with the trust
            region on is invalid.
        schedule_steps: the schedule's horizon K >= 1 (the reference scripts' ``--K``, default 1000; the
            reference class default is 10).
        line_search: backtracking line search on alpha (default on; the reference scripts force it on
            whatever their flag says). Without it a step that overshoots is taken as is.
        line_search_rule: ``"armijo"`` (textbook: L(theta + alpha Delta) <= L + c alpha g^T Delta) or
            ``"reference"`` (the reference's fixed right-hand side L + c alpha_0 m_hat^T Delta, which is
            harder to satisfy as alpha shrinks and backtracks further on the regression tasks).
        armijo_c: sufficient-decrease constant c in (0, 1) (1e-4).
        backtrack_factor: alpha <- backtrack_factor * alpha per backtrack, in (0, 1) (0.5).
        max_backtracks: at most this many backtracks (10, >= 0); if all fail the last alpha
            (alpha_0 2^-10) is kept, as in the reference, unless its loss is not finite.
        alpha: initial step size alpha_0 > 0 (1). Values other than 1 are untested by the paper.
        beta: momentum in [0, 1) on the gradient, m_t = beta m_{t-1} + (1 - beta) g_t, Adam-style
            bias-corrected m_hat = m_t / (1 - beta^t) (0, as in every published run). With beta > 0 the
            CG right-hand side is a stale average while the curvature is current.
        prediction_rule: ``"model"``: pred = alpha_0 g^T Delta + 1/2 alpha_0^2 Delta^T (G + rho I) Delta,
            the damped quadratic model's change; or ``"reference"``: 1/2 (r + g)^T Delta with r the CG
            residual of the m_hat system (equal when beta = 0 and alpha_0 = 1).
        reject_uphill: also reject steps whose final minibatch loss exceeds the current one (extension;
            default off, as the reference never rejects).
        method: how GGN products are computed (``curvlab.curvature.METHODS``; ``"traced"`` is fastest).

    Example:
        >>> from curvlab.sgn_config import SGNConfig
        >>> config = SGNConfig(cg_max_iter=3)
        >>> SGNConfig.from_dict(config.as_dict()) == config
        True
        >>> SGNConfig(cg_max_iter=0)
        Traceback (most recent call last):
        ...
        ValueError: invalid SGN hyperparameters: cg_max_iter must be an int >= 1, got 0
    """

    WHAT = "SGN"      # names the method in from_dict / replace errors (not a field)

    rho: float = 1e-4
    rho_min: float = 1e-6
    cg_max_iter: int = 10
    cg_warmup_iter: int = 10
    cg_warmup_steps: int = 9
    cg_tol: float = 1e-6
    preconditioner: bool = False
    precond_exponent: float = 1.0
    trust_region: bool = True
    tr_lower: float = 0.25
    tr_upper: float = 0.75
    tr_factor: float = 1.5
    rho_schedule: str = "const"
    schedule_steps: int = 1000
    line_search: bool = True
    line_search_rule: str = "armijo"
    armijo_c: float = 1e-4
    backtrack_factor: float = 0.5
    max_backtracks: int = 10
    alpha: float = 1.0
    beta: float = 0.0
    prediction_rule: str = "model"
    reject_uphill: bool = False
    method: str = "traced"

    def __post_init__(self) -> None:
        bad = _problems(self)
        if bad:
            raise ValueError("invalid SGN hyperparameters: " + "; ".join(bad))
        # Normalise numpy scalars and ints-as-reals once validated (values, hence the numerics, unchanged).
        for name in _INTS:
            object.__setattr__(self, name, int(getattr(self, name)))
        for name in _REALS:
            object.__setattr__(self, name, float(getattr(self, name)))

    def cg_iterations_at(self, t: int) -> int:
        """CG iteration cap of step t (1-based).

        ``cg_warmup_iter`` for t <= ``cg_warmup_steps``, then ``cg_max_iter``.
        """
        return self.cg_warmup_iter if t <= self.cg_warmup_steps else self.cg_max_iter


def _problems(c: SGNConfig) -> list[str]:
    """One message per invalid field, each naming the field."""
    bad: list[str] = []

    def need(ok: bool, msg: str) -> None:
        if not ok:
            bad.append(msg)

    need(_is_real(c.rho) and c.rho > 0, f"rho must be a finite number > 0, got {c.rho!r}")
    need(_is_real(c.rho_min) and c.rho_min >= 0, f"rho_min must be >= 0, got {c.rho_min!r}")
    if _is_real(c.rho) and _is_real(c.rho_min):
        need(c.rho_min <= c.rho, f"rho_min ({c.rho_min}) must not exceed rho ({c.rho})")
    for name, low in (("cg_max_iter", 1), ("cg_warmup_iter", 1), ("cg_warmup_steps", 0),
                      ("schedule_steps", 1), ("max_backtracks", 0)):
        value = getattr(c, name)
        need(_is_int(value) and value >= low, f"{name} must be an int >= {low}, got {value!r}")
    for name in _BOOLS:
        need(isinstance(getattr(c, name), bool), f"{name} must be a bool, got {getattr(c, name)!r}")
    need(_is_real(c.cg_tol) and c.cg_tol >= 0, f"cg_tol must be >= 0, got {c.cg_tol!r}")
    need(_is_real(c.precond_exponent) and 0 <= c.precond_exponent <= 1,
         f"precond_exponent must be in [0, 1], got {c.precond_exponent!r}")
    need(_is_real(c.tr_lower) and _is_real(c.tr_upper) and 0 <= c.tr_lower < c.tr_upper,
         f"tr_lower and tr_upper must satisfy 0 <= tr_lower < tr_upper, got {c.tr_lower!r}, {c.tr_upper!r}")
    need(_is_real(c.tr_factor) and c.tr_factor > 1, f"tr_factor must be > 1, got {c.tr_factor!r}")
    need(c.rho_schedule in RHO_SCHEDULES,
         f"rho_schedule must be one of {RHO_SCHEDULES}, got {c.rho_schedule!r}")
    need(not (c.trust_region is True and c.rho_schedule != "const"),
         f"rho_schedule={c.rho_schedule!r} needs trust_region=False (the trust region sets rho)")
    need(c.line_search_rule in LINE_SEARCH_RULES,
         f"line_search_rule must be one of {LINE_SEARCH_RULES}, got {c.line_search_rule!r}")
    need(_is_real(c.armijo_c) and 0 < c.armijo_c < 1, f"armijo_c must be in (0, 1), got {c.armijo_c!r}")
    need(_is_real(c.backtrack_factor) and 0 < c.backtrack_factor < 1,
         f"backtrack_factor must be in (0, 1), got {c.backtrack_factor!r}")
    need(_is_real(c.alpha) and c.alpha > 0, f"alpha must be > 0, got {c.alpha!r}")
    need(_is_real(c.beta) and 0 <= c.beta < 1, f"beta must be in [0, 1), got {c.beta!r}")
    need(c.prediction_rule in PREDICTION_RULES,
         f"prediction_rule must be one of {PREDICTION_RULES}, got {c.prediction_rule!r}")
    need(c.method in METHODS, f"method must be one of {METHODS}, got {c.method!r}")
    return bad
