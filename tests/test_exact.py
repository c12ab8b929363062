"""Curvature through layers with modified gradients: the network function's true derivatives."""
import pytest
import torch
from torch import nn

from curvlab import curvature as cv
from curvlab import isaac
from curvlab._exact import exact_derivatives, exact_derivatives_active

N = 6


def twins():
    """The same network twice: with isaac.Linear layers (ζ* weight gradients) and with nn.Linear."""
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    modified = nn.Sequential(isaac.Linear(5, 4, la=0.1), nn.Tanh(), isaac.Linear(4, 3, la=0.1)).double()
    modified.load_state_dict(plain.state_dict())
    g = torch.Generator().manual_seed(1)
    return plain, modified, torch.randn(N, 5, generator=g, dtype=torch.float64) * 3, \
        torch.randint(0, 3, (N,), generator=g)


def test_the_switch():
    assert not exact_derivatives_active()
    with exact_derivatives():
        assert exact_derivatives_active()
    assert not exact_derivatives_active()


def test_isaac_layers_do_change_the_training_gradient():
    """Outside the switch the weight gradient is ζ*, not the gradient: the twins differ (test can fail)."""
    plain, modified, x, y = twins()
    grads = []
    for model in (plain, modified):
        torch.nn.functional.cross_entropy(model(x), y).backward()
        grads.append(model[0].weight.grad)
    assert (grads[0] - grads[1]).abs().max() > 1e-3


@pytest.mark.parametrize("method", cv.METHODS)
def test_ggn_products_through_isaac_layers_are_exact(method):
    plain, modified, x, y = twins()
    v = [torch.randn(p.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
         for p in plain.parameters()]
    expected = cv.ggn_vector_product(plain, "cross_entropy", x, y, v, method=method)
    got = cv.ggn_vector_product(modified, "cross_entropy", x, y, v, method=method)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    op_plain = cv.GGNOperator(plain, "cross_entropy", x, y, method=method)
    op = cv.GGNOperator(modified, "cross_entropy", x, y, method=method)
    assert op.method == op_plain.method                      # no fallback for the modified model
    for a, b in zip(op.gradient, op_plain.gradient):         # the true gradient, not ζ*
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_jacobian_and_hessian_through_model_function_are_exact():
    plain, modified, x, y = twins()
    jac = []
    for model in (plain, modified):
        names, params = cv._resolve_params(model, None)
        f = cv.model_function(model, x, names)
        jac.append(torch.func.jacrev(f, argnums=tuple(range(len(params))))(*params))
    for a, b in zip(jac[1], jac[0]):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    v = [torch.ones_like(p) for p in plain.parameters()]
    for a, b in zip(cv.HessianOperator(modified, "cross_entropy", x, y)(v),
                    cv.HessianOperator(plain, "cross_entropy", x, y)(v)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(cv.input_gradient(modified, "cross_entropy", x, y),
                               cv.input_gradient(plain, "cross_entropy", x, y), rtol=1e-12, atol=1e-14)
