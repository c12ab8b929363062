"""SGN: the stochastic generalized Gauss-Newton method (Gargiani, Zanelli, Diehl, Hutter, 2020).

Each iteration, on one minibatch (inputs, targets) with batch loss L, gradient g and GGN G:

1. momentum (optional): m_t = beta m_{t-1} + (1 - beta) g_t, m_hat = m_t / (1 - beta^t);
   with the default beta = 0, m_hat = g;
2. direction: Delta ~= -(G + rho I)^{-1} m_hat by (preconditioned) conjugate gradient from 0,
   capped at ``cg_max_iter`` iterations (``cg_warmup_iter`` during the first ``cg_warmup_steps``);
3. trial step theta + alpha_0 Delta; its loss L_new on the *same* minibatch;
4. trust-region rule (Levenberg-Marquardt): ratio = (L_new - L) / pred, pred = the change predicted by
   the damped quadratic model; ratio < 1/4 -> rho *= 1.5, ratio > 3/4 -> rho = max(rho / 1.5, rho_min);
   the new rho applies from the next iteration; or, without it, rho follows a schedule;
5. backtracking Armijo line search on alpha (halving, at most 10 times), then the update.

The hyperparameters are one frozen value, ``SGNConfig`` (``curvlab.sgn_config``); the scalar rules
(schedules, trust region, prediction, sufficient decrease) are pure functions in ``curvlab.sgn_rules``.
The curvature products come from ``curvlab.curvature.GGNOperator`` (one linearisation per iteration:
outputs, loss and gradient from one forward/backward pass, then one tangent pass + one backward pass
per CG iteration, except the last, which needs only the curvature p^T G p = ||J p||^2_H and skips
the backward pass) and the solver from ``curvlab.krylov.conjugate_gradient``. With the default traced
products, trial points cost less than a forward pass: the first layers are affine in theta, so their
outputs at theta + alpha Delta are ``value + alpha * (their tangent along Delta)``, and CG's tangent
passes have already computed those tangents for each of its directions
(``curvlab._line_search.LineShortcut``).
For an MLP on MNIST this skips the 784-wide matmul, which is most of the network's forward cost.

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
    alpha_0 = 1, as in every published run). It needs no extra product: Delta^T G Delta =
    ||J Delta||^2_H with J Delta accumulated from CG's tangent passes (for the reference rule,
    r^T Delta = -m_hat^T Delta - Delta^T (G + rho I) Delta; equal to the reference's final-residual
    form in exact arithmetic, without the backward pass that residual costs);
  - the reference scripts ignore their line-search flag; here ``line_search`` works.
* beyond the reference: a trial point whose loss is not finite fails the line search; if no finite
  point is found the step is rejected (parameters untouched) and, with the trust region, rho is raised
  by ``tr_factor`` (the reference raises an error when CG meets a NaN; here a non-finite direction
  ends as such a rejected trial); a step that starts at a non-finite loss or gradient is skipped;
  ``reject_uphill=True`` also rejects steps that increase the minibatch loss; invalid
  hyperparameters, an empty batch, a non-deterministic model and an invalid checkpoint raise
  ``ValueError``; ``state_dict`` / ``load_state_dict`` resume bit for bit.
* ``sgn_reference_init`` (``curvlab.sgn_init``) follows the reference initialisation.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Optional, Union

import torch
from torch import Tensor, nn

from curvlab import sgn_rules as rules
from curvlab._config import setup
from curvlab._line_search import LineShortcut
from curvlab.curvature import GGNOperator, InputsLike
from curvlab.krylov import CGInfo, conjugate_gradient
from curvlab.linalg import flatten, unflatten_like
from curvlab.sgn_checks import check_batch, check_deterministic, check_state, nondeterministic_modules
from curvlab.sgn_config import LINE_SEARCH_RULES, PREDICTION_RULES, RHO_SCHEDULES, SGNConfig
from curvlab.sgn_init import sgn_reference_init
from curvlab.sgn_rules import rho_schedule_value, trust_region_update

__all__ = ["SGN", "SGNConfig", "SGNStats", "rho_schedule_value", "trust_region_update", "sgn_reference_init",
           "nondeterministic_modules", "RHO_SCHEDULES", "LINE_SEARCH_RULES", "PREDICTION_RULES"]


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
        cg_iterations: products in the CG run.
        cg_residual: ||b - A Delta||_inf of the returned direction when CG stopped before its iteration
            cap; NaN when it ran to the cap, whose last iteration needs only the curvature p^T A p and
            skips the backward pass that the residual would cost.
        cg_converged: whether ``cg_residual <= cg_tol`` (False when the cap was reached).
        predicted_change: change of the loss predicted by the quadratic model for the trial step (< 0).
        trust_ratio: (trial_loss - loss) / predicted_change (NaN if nothing was predicted).
        backtracks: number of line-search halvings.
        accepted: whether the parameters were updated.
        grad_norm: ||g||_2 of the minibatch gradient.
        line_shortcut: whether the trial losses were evaluated from the moved affine first layers
            (``curvlab._line_search.LineShortcut``) rather than by full forward passes.
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
    line_shortcut: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The fields as a plain dict."""
        return asdict(self)


