"""SGN: the stochastic generalized Gauss-Newton method (Gargiani, Zanelli, Diehl, Hutter, 2020).

Each iteration, on one minibatch (inputs, targets) with batch loss L, gradient g and GGN G:

1. momentum (optional): m_t = beta m_{t-1} + (1 - beta) g_t, m_hat = m_t / (1 - beta^t);
   with the default beta = 0, m_hat = g;
2. direction: Delta ~= -(G + rho I)^{-1} m_hat by (preconditioned) conjugate gradient from 0,
   capped at ``cg_max_iter`` iterations (``cg_warmup_iter`` during the first ``cg_warmup_steps``);
3. trial step theta + alpha Delta; its loss L_new on the *same* minibatch;
4. trust-region rule (Levenberg-Marquardt): ratio = (L_new - L) / pred, pred = the change predicted by
   the damped quadratic model; ratio < 1/4 -> rho *= 1.5, ratio > 3/4 -> rho = max(rho / 1.5, rho_min);
   the new rho applies from the next iteration; or, without it, rho follows a schedule;
5. backtracking Armijo line search on alpha (halving, at most 10 times), then the update.

The curvature products come from ``curvlab.curvature.GGNOperator`` (one linearisation per iteration:
outputs, loss and gradient from one forward/backward pass, then one tangent pass + one backward pass
per CG iteration) and the solver from ``curvlab.krylov.conjugate_gradient``. With the default traced
products, trial points cost less than a forward pass: the first layers are affine in theta, so their outputs at theta + alpha Delta are
``value + alpha * (their tangent along Delta)``, and CG's tangent passes have already computed those
tangents for each of its directions (``GGNOperator.outputs_on_line``). For an MLP on MNIST this skips
the 784-wide matmul, which is most of the network's forward cost.

Relation to the reference code (``gmatilde/SGN``, Theano) and to the specification:

* kept: same-minibatch trust ratio, no step rejection (by default), trust-region constants 1/4, 3/4,
  1.5, floor rho_min; the CG stopping rule ``||r||_inf <= cg_tol`` or the cap; no warm start; the
  "minimum" CG count of the reference is a *warm-up* count (``cg_warmup_iter`` for the first
  ``cg_warmup_steps`` = K_CG - 1 iterations); after ``max_backtracks`` failed halvings the last alpha is
  kept; the diagonal preconditioner 1 / (m_hat^2 + rho)^exponent.
* fixed, with the reference behaviour available as an explicit option:
  - the reference's Armijo right-hand side stays at L + c alpha_0 m_hat^T Delta while alpha shrinks
    (``line_search_rule="reference"``); the default tests L(theta + alpha Delta) <= L + c alpha g^T Delta;
  - the reference's predicted change is 1/2 (r + g)^T Delta with the CG residual of the m_hat system,
    inconsistent when beta > 0 (``prediction_rule="reference"``); the default is the model's own
    prediction alpha_0 g^T Delta + 1/2 alpha_0^2 Delta^T (G + rho I) Delta (identical when beta = 0 and
    alpha_0 = 1, as in every published run). It needs no extra product: Delta^T (G + rho I) Delta =
    -Delta^T (m_hat + r) with r = b - A Delta the final CG residual;
  - the reference scripts ignore their line-search flag; here ``line_search`` works.
* beyond the reference: a trial point whose loss is not finite fails the line search; if no finite
  point is found the step is rejected (parameters untouched) and, with the trust region, rho is raised
  by ``tr_factor`` (the reference raises an error when CG meets a NaN; here a non-finite direction
  ends as such a rejected trial); a step that starts at a non-finite loss or gradient is skipped;
  ``reject_uphill=True`` also rejects steps that increase the minibatch loss; invalid
  hyperparameters raise ``ValueError``; ``state_dict`` / ``load_state_dict`` resume bit for bit.
* ``sgn_reference_init`` follows the reference initialisation (N(0, 1) MLP weights under a fixed
  seed; Glorot-like uniform conv/FC weights under RandomState(1), FC bounds using the network's output
  size); the order of the random draws is our reading of the reference (see its docstring).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor, nn

from curvlab.curvature import (LOSSES, METHODS, GGNOperator, InputsLike, _as_inputs, flatten, loss_function,
                               unflatten_like)
from curvlab.krylov import conjugate_gradient

__all__ = ["SGN", "SGNStats", "rho_schedule_value", "trust_region_update", "sgn_reference_init"]

RHO_SCHEDULES = ("const", "linear", "cos")
LINE_SEARCH_RULES = ("armijo", "reference")
PREDICTION_RULES = ("model", "reference")


# --------------------------------------------------------------------------------------------------
# Pure pieces
# --------------------------------------------------------------------------------------------------

def rho_schedule_value(schedule: str, t: int, rho: float, rho_min: float, steps: int) -> float:
    """Damping at iteration t (1-based) under a schedule (used when the trust region is off).

    ``const``: rho. ``linear``: rho + (rho_min - rho) (t - 1) / (steps - 1), not below rho_min.
    ``cos``: rho cos(pi t / (2 steps)), replaced by rho_min when below it or when t > steps.
    """
    if schedule == "const":
        return rho
    if schedule == "linear":
        frac = (t - 1) / (steps - 1) if steps > 1 else (0.0 if t <= 1 else 1.0)
        return max(rho + (rho_min - rho) * frac, rho_min)
    if schedule == "cos":
        value = rho * math.cos(math.pi * t / (2 * steps))
        return rho_min if (t > steps or value < rho_min) else value
    raise ValueError(f"rho_schedule must be one of {RHO_SCHEDULES}, got {schedule!r}")


def trust_region_update(rho: float, ratio: float, rho_min: float, lower: float = 0.25,
                        upper: float = 0.75, factor: float = 1.5) -> float:
    """Levenberg-Marquardt rule: raise rho on a poor model fit, lower it (to rho_min) on a good one.

    ratio < lower (including -inf for a non-finite trial loss) -> rho * factor;
    ratio > upper -> max(rho / factor, rho_min); otherwise (and for NaN, i.e. 0/0) unchanged.
    """
    if ratio < lower:
        return rho * factor
    if ratio > upper:
        return max(rho / factor, rho_min)
    return rho


@dataclass
class SGNStats:
    """What one ``SGN.step`` did. ``as_dict()`` gives a JSON-ready dict.

    Attributes:
        step: iteration number (1-based).
        loss: minibatch loss at the start of the step.
        new_loss: minibatch loss after the step (= ``loss`` if the step was rejected).
        trial_loss: loss at the full trial step theta + alpha_0 Delta (the one the trust ratio uses).
        rho: damping used in this step's CG system.
        next_rho: damping for the next step (after the trust-region update or from the schedule).
        alpha: final step size (alpha_0 halved ``backtracks`` times).
        cg_iterations, cg_residual, cg_converged: the CG run (residual: ||b - A Delta||_inf).
        predicted_change: change of the loss predicted by the quadratic model for the trial step (< 0).
        trust_ratio: (trial_loss - loss) / predicted_change (NaN if nothing was predicted).
        backtracks: number of line-search halvings.
        accepted: whether the parameters were updated.
        grad_norm: ||g||_2 of the minibatch gradient.
    """

    step: int
    loss: float
    new_loss: float
    trial_loss: float
    rho: float
    next_rho: float
    alpha: float
    cg_iterations: int
    cg_residual: float
    cg_converged: bool
    predicted_change: float
    trust_ratio: float
    backtracks: int
    accepted: bool
    grad_norm: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _finite(x: float) -> bool:
    return math.isfinite(x)


# --------------------------------------------------------------------------------------------------
# The optimizer
# --------------------------------------------------------------------------------------------------

class SGN:
    """Stochastic generalized Gauss-Newton with CG, Levenberg-Marquardt damping and line search.

    Unlike a ``torch.optim.Optimizer`` it needs the model and the batch (the GGN products and the
    trial-step losses re-run the network), so ``step(inputs, targets)`` takes the minibatch.

    Args:
        model: the network; its trainable parameters (``requires_grad=True``) are updated in place.
            Must be deterministic (no dropout) and, with BatchNorm, in eval mode.
        loss: ``"cross_entropy"`` (logits) or a squared error from ``curvlab.curvature.LOSSES``;
            ``"mse"`` (mean over all entries, no 1/2) is the reference's regression loss.
        rho: initial Levenberg-Marquardt damping rho_0 (published runs 1e-4; the reference class
            default is 1e-3). Sets the trust region of the first steps: too large and the first steps are
            gradient steps of length 1/rho (slow start), too small and the first directions can overshoot
            before the trust region has raised it (the line search then backtracks). With a schedule it is
            the starting value.
        rho_min: floor for rho (published 1e-6; the reference class default 0). In float32 a floor much
            below ~1e-7 relative to the GGN's scale makes (G + rho I) numerically singular, and CG
            directions become noisy along the GGN's null space (roughly P - N C directions).
        cg_max_iter: CG iterations per step after the warm-up ("SGN(k)"; published 1-40). More gives a
            better Newton direction per step but costs about one GGN product (~1-2 gradient passes)
            each; with tiny rho, many iterations on a small minibatch overfit it (the line search then
            becomes active, seen on the regression tasks).
        cg_warmup_iter: CG iterations during the first ``cg_warmup_steps`` steps (the reference's
            ``MIN_CG_ITERS``, which is *not* a minimum; published 10).
        cg_warmup_steps: number of warm-up steps (the reference's ``K_CG - 1``; published K_CG = 10, so 9).
            0 disables the warm-up.
        cg_tol: CG stops when ||(G + rho I) Delta + m_hat||_inf <= cg_tol (absolute; 1e-6). In practice the
            iteration cap binds; a larger tolerance saves products once the gradient is small.
        preconditioner: diagonal CG preconditioner M = 1 / (m_hat^2 + rho)^precond_exponent (element-wise;
            unused in the published runs). The "diagonal" is the squared minibatch-mean gradient, a crude
            proxy; it depends on rho (as in the reference, where it was meant for use with the trust
            region). Can slow CG down when m_hat is a poor curvature proxy.
        precond_exponent: exponent in [0, 1] of the preconditioner (0 = no preconditioning).
        trust_region: adapt rho by the trust ratio (default, as in every published run; the reference
            class default was False). Adaptive damping assumes the same-minibatch quadratic model is
            informative: with tiny, very noisy minibatches the ratio is noise and rho random-walks.
        tr_lower, tr_upper, tr_factor: the rule's thresholds (1/4, 3/4) and factor (1.5).
        rho_schedule: damping schedule used when ``trust_region=False``: ``"const"``, ``"linear"``
            (rho_0 to rho_min over ``schedule_steps``) or ``"cos"``; a non-const schedule with the trust
            region on raises ``ValueError``.
        schedule_steps: the schedule's horizon K (the reference scripts' ``--K``, default 1000; the
            reference class default is 10).
        line_search: backtracking Armijo line search on alpha (default on; the reference scripts force it
            on whatever their flag says). Without it a step that overshoots is taken as is.
        line_search_rule: ``"armijo"`` (textbook: L(theta + alpha Delta) <= L + c alpha g^T Delta) or
            ``"reference"`` (the reference's fixed right-hand side L + c alpha_0 m_hat^T Delta, which is
            harder to satisfy as alpha shrinks and backtracks further on the regression tasks).
        armijo_c: sufficient-decrease constant c in (0, 1) (1e-4).
        backtrack_factor: alpha <- backtrack_factor * alpha per backtrack, in (0, 1) (0.5).
        max_backtracks: at most this many halvings (10); if all fail the last alpha (alpha_0 2^-10) is
            kept, as in the reference, unless its loss is not finite.
        alpha: initial step size alpha_0 (1). Values other than 1 are untested by the paper.
        beta: momentum in [0, 1) on the gradient, Adam-style bias-corrected (0, as in every published run).
            With beta > 0 the CG right-hand side is a stale average while the curvature is current.
        prediction_rule: ``"model"`` (default; see module docstring) or ``"reference"``.
        reject_uphill: also reject steps whose final minibatch loss exceeds the current one (extension;
            default off, as the reference never rejects).
        method: how GGN products are computed (``curvlab.curvature.METHODS``; ``"traced"`` is fastest).

    Example:
        >>> import torch
        >>> from curvlab import models
        >>> from curvlab.sgn import SGN
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <...>
        >>> model = models.mlp([4, 8, 3], "sigmoid")
        >>> x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
        >>> opt = SGN(model, "cross_entropy", cg_max_iter=3)
        >>> stats = opt.step(x, y)
        >>> stats.new_loss < stats.loss
        True
    """

    def __init__(self, model: nn.Module, loss: str, *, rho: float = 1e-4, rho_min: float = 1e-6,
                 cg_max_iter: int = 10, cg_warmup_iter: int = 10, cg_warmup_steps: int = 9,
                 cg_tol: float = 1e-6, preconditioner: bool = False, precond_exponent: float = 1.0,
                 trust_region: bool = True, tr_lower: float = 0.25, tr_upper: float = 0.75,
                 tr_factor: float = 1.5, rho_schedule: str = "const", schedule_steps: int = 1000,
                 line_search: bool = True, line_search_rule: str = "armijo", armijo_c: float = 1e-4,
                 backtrack_factor: float = 0.5, max_backtracks: int = 10, alpha: float = 1.0,
                 beta: float = 0.0, prediction_rule: str = "model", reject_uphill: bool = False,
                 method: str = "traced"):
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.loss = loss
        self.rho0, self.rho_min = rho, rho_min
        self.cg_max_iter, self.cg_warmup_iter, self.cg_warmup_steps = cg_max_iter, cg_warmup_iter, cg_warmup_steps
        self.cg_tol = cg_tol
        self.preconditioner, self.precond_exponent = preconditioner, precond_exponent
        self.trust_region = trust_region
        self.tr_lower, self.tr_upper, self.tr_factor = tr_lower, tr_upper, tr_factor
        self.rho_schedule, self.schedule_steps = rho_schedule, schedule_steps
        self.line_search, self.line_search_rule = line_search, line_search_rule
        self.armijo_c, self.backtrack_factor, self.max_backtracks = armijo_c, backtrack_factor, max_backtracks
        self.alpha, self.beta = alpha, beta
        self.prediction_rule, self.reject_uphill, self.method = prediction_rule, reject_uphill, method
        self._validate()

        self._names = [n for n, p in model.named_parameters() if p.requires_grad]
        if not self._names:
            raise ValueError("model has no trainable parameters")
        self._loss_fn = loss_function(loss)
        self._step = 0
        self._rho = float(rho)
        self._momentum: Optional[Tensor] = None          # flat (P,)
        self._momentum_steps = 0

    # ---------------------------------------------------------------------------------- validation
    def _validate(self) -> None:
        bad: list[str] = []

        def need(ok: bool, msg: str) -> None:
            if not ok:
                bad.append(msg)

        def is_int(v) -> bool:
            return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

        def is_num(v) -> bool:
            return isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool) \
                and math.isfinite(float(v))

        need(self.loss in LOSSES, f"loss must be one of {LOSSES}, got {self.loss!r}")
        need(is_num(self.rho0) and self.rho0 > 0, f"rho must be a finite number > 0, got {self.rho0!r}")
        need(is_num(self.rho_min) and self.rho_min >= 0, f"rho_min must be >= 0, got {self.rho_min!r}")
        if is_num(self.rho0) and is_num(self.rho_min):
            need(self.rho_min <= self.rho0, f"rho_min ({self.rho_min}) must not exceed rho ({self.rho0})")
        need(is_int(self.cg_max_iter) and self.cg_max_iter >= 1,
             f"cg_max_iter must be an int >= 1, got {self.cg_max_iter!r}")
        need(is_int(self.cg_warmup_iter) and self.cg_warmup_iter >= 1,
             f"cg_warmup_iter must be an int >= 1, got {self.cg_warmup_iter!r}")
        need(is_int(self.cg_warmup_steps) and self.cg_warmup_steps >= 0,
             f"cg_warmup_steps must be an int >= 0, got {self.cg_warmup_steps!r}")
        need(is_num(self.cg_tol) and self.cg_tol >= 0, f"cg_tol must be >= 0, got {self.cg_tol!r}")
        need(isinstance(self.preconditioner, bool), f"preconditioner must be a bool, got {self.preconditioner!r}")
        need(is_num(self.precond_exponent) and 0 <= self.precond_exponent <= 1,
             f"precond_exponent must be in [0, 1], got {self.precond_exponent!r}")
        need(isinstance(self.trust_region, bool), f"trust_region must be a bool, got {self.trust_region!r}")
        need(is_num(self.tr_lower) and is_num(self.tr_upper) and 0 <= self.tr_lower < self.tr_upper,
             f"tr_lower and tr_upper must satisfy 0 <= tr_lower < tr_upper, got {self.tr_lower!r}, {self.tr_upper!r}")
        need(is_num(self.tr_factor) and self.tr_factor > 1, f"tr_factor must be > 1, got {self.tr_factor!r}")
        need(self.rho_schedule in RHO_SCHEDULES,
             f"rho_schedule must be one of {RHO_SCHEDULES}, got {self.rho_schedule!r}")
        need(not (self.trust_region is True and self.rho_schedule != "const"),
             f"rho_schedule={self.rho_schedule!r} needs trust_region=False (the trust region sets rho)")
        need(is_int(self.schedule_steps) and self.schedule_steps >= 1,
             f"schedule_steps must be an int >= 1, got {self.schedule_steps!r}")
        need(isinstance(self.line_search, bool), f"line_search must be a bool, got {self.line_search!r}")
        need(self.line_search_rule in LINE_SEARCH_RULES,
             f"line_search_rule must be one of {LINE_SEARCH_RULES}, got {self.line_search_rule!r}")
        need(is_num(self.armijo_c) and 0 < self.armijo_c < 1, f"armijo_c must be in (0, 1), got {self.armijo_c!r}")
        need(is_num(self.backtrack_factor) and 0 < self.backtrack_factor < 1,
             f"backtrack_factor must be in (0, 1), got {self.backtrack_factor!r}")
        need(is_int(self.max_backtracks) and self.max_backtracks >= 0,
             f"max_backtracks must be an int >= 0, got {self.max_backtracks!r}")
        need(is_num(self.alpha) and self.alpha > 0, f"alpha must be > 0, got {self.alpha!r}")
        need(is_num(self.beta) and 0 <= self.beta < 1, f"beta must be in [0, 1), got {self.beta!r}")
        need(self.prediction_rule in PREDICTION_RULES,
             f"prediction_rule must be one of {PREDICTION_RULES}, got {self.prediction_rule!r}")
        need(isinstance(self.reject_uphill, bool), f"reject_uphill must be a bool, got {self.reject_uphill!r}")
        need(self.method in METHODS, f"method must be one of {METHODS}, got {self.method!r}")
        if bad:
            raise ValueError("invalid SGN hyperparameters: " + "; ".join(bad))

    # ---------------------------------------------------------------------------------- accessors
    @property
    def rho(self) -> float:
        """Damping the next step will use."""
        return self.rho_schedule_at(self._step + 1)

    @property
    def step_count(self) -> int:
        """Number of steps taken so far."""
        return self._step

    def hyperparameters(self) -> dict[str, Any]:
        """The constructor arguments (except model), e.g. for a run record."""
        return dict(loss=self.loss, rho=self.rho0, rho_min=self.rho_min, cg_max_iter=self.cg_max_iter,
                    cg_warmup_iter=self.cg_warmup_iter, cg_warmup_steps=self.cg_warmup_steps,
                    cg_tol=self.cg_tol, preconditioner=self.preconditioner,
                    precond_exponent=self.precond_exponent, trust_region=self.trust_region,
                    tr_lower=self.tr_lower, tr_upper=self.tr_upper, tr_factor=self.tr_factor,
                    rho_schedule=self.rho_schedule, schedule_steps=self.schedule_steps,
                    line_search=self.line_search, line_search_rule=self.line_search_rule,
                    armijo_c=self.armijo_c, backtrack_factor=self.backtrack_factor,
                    max_backtracks=self.max_backtracks, alpha=self.alpha, beta=self.beta,
                    prediction_rule=self.prediction_rule, reject_uphill=self.reject_uphill,
                    method=self.method)

    def cg_iterations_at(self, t: int) -> int:
        """CG iteration cap of step t (1-based): the warm-up count during the first steps."""
        return self.cg_warmup_iter if t <= self.cg_warmup_steps else self.cg_max_iter

    # ---------------------------------------------------------------------------------- the step
    def step(self, inputs: InputsLike, targets: Tensor) -> SGNStats:
        """One SGN iteration on the minibatch (inputs, targets); updates the model in place.

        Vectors are handled as flat (P,) tensors: theta, g, m_hat, Delta and the CG residual.
        """
        t = self._step + 1
        self._step = t
        named = dict(self.model.named_parameters())
        live = [named[n] for n in self._names]
        theta_flat = flatten([p.detach() for p in live])            # (P,) a copy, independent of live
        theta = unflatten_like(theta_flat, live)
        rho = self.rho_schedule_at(t)

        op = GGNOperator(self.model, self.loss, inputs, targets, params=theta, method=self.method)
        loss = float(op.loss)
        g = flatten(op.gradient)                                     # (P,)
        gg = float(torch.dot(g, g))
        if not (_finite(loss) and _finite(gg)):
            # Nothing can be predicted at a non-finite point: skip, keep the parameters.
            return SGNStats(step=t, loss=loss, new_loss=loss, trial_loss=math.nan, rho=rho, next_rho=rho,
                            alpha=0.0, cg_iterations=0, cg_residual=math.nan, cg_converged=False,
                            predicted_change=math.nan, trust_ratio=math.nan, backtracks=0, accepted=False,
                            grad_norm=math.sqrt(gg) if gg >= 0 else math.nan)

        # 1. momentum, Adam-style bias correction (m_hat = g when beta = 0)
        if self.beta > 0:
            if self._momentum is None:
                self._momentum = torch.zeros_like(g)
            self._momentum.mul_(self.beta).add_(g, alpha=1.0 - self.beta)
            self._momentum_steps += 1
            m_hat = self._momentum / (1.0 - self.beta ** self._momentum_steps)
        else:
            m_hat = g

        # 2. direction: (G + rho I) Delta = -m_hat by CG from 0
        def damped(v: Tensor) -> Tensor:                             # (P,) -> (P,)
            return flatten(op(unflatten_like(v, live))).add_(v, alpha=rho)

        precondition = None
        if self.preconditioner:
            inv_diag = (m_hat * m_hat + rho).pow_(-self.precond_exponent)

            def precondition(r: Tensor) -> Tensor:
                return inv_diag * r

        # on_step lets op follow Delta = sum_k a_k p_k at the network's first (affine) layers, so the
        # trial points below skip their matmul (see GGNOperator.outputs_on_line).
        delta, info = conjugate_gradient(damped, -m_hat, max_iter=self.cg_iterations_at(t), tol=self.cg_tol,
                                         preconditioner=precondition, on_step=op.record_step)

        # predicted change of the loss for the trial step alpha_0 Delta
        a0 = float(self.alpha)
        g_delta = float(torch.dot(g, delta))
        m_delta = g_delta if m_hat is g else float(torch.dot(m_hat, delta))
        r_delta = float(torch.dot(info.residual, delta))
        if self.prediction_rule == "model":
            delta_a_delta = -(m_delta + r_delta)                     # Delta^T (G + rho I) Delta
            predicted = a0 * g_delta + 0.5 * a0 * a0 * delta_a_delta
        else:                                                        # 1/2 (r_ref + g)^T Delta
            predicted = 0.5 * (g_delta - r_delta)

        # 3. trial points theta + alpha Delta are written into the model (restored below if rejected)
        model_inputs = _as_inputs(inputs)

        def loss_at(step_size: float) -> float:
            trial = unflatten_like(torch.add(theta_flat, delta, alpha=step_size), live)
            with torch.no_grad():
                for p, value in zip(live, trial):
                    p.copy_(value)
                if op.has_line_shortcut:
                    outputs = op.outputs_on_line(trial, step_size)
                else:
                    outputs = self.model(*model_inputs)
                return float(self._loss_fn(outputs, targets))

        accepted = False
        try:
            alpha = a0
            trial_loss = new_loss = loss_at(alpha)

            # 4. trust-region update of rho (same minibatch; the step itself is not rejected)
            if not _finite(trial_loss):
                ratio = -math.inf
            elif predicted != 0.0:
                ratio = (trial_loss - loss) / predicted
            else:
                ratio = math.nan
            next_rho = rho
            if self.trust_region:
                next_rho = trust_region_update(rho, ratio, self.rho_min, self.tr_lower, self.tr_upper,
                                               self.tr_factor)

            # 5. backtracking line search on alpha
            backtracks = 0
            if self.line_search:
                if self.line_search_rule == "armijo":
                    def sufficient(a: float, value: float) -> bool:
                        return value <= loss + self.armijo_c * a * g_delta
                else:
                    fixed_rhs = loss + self.armijo_c * a0 * m_delta

                    def sufficient(a: float, value: float) -> bool:
                        return value <= fixed_rhs
                while not sufficient(alpha, new_loss) and backtracks < self.max_backtracks:
                    alpha *= self.backtrack_factor
                    new_loss = loss_at(alpha)
                    backtracks += 1
            accepted = _finite(new_loss) and not (self.reject_uphill and new_loss > loss)
        finally:
            if not accepted:                                         # leave the parameters as they were
                with torch.no_grad():
                    for p, value in zip(live, theta):
                        p.copy_(value)

        if not accepted and self.trust_region and next_rho <= rho:
            next_rho = rho * self.tr_factor
        if self.trust_region:
            self._rho = next_rho
        else:
            next_rho = self.rho_schedule_at(t + 1)
        return SGNStats(step=t, loss=loss, new_loss=new_loss if accepted else loss, trial_loss=trial_loss,
                        rho=rho, next_rho=next_rho, alpha=alpha, cg_iterations=info.iterations,
                        cg_residual=info.residual_norm, cg_converged=info.converged,
                        predicted_change=predicted, trust_ratio=ratio, backtracks=backtracks,
                        accepted=accepted, grad_norm=math.sqrt(gg))

    def rho_schedule_at(self, t: int) -> float:
        """Damping of step t: the trust-region state, or the schedule's value."""
        if self.trust_region:
            return self._rho
        return rho_schedule_value(self.rho_schedule, t, self.rho0, self.rho_min, self.schedule_steps)

    # ---------------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: step count, rho, momentum (with the model's own state_dict)."""
        return {"step": self._step, "rho": self._rho,
                "momentum": None if self._momentum is None else self._momentum.clone(),
                "momentum_steps": self._momentum_steps, "hyperparameters": self.hyperparameters()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict()`` output (hyperparameters come from the constructor, not the dict)."""
        missing = {"step", "rho", "momentum", "momentum_steps"} - set(state)
        if missing:
            raise ValueError(f"state dict lacks {sorted(missing)}")
        momentum = state["momentum"]
        if momentum is not None:
            named = dict(self.model.named_parameters())
            params = [named[n] for n in self._names]
            n = sum(p.numel() for p in params)
            if not isinstance(momentum, Tensor) or momentum.shape != (n,):
                raise ValueError(f"momentum in the state dict must be a flat tensor of {n} entries")
            momentum = momentum.detach().to(device=params[0].device, dtype=params[0].dtype).clone()
        self._step = int(state["step"])
        self._rho = float(state["rho"])
        self._momentum = momentum
        self._momentum_steps = int(state["momentum_steps"])


# --------------------------------------------------------------------------------------------------
# The reference initialisation
# --------------------------------------------------------------------------------------------------

def sgn_reference_init(model: nn.Module, seed: Optional[int] = None) -> nn.Module:
    """Initialise ``model`` in place as the SGN reference code does; returns the model.

    * MLP (only ``nn.Linear`` layers): every weight ~ N(0, 1) (not scaled by fan-in), biases 0, drawn
      from ``numpy.random.RandomState(seed)`` with seed 10 by default (the reference seeds its MLP
      internally, so every run starts from the same weights). SGD's weak MNIST baselines depend on
      this init.
    * ConvNet (``nn.Conv2d`` then ``nn.Linear`` layers): ``RandomState(seed)`` with seed 1 by default;
      conv weights ~ U(+-sqrt(6 / (n_filters n_in k_h k_w))); FC weights ~ U(+-sqrt(6 / (fan_in +
      n_classes))) with n_classes the *network's* output size for every FC layer; biases 0.

    Draw order (our reading of the reference; the distributions, bounds and seeds are as specified):
    layers in registration order, convs before FC layers, one array per weight, FC weights drawn in the
    Theano layout (fan_in, fan_out) and transposed into PyTorch's (fan_out, fan_in); biases not drawn.
    Other parameterised layers raise ``ValueError``.
    """
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    covered = {id(p) for m in linears + convs for p in m.parameters(recurse=False)}
    others = [n for n, p in model.named_parameters() if id(p) not in covered]
    if others or not linears:
        raise ValueError("sgn_reference_init supports networks of nn.Linear (and nn.Conv2d) layers only"
                         + (f"; other parameters: {others}" if others else ""))
    rng = np.random.RandomState(seed if seed is not None else (1 if convs else 10))

    def assign(param: Tensor, values: np.ndarray) -> None:
        with torch.no_grad():
            param.copy_(torch.from_numpy(np.ascontiguousarray(values)).to(param.dtype))

    n_classes = linears[-1].out_features
    for conv in convs:
        n_filters, n_in, kh, kw = conv.weight.shape
        bound = math.sqrt(6.0 / (n_filters * n_in * kh * kw))
        assign(conv.weight, rng.uniform(-bound, bound, size=(n_filters, n_in, kh, kw)))
        if conv.bias is not None:
            nn.init.zeros_(conv.bias)
    for lin in linears:
        fan_in, fan_out = lin.in_features, lin.out_features
        if convs:
            bound = math.sqrt(6.0 / (fan_in + n_classes))
            w = rng.uniform(-bound, bound, size=(fan_in, fan_out))
        else:
            w = rng.standard_normal((fan_in, fan_out))
        assign(lin.weight, w.T)
        if lin.bias is not None:
            nn.init.zeros_(lin.bias)
    return model
