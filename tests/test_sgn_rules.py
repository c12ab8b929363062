"""The scalar rules of an SGN step: damping, prediction, trust ratio and sufficient decrease."""
import math

import pytest
import torch
from torch import nn

from curvlab.krylov import conjugate_gradient
from curvlab.sgn import SGN
from curvlab.sgn_rules import (
    predicted_change,
    rho_schedule_value,
    sufficient_decrease,
    trust_ratio,
    trust_region_update,
)


def test_trust_region_rule():
    assert trust_region_update(1.0, 0.1, 1e-6) == 1.5
    assert trust_region_update(1.0, -3.0, 1e-6) == 1.5
    assert trust_region_update(1.0, -math.inf, 1e-6) == 1.5      # non-finite trial loss
    assert trust_region_update(1.0, 0.5, 1e-6) == 1.0
    assert trust_region_update(1.0, 0.25, 1e-6) == 1.0           # thresholds are strict
    assert trust_region_update(1.0, 0.75, 1e-6) == 1.0
    assert trust_region_update(1.0, 0.9, 1e-6) == pytest.approx(1 / 1.5)
    assert trust_region_update(1.2e-6, 0.9, 1e-6) == 1e-6        # floor
    assert trust_region_update(1.0, math.nan, 1e-6) == 1.0       # 0/0: nothing predicted
    assert trust_region_update(1.0, 0.1, 1e-6, lower=0.05, factor=3.0) == 1.0
    assert trust_region_update(1.0, 0.9, 1e-6, upper=0.95, factor=3.0) == 1.0
    assert trust_region_update(1.0, 0.01, 1e-6, factor=3.0) == 3.0


def test_rho_schedules():
    assert rho_schedule_value("const", 7, 1e-3, 1e-6, 10) == 1e-3
    assert rho_schedule_value("linear", 1, 1e-3, 1e-5, 3) == 1e-3
    assert rho_schedule_value("linear", 2, 1e-3, 1e-5, 3) == pytest.approx(0.5 * (1e-3 + 1e-5))
    assert rho_schedule_value("linear", 3, 1e-3, 1e-5, 3) == pytest.approx(1e-5)
    assert rho_schedule_value("linear", 9, 1e-3, 1e-5, 3) == 1e-5
    assert rho_schedule_value("linear", 1, 1e-3, 1e-5, 1) == 1e-3   # a one-step horizon
    assert rho_schedule_value("linear", 2, 1e-3, 1e-5, 1) == pytest.approx(1e-5)
    assert rho_schedule_value("cos", 1, 1.0, 1e-6, 4) == pytest.approx(math.cos(math.pi / 8))
    assert rho_schedule_value("cos", 4, 1.0, 1e-6, 4) == 1e-6
    assert rho_schedule_value("cos", 5, 1.0, 1e-6, 4) == 1e-6
    with pytest.raises(ValueError, match="rho_schedule"):
        rho_schedule_value("exp", 1, 1.0, 0.0, 4)


def test_predicted_change_against_a_dense_quadratic():
    """With Delta from a truncated CG run on A Delta = -m, the model's prediction equals
    alpha_0 g^T Delta + 1/2 alpha_0^2 Delta^T A Delta computed with the dense A."""
    gen = torch.Generator().manual_seed(0)
    B = torch.randn(6, 6, generator=gen, dtype=torch.float64)
    A = B @ B.T + 0.1 * torch.eye(6, dtype=torch.float64)
    g = torch.randn(6, generator=gen, dtype=torch.float64)
    m = 0.5 * g + torch.randn(6, generator=gen, dtype=torch.float64)    # a momentum direction != g
    delta, info = conjugate_gradient(lambda v: A @ v, -m, max_iter=3, tol=0.0)
    assert not info.converged                                           # the residual matters
    r_delta = float(info.residual @ delta)
    for a0 in (1.0, 0.5):
        got = predicted_change("model", a0, float(g @ delta), float(m @ delta), r_delta)
        dense = a0 * float(g @ delta) + 0.5 * a0 ** 2 * float(delta @ A @ delta)
        assert got == pytest.approx(dense, rel=1e-10)
    reference = predicted_change("reference", 1.0, float(g @ delta), float(m @ delta), r_delta)
    assert reference == pytest.approx(0.5 * float(g @ delta) - 0.5 * r_delta, rel=1e-12)
    # with m = g and alpha_0 = 1 both rules agree
    delta, info = conjugate_gradient(lambda v: A @ v, -g, max_iter=3, tol=0.0)
    gd, rd = float(g @ delta), float(info.residual @ delta)
    assert predicted_change("model", 1.0, gd, gd, rd) == pytest.approx(predicted_change("reference", 1.0, gd,
                                                                                         gd, rd), rel=1e-10)


def test_prediction_in_a_step_on_an_exactly_quadratic_loss():
    """Linear least squares: the loss is its own quadratic model (G = Hessian), so the actual change
    is the damped model's prediction minus the damping term 1/2 rho ||Delta||^2."""
    gen = torch.Generator().manual_seed(1)
    X = torch.randn(12, 3, generator=gen, dtype=torch.float64)
    y = torch.randn(12, 2, generator=gen, dtype=torch.float64)
    model = nn.Linear(3, 2).double()
    before = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    rho = 0.1
    stats = SGN(model, "mse", rho=rho, rho_min=0.0, cg_max_iter=2, cg_warmup_steps=0, cg_tol=0.0,
                trust_region=False).step(X, y)
    delta = torch.cat([p.detach().reshape(-1) for p in model.parameters()]) - before
    assert stats.alpha == 1.0 and stats.accepted
    actual = stats.trial_loss - stats.loss
    assert actual == pytest.approx(stats.predicted_change - 0.5 * rho * float(delta @ delta), rel=1e-9)


def test_trust_ratio():
    assert trust_ratio(0.5, 1.0, -1.0) == 0.5
    assert trust_ratio(1.5, 1.0, -1.0) == -0.5
    assert trust_ratio(math.nan, 1.0, -1.0) == -math.inf
    assert trust_ratio(math.inf, 1.0, -1.0) == -math.inf
    assert math.isnan(trust_ratio(1.0, 1.0, 0.0))


def test_sufficient_decrease():
    # Armijo: L + c alpha g^T Delta, with g^T Delta = -2, c = 0.1: bound 1 - 0.2 alpha
    assert sufficient_decrease("armijo", 0.8, 1.0, 1.0, 1.0, 0.1, -2.0, -2.0)
    assert not sufficient_decrease("armijo", 0.81, 1.0, 1.0, 1.0, 0.1, -2.0, -2.0)
    assert sufficient_decrease("armijo", 0.9, 1.0, 0.5, 1.0, 0.1, -2.0, -2.0)
    # reference: the bound stays at L + c alpha_0 m^T Delta = 0.8 however small alpha is
    assert not sufficient_decrease("reference", 0.9, 1.0, 0.5, 1.0, 0.1, -2.0, -2.0)
    assert sufficient_decrease("reference", 0.9, 1.0, 0.5, 1.0, 0.1, 0.0, -1.0)   # uses m^T Delta
    assert not sufficient_decrease("armijo", math.nan, 1.0, 1.0, 1.0, 0.1, -2.0, -2.0)