@dataclass
class _Point:
    """The linearisation at the current theta: what every later part of a step reads."""

    live: list[Tensor]              # the model's parameters (written at trial points)
    theta_flat: Tensor              # (P,) a copy of theta, independent of ``live``
    theta: tuple[Tensor, ...]       # that copy, shaped like ``live``
    op: GGNOperator
    line: LineShortcut              # follows CG's Delta at the first layers for the trial points
    loss: float                     # L(theta)
    g: Tensor                       # (P,) gradient
    gg: float                       # g^T g


@dataclass
class _Line:
    """Outcome of the trial step and the line search."""

    trial_loss: float
    alpha: float
    new_loss: float
    backtracks: int
    accepted: bool
    shortcut: bool


def _as_tuple(inputs: InputsLike) -> tuple[Tensor, ...]:
    return (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)


class SGN:
    """Stochastic generalized Gauss-Newton with CG, Levenberg-Marquardt damping and line search.

    Unlike a ``torch.optim.Optimizer`` it needs the model and the batch (the GGN products and the
    trial-step losses re-run the network), so ``step(inputs, targets)`` takes the minibatch.

    The model must be a deterministic function of its parameters during a step: each step evaluates it
    several times (linearisation, CG products, trial points) and assumes the same function each time.
    ``step`` therefore *refuses* (``ValueError`` naming the modules) BatchNorm layers in training mode
    that track running statistics (they would be updated at every evaluation), and dropout, ``RReLU``
    and attention dropout in training mode; call ``.eval()`` on them (BatchNorm then normalises with
    its running statistics) or build BatchNorm with ``track_running_stats=False`` (batch statistics, a
    deterministic function of the minibatch).

    Args:
        model: the network; its trainable parameters (``requires_grad=True``) are updated in place.
        loss: ``"cross_entropy"`` (logits) or a squared error from ``curvlab.curvature.LOSSES``;
            ``"mse"`` (mean over all entries, no 1/2) is the reference's regression loss.
        config: the hyperparameters (``SGNConfig``, or a dict for ``SGNConfig.from_dict``); default
            ``SGNConfig()``, the published settings.
        **overrides: fields of ``SGNConfig`` replacing the config's (``SGN(model, loss, rho=1e-3)``).

    Raises:
        ValueError: a model that is not an ``nn.Module`` or has no trainable parameters, an unknown
            loss, or an invalid hyperparameter (named).
        TypeError: an override that is not a field of ``SGNConfig``.

    Example:
        >>> import torch
        >>> from curvlab import models
        >>> from curvlab.sgn import SGN
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <...>
        >>> model = models.mlp([4, 8, 3], "sigmoid")
        >>> x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
        >>> opt = SGN(model, "cross_entropy", cg_max_iter=3)
        >>> opt.config.cg_max_iter, opt.config.rho
        (3, 0.0001)
        >>> stats = opt.step(x, y)
        >>> stats.new_loss < stats.loss
        True
    """

    def __init__(self, model: nn.Module, loss: str, config: Union[SGNConfig, Mapping[str, Any], None] = None,
                 **overrides: Any):
        config, self._names, self._loss_fn = setup(SGNConfig, model, loss, config, overrides)
        self.model, self.loss, self.config = model, loss, config
        self._step = 0
        self._rho = config.rho
        self._momentum: Optional[Tensor] = None          # flat (P,)
        self._momentum_steps = 0

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
        """The loss and every hyperparameter, e.g. for a run record: ``{"loss": ..., **config.as_dict()}``."""
        return {"loss": self.loss, **self.config.as_dict()}

    def cg_iterations_at(self, t: int) -> int:
        """CG iteration cap of step t (1-based): the warm-up count during the first steps."""
        return self.config.cg_iterations_at(t)

    def rho_schedule_at(self, t: int) -> float:
        """Damping of step t: the trust-region state, or the schedule's value."""
        c = self.config
        if c.trust_region:
            return self._rho
        return rho_schedule_value(c.rho_schedule, t, c.rho, c.rho_min, c.schedule_steps)

    # ---------------------------------------------------------------------------------- the step
    def step(self, inputs: InputsLike, targets: Tensor) -> SGNStats:
        """One SGN iteration on the minibatch (inputs, targets); updates the model in place.

        Vectors are flat (P,) tensors: theta, g, m_hat, Delta and the CG residual.

        Raises:
            ValueError: an empty batch, or a model that is not deterministic (see the class docstring).
        """
        check_batch(_as_tuple(inputs), targets)
        check_deterministic(self.model)
        t = self._step = self._step + 1
        rho = self.rho_schedule_at(t)
        point = self._linearise(inputs, targets)
        if not (math.isfinite(point.loss) and math.isfinite(point.gg)):
            return self._skipped(t, rho, point)       # nothing can be predicted at a non-finite point
        m_hat = self._momentum_direction(point.g)
        delta, info = self._solve(point, m_hat, rho, t)
        g_delta = float(torch.dot(point.g, delta))
        m_delta = g_delta if m_hat is point.g else float(torch.dot(m_hat, delta))
        # Delta^T (G + rho I) Delta from J Delta (accumulated by the line) rather than from the final
        # residual, which CG's last iteration no longer computes; r^T Delta = -m_hat^T Delta - that
        curved = point.line.step_curvature() + rho * float(torch.dot(delta, delta))
        predicted = rules.predicted_change(self.config.prediction_rule, self.config.alpha, g_delta,
                                           m_delta, -m_delta - curved)
        line = self._search_line(point, delta, inputs, targets, g_delta, m_delta)
        ratio = rules.trust_ratio(line.trial_loss, point.loss, predicted)
        next_rho = self._update_rho(t, rho, ratio, line.accepted)
        return SGNStats(step=t, loss=point.loss, new_loss=line.new_loss if line.accepted else point.loss,
                        trial_loss=line.trial_loss, rho=rho, next_rho=next_rho, alpha=line.alpha,
                        cg_iterations=info.iterations, cg_residual=info.residual_norm,
                        cg_converged=info.converged, predicted_change=predicted, trust_ratio=ratio,
                        backtracks=line.backtracks, accepted=line.accepted, grad_norm=math.sqrt(point.gg),
                        line_shortcut=line.shortcut)

    def _linearise(self, inputs: InputsLike, targets: Tensor) -> _Point:
        """Loss L, gradient g and the GGN operator at a copy of the current parameters."""
        named = dict(self.model.named_parameters())
        live = [named[n] for n in self._names]
        theta_flat = flatten([p.detach() for p in live])            # a copy, independent of live
        theta = unflatten_like(theta_flat, live)
        op = GGNOperator(self.model, self.loss, inputs, targets, params=theta, method=self.config.method)
        loss = float(op.loss)
        g = flatten(op.gradient)
        return _Point(live=live, theta_flat=theta_flat, theta=theta, op=op, line=LineShortcut(op), loss=loss,
                      g=g, gg=float(torch.dot(g, g)))

    def _skipped(self, t: int, rho: float, point: _Point) -> SGNStats:
        """Stats of a step skipped at a non-finite loss or gradient (parameters kept)."""
        return SGNStats(step=t, loss=point.loss, new_loss=point.loss, trial_loss=math.nan, rho=rho,
                        next_rho=rho, alpha=0.0, cg_iterations=0, cg_residual=math.nan, cg_converged=False,
                        predicted_change=math.nan, trust_ratio=math.nan, backtracks=0, accepted=False,
                        grad_norm=math.sqrt(point.gg) if point.gg >= 0 else math.nan)

    def _momentum_direction(self, g: Tensor) -> Tensor:
        """m_hat = m_t / (1 - beta^t), m_t = beta m_{t-1} + (1 - beta) g (``g`` itself when beta = 0)."""
        beta = self.config.beta
        if beta == 0:
            return g
        if self._momentum is None:
            self._momentum = torch.zeros_like(g)
        self._momentum.mul_(beta).add_(g, alpha=1.0 - beta)
        self._momentum_steps += 1
        return self._momentum / (1.0 - beta ** self._momentum_steps)

    def _solve(self, point: _Point, m_hat: Tensor, rho: float, t: int) -> tuple[Tensor, CGInfo]:
        """Delta ~= -(G + rho I)^{-1} m_hat by CG from 0, with the optional diagonal preconditioner."""
        c, line, live = self.config, point.line, point.live

        def damped(v: Tensor) -> Tensor:                             # (P,) -> (G + rho I) v
            return flatten(line(unflatten_like(v, live))).add_(v, alpha=rho)

        precondition = None
        if c.preconditioner:
            inv_diag = (m_hat * m_hat + rho).pow_(-c.precond_exponent)

            def precondition(r: Tensor) -> Tensor:
                return inv_diag * r

        def curvature(v: Tensor) -> float:                          # v^T (G + rho I) v, no J^T pass
            return line.curvature(unflatten_like(v, live)) + rho * float(torch.dot(v, v))

        # on_step lets the line follow Delta = sum_k a_k p_k at the network's first (affine) layers, so
        # the trial points skip their matmul, and in output space (see curvlab._line_search);
        # curvature lets CG's last iteration skip the backward pass of its product.
        return conjugate_gradient(damped, -m_hat, max_iter=c.cg_iterations_at(t), tol=c.cg_tol,
                                  preconditioner=precondition, on_step=line.record_step, curvature=curvature)

    def _loss_at(self, point: _Point, delta: Tensor, step_size: float, inputs: InputsLike,
                 targets: Tensor) -> float:
        """Write theta + step_size Delta into the model and return the minibatch loss there."""
        trial = unflatten_like(torch.add(point.theta_flat, delta, alpha=step_size), point.live)
        with torch.no_grad():
            for p, value in zip(point.live, trial):
                p.copy_(value)
            if point.line.applies:
                outputs = point.line.outputs(trial, step_size)
            else:
                outputs = self.model(*_as_tuple(inputs))
            return float(self._loss_fn(outputs, targets))

    def _search_line(self, point: _Point, delta: Tensor, inputs: InputsLike, targets: Tensor,
                     g_delta: float, m_delta: float) -> _Line:
        """Trial step alpha_0, then backtracking until ``sufficient_decrease``; commit or roll back.

        The model holds the accepted point afterwards, or theta again if the step is rejected (no
        finite loss found, or uphill with ``reject_uphill``), also when an evaluation raises.
        """
        c = self.config
        accepted = False
        try:
            alpha, backtracks = c.alpha, 0
            trial_loss = new_loss = self._loss_at(point, delta, alpha, inputs, targets)
            if c.line_search:
                while (not rules.sufficient_decrease(c.line_search_rule, new_loss, point.loss, alpha,
                                                     c.alpha, c.armijo_c, g_delta, m_delta)
                       and backtracks < c.max_backtracks):
                    alpha *= c.backtrack_factor
                    new_loss = self._loss_at(point, delta, alpha, inputs, targets)
                    backtracks += 1
            accepted = math.isfinite(new_loss) and not (c.reject_uphill and new_loss > point.loss)
        finally:
            if not accepted:                                         # leave the parameters as they were
                with torch.no_grad():
                    for p, value in zip(point.live, point.theta):
                        p.copy_(value)
        return _Line(trial_loss=trial_loss, alpha=alpha, new_loss=new_loss, backtracks=backtracks,
                     accepted=accepted, shortcut=point.line.shortcut_calls > 0 and point.line.full_calls == 0)

    def _update_rho(self, t: int, rho: float, ratio: float, accepted: bool) -> float:
        """Damping of step t + 1: trust-region rule (raised at least once after a rejection) or schedule."""
        c = self.config
        if not c.trust_region:
            return self.rho_schedule_at(t + 1)
        next_rho = trust_region_update(rho, ratio, c.rho_min, c.tr_lower, c.tr_upper, c.tr_factor)
        if not accepted and next_rho <= rho:
            next_rho = rho * c.tr_factor
        self._rho = next_rho
        return next_rho

    # ---------------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: step count, rho, momentum (with the model's own state_dict).

        ``config`` and ``loss`` are stored for the record; ``load_state_dict`` does not read them.
        """
        return {"step": self._step, "rho": self._rho,
                "momentum": None if self._momentum is None else self._momentum.clone(),
                "momentum_steps": self._momentum_steps, "loss": self.loss, "config": self.config.as_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore ``state_dict()`` output; hyperparameters come from the constructor, not the dict.

        Everything is checked before anything is assigned, so a failed load leaves the optimizer as it was.

        Raises:
            ValueError: an invalid entry (named; see ``curvlab.sgn_checks.check_state``).
        """
        params = [dict(self.model.named_parameters())[n] for n in self._names]
        step, rho, momentum, momentum_steps = check_state(state, sum(p.numel() for p in params))
        if momentum is not None:
            momentum = momentum.detach().to(device=params[0].device, dtype=params[0].dtype).clone()
        self._step, self._rho, self._momentum, self._momentum_steps = step, rho, momentum, momentum_steps
