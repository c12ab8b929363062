import math

import pytest
import torch
import torch.nn.functional as F

from curvlab.lcnn.activations import BETA_FLOOR, CenteredSoftplus, centered_softplus, centered_softplus_fast

pytestmark = pytest.mark.usefixtures("float64")

BETAS = [1e-2, 0.5, 1.0, 5.0, 37.0]


def _derivatives(x, beta):
    """s, s' and s'' elementwise by autograd (double backward)."""
    x = x.clone().requires_grad_(True)
    s = centered_softplus(x, beta)
    (d1,) = torch.autograd.grad(s.sum(), x, create_graph=True)
    (d2,) = torch.autograd.grad(d1.sum(), x)
    return s.detach(), d1.detach(), d2


def _reference(x, beta):
    """(log(1 + e^{βx}) − log 2)/β in float64 without any threshold (valid for |βx| < 700)."""
    return (torch.log1p(torch.exp(beta * x)) - math.log(2.0)) / beta


def test_value_matches_the_definition_to_rounding():
    x = torch.linspace(-6.0, 6.0, 241)
    for beta in BETAS:
        s = centered_softplus(x, beta)
        torch.testing.assert_close(s, _reference(x, beta), rtol=1e-13, atol=1e-13 / beta)


def test_zero_at_the_origin_for_every_beta():
    zero = torch.zeros(1)
    for beta in BETAS + [1e-6, 1e6]:
        assert centered_softplus(zero, beta).item() == 0.0


def test_derivatives_are_the_logistic_function():
    x = torch.linspace(-3.0, 3.0, 121)
    for beta in BETAS:
        _, d1, d2 = _derivatives(x, beta)
        sig = torch.sigmoid(beta * x)
        torch.testing.assert_close(d1, sig, rtol=1e-12, atol=1e-15)
        torch.testing.assert_close(d2, beta * sig * (1 - sig), rtol=1e-10, atol=1e-14)


def test_slope_in_open_unit_interval_and_curvature_ratio_at_most_beta():
    for beta in BETAS:
        # |βx| <= 30: beyond, σ(βx) rounds to 1 in float64 and the open interval cannot be resolved.
        x = torch.linspace(-30.0 / beta, 30.0 / beta, 601)
        _, d1, d2 = _derivatives(x, beta)
        assert bool((d1 > 0).all()) and bool((d1 < 1).all())
        ratio = d2 / d1
        assert float(ratio.max()) <= beta * (1 + 1e-12)
        # The ratio β(1 − σ(βx)) approaches β on the left: the bound is tight.
        assert float(ratio.max()) > 0.999 * beta
        torch.testing.assert_close(ratio, beta * (1 - torch.sigmoid(beta * x)), rtol=1e-9, atol=1e-12)


def test_supremum_of_second_derivative_is_beta_over_four_at_zero():
    x = torch.arange(-2000, 2001) / 1000.0  # contains 0 exactly
    for beta in BETAS:
        _, _, d2 = _derivatives(x, beta)
        assert float(d2.max()) == pytest.approx(beta / 4, rel=1e-12)
        assert float(x[d2.argmax()]) == 0.0
        assert bool((d2 <= beta / 4 * (1 + 1e-12)).all())


def test_large_beta_tends_to_relu_within_log2_over_beta():
    x = torch.linspace(-2.0, 2.0, 401)
    errors = []
    for beta in [1e1, 1e2, 1e3, 1e4, 1e6]:
        gap = (centered_softplus(x, beta) - F.relu(x)).abs().max().item()
        assert gap <= math.log(2.0) / beta + 1e-14  # the gap is a difference of O(1) numbers
        errors.append(gap)
    assert errors[-1] < 1e-6
    assert all(b < a for a, b in zip(errors, errors[1:]))


def test_small_beta_tends_to_half_identity():
    x = torch.linspace(-2.0, 2.0, 401)
    for beta in [1e-2, 1e-4, 1e-8]:
        s = centered_softplus(x, beta)
        # s(x) = x/2 + βx²/8 + O(β³x⁴): the deviation from x/2 is second order, exactly known.
        torch.testing.assert_close(s - x / 2, beta * x**2 / 8, rtol=1e-3, atol=1e-15)
    # Plain softplus drifts by log 2 / β at the origin; the centred form does not.
    assert F.softplus(torch.zeros(1), beta=1e-4).item() == pytest.approx(math.log(2.0) / 1e-4)


