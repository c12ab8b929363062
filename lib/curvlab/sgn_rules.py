"""The scalar rules of an SGN step, as pure functions of floats.

Damping (``rho_schedule_value``, ``trust_region_update``), the quadratic model's prediction
(``predicted_change``), the trust ratio (``trust_ratio``) and the line search's acceptance test
(``sufficient_decrease``). ``curvlab.sgn.SGN`` composes them; they are tested one by one.
"""
from __future__ import annotations

import math

from curvlab.sgn_config import RHO_SCHEDULES

__all__ = ["rho_schedule_value", "trust_region_update", "predicted_change", "trust_ratio",
           "sufficient_decrease"]


def rho_schedule_value(schedule: str, t: int, rho: float, rho_min: float, steps: int) -> float:
    """Damping at iteration t (1-based) under a schedule (used when the trust region is off).

    ``const``: rho. ``linear``: rho + (rho_min - rho) (t - 1) / (steps - 1), not below rho_min.
    ``cos``: rho cos(pi t / (2 steps)), replaced by rho_min when below it or when t > steps.

    Raises:
        ValueError: an unknown schedule.
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


def predicted_change(rule: str, alpha0: float, g_delta: float, m_delta: float, r_delta: float) -> float:
    """Change of the loss that the model predicts for the trial step alpha_0 Delta.

    With Delta from CG on (G + rho I) Delta = -m_hat and final residual r = -m_hat - (G + rho I) Delta,
    the curvature term needs no extra product: Delta^T (G + rho I) Delta = -(m_hat^T Delta + r^T Delta).

    * ``"model"``: alpha_0 g^T Delta + 1/2 alpha_0^2 Delta^T (G + rho I) Delta, the damped quadratic
      model of the loss (g the current gradient);
    * ``"reference"``: 1/2 (g^T Delta - r^T Delta), the reference code's formula (equal to the model's
      when m_hat = g and alpha_0 = 1).

    Args:
        rule: ``"model"`` or ``"reference"``.
        alpha0: the initial step size.
        g_delta: g^T Delta.
        m_delta: m_hat^T Delta.
        r_delta: r^T Delta.
    """
    if rule == "model":
        delta_a_delta = -(m_delta + r_delta)                     # Delta^T (G + rho I) Delta
        return alpha0 * g_delta + 0.5 * alpha0 * alpha0 * delta_a_delta
    return 0.5 * (g_delta - r_delta)


def trust_ratio(trial_loss: float, loss: float, predicted: float) -> float:
    """(L_trial - L) / pred: -inf for a non-finite trial loss (a failed trial), NaN when pred = 0."""
    if not math.isfinite(trial_loss):
        return -math.inf
    if predicted != 0.0:
        return (trial_loss - loss) / predicted
    return math.nan


def sufficient_decrease(rule: str, value: float, loss: float, alpha: float, alpha0: float, c: float,
                        g_delta: float, m_delta: float) -> bool:
    """Whether the line search accepts the loss ``value`` at step size ``alpha``.

    * ``"armijo"``: value <= L + c alpha g^T Delta (textbook);
    * ``"reference"``: value <= L + c alpha_0 m_hat^T Delta, a right-hand side fixed at the initial step
      (the reference code's test, harder to meet as alpha shrinks).

    A NaN ``value`` is never sufficient.
    """
    if rule == "armijo":
        return value <= loss + c * alpha * g_delta
    return value <= loss + c * alpha0 * m_delta