def test_safe_at_large_beta_x():
    x = torch.tensor([-1e300, -1e4, -50.0, -21.0, 21.0, 50.0, 1e4, 1e300], requires_grad=True)
    beta = torch.tensor(50.0, requires_grad=True)
    s = centered_softplus(x, beta)
    assert bool(torch.isfinite(s).all())
    # The linear branch x - log 2/β on the right, -log 2/β (+ e^{βx}/β) on the left.
    right, offset = x.detach() > 0, math.log(2.0) / 50.0
    torch.testing.assert_close(s.detach()[right], x.detach()[right] - offset, rtol=1e-15, atol=0)
    torch.testing.assert_close(s.detach()[~right], torch.full((4,), -offset), rtol=1e-15, atol=1e-15)
    gx, gb = torch.autograd.grad(s.sum(), (x, beta))
    assert bool(torch.isfinite(gx).all()) and bool(torch.isfinite(gb))
    torch.testing.assert_close(gx, torch.sigmoid(50.0 * x.detach()))


def test_float32_large_inputs_stay_finite():
    x = torch.tensor([-1e30, -100.0, 0.0, 100.0, 1e30], dtype=torch.float32, requires_grad=True)
    s = centered_softplus(x, torch.tensor(1e3, dtype=torch.float32))
    (g,) = torch.autograd.grad(s.sum(), x)
    assert bool(torch.isfinite(s).all()) and bool(torch.isfinite(g).all())


def test_module_parametrisation_and_gradient_to_log_beta():
    m = CenteredSoftplus(beta_init=5.0)
    assert isinstance(m.log_beta, torch.nn.Parameter) and m.log_beta.dim() == 0
    assert m.log_beta.item() == pytest.approx(math.log(5.0 - BETA_FLOOR))
    assert m.beta.item() == pytest.approx(5.0, rel=1e-14)
    x = torch.linspace(-1.0, 1.0, 11)
    torch.testing.assert_close(m(x), centered_softplus(x, 5.0))
    # d s / d θ = (d s / d β) · exp(θ), against a central finite difference in θ.
    (g,) = torch.autograd.grad(m(x).sum(), m.log_beta)
    h, theta = 1e-6, m.log_beta.item()

    def total(t):
        return centered_softplus(x, math.exp(t) + BETA_FLOOR).sum().item()

    assert g.item() == pytest.approx((total(theta + h) - total(theta - h)) / (2 * h), rel=1e-7)


def test_fast_form_has_the_same_derivatives_and_a_value_error_of_rounding_over_beta():
    x = torch.linspace(-30.0, 30.0, 601)
    for beta in BETAS:
        xf = x.clone().requires_grad_(True)
        fast = centered_softplus_fast(xf, beta)
        (d1,) = torch.autograd.grad(fast.sum(), xf, create_graph=True)
        (d2,) = torch.autograd.grad(d1.sum(), xf)
        s, p1, p2 = _derivatives(x, beta)
        bound = (4 * torch.finfo(x.dtype).eps + math.exp(-20)) / beta
        assert (fast.detach() - s).abs().max().item() <= bound
        # beyond βx > 20 softplus is linear: s' = 1 and s'' = 0 instead of σ and βσ(1 − σ) ≈ β e^{-20}
        linear = 2 * math.exp(-20) * max(1.0, beta)
        torch.testing.assert_close(d1.detach(), p1, rtol=1e-12, atol=linear)
        torch.testing.assert_close(d2, p2, rtol=1e-9, atol=linear)
    m_fast, m_precise = CenteredSoftplus(beta_init=3.0), CenteredSoftplus(beta_init=3.0, precise=True)
    torch.testing.assert_close(m_fast(x), m_precise(x), rtol=0, atol=1e-9)
    assert "precise=True" in repr(m_precise)


def test_fixed_beta_is_a_buffer():
    m = CenteredSoftplus(beta_init=2.0, learnable=False)
    assert list(m.parameters()) == []
    assert "log_beta" in m.state_dict()
    assert m.beta.item() == pytest.approx(2.0)


def test_each_module_has_its_own_beta():
    a, b = CenteredSoftplus(), CenteredSoftplus()
    with torch.no_grad():
        a.log_beta.fill_(0.0)
    assert a.beta.item() == pytest.approx(1.0 + BETA_FLOOR) and b.beta.item() == pytest.approx(5.0)


@pytest.mark.parametrize("bad", [0.0, 1e-3, -1.0, float("nan"), float("inf")])
def test_bad_beta_init_raises(bad):
    with pytest.raises(ValueError, match="beta_init"):
        CenteredSoftplus(beta_init=bad)


@pytest.mark.parametrize("bad", [0.0, -2.0, float("nan"), float("inf")])
def test_bad_numeric_beta_raises(bad):
    with pytest.raises(ValueError, match="beta"):
        centered_softplus(torch.ones(2), bad)
