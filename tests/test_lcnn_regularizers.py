"""LCNN penalties against hand sums and explicit per-sample input gradients (float64)."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from curvlab.lcnn.activations import CenteredSoftplus
from curvlab.lcnn.batchnorm import LipschitzBatchNorm1d, LipschitzBatchNorm2d
from curvlab.lcnn.regularizers import (
    Objective,
    beta_penalty,
    cure_penalty,
    cure_reference_strength,
    curvature_proxy,
    gamma_penalty,
    gradient_norm_penalty,
    reference_strength,
    regularized_loss,
)

pytestmark = pytest.mark.usefixtures("float64", "one_thread")


def lcnn_mlp():
    """Linear - BN1d(γ=10) - CSP(2) - Linear - BN1d(γ=0.5) - CSP(3.5) - shared CSP(1.5) twice - Linear."""
    torch.manual_seed(0)
    shared = CenteredSoftplus(1.5)
    return nn.Sequential(nn.Linear(3, 4), LipschitzBatchNorm1d(4, gamma_init=10.0), CenteredSoftplus(2.0),
                         nn.Linear(4, 4), LipschitzBatchNorm1d(4, gamma_init=0.5), CenteredSoftplus(3.5),
                         shared, nn.Linear(4, 4), shared, nn.Linear(4, 3))


def tiny_cnn(bn=True):
    torch.manual_seed(1)
    layers = [nn.Conv2d(2, 3, 3, padding=1)]
    layers += [nn.BatchNorm2d(3)] if bn else []
    layers += [CenteredSoftplus(3.0), nn.Flatten(), nn.Linear(3 * 16, 3)]
    return nn.Sequential(*layers)


def batch(n=5, seed=2):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 2, 4, 4, generator=g), torch.randint(0, 3, (n,), generator=g)


def per_sample_input_grads(model, x, y):
    """∇ₓℓ_i(x_i), each sample alone (a batch of one)."""
    model.eval()
    return torch.stack([torch.func.grad(lambda xi, i=i: F.cross_entropy(model(xi[None]), y[i:i + 1]))(x[i])
                        for i in range(x.shape[0])])


def test_beta_and_gamma_penalties_are_the_hand_sums():
    model = lcnn_mlp()
    torch.testing.assert_close(beta_penalty(model), torch.tensor(2.0 + 3.5 + 2 * 1.5), rtol=1e-12, atol=0)
    torch.testing.assert_close(gamma_penalty(model), torch.tensor(math.log(10.0) + math.log(2.0)),
                               rtol=1e-12, atol=0)
    beta_penalty(model).backward()
    assert math.isclose(float(model[2].log_beta.grad), 2.0 - 1e-3, rel_tol=1e-12)    # dβ/dθ = β − floor
    assert math.isclose(float(model[6].log_beta.grad), 2 * (1.5 - 1e-3), rel_tol=1e-12)  # two positions
    gamma_penalty(model).backward()
    assert float(model[1].log_gamma.grad) == 1.0 and float(model[4].log_gamma.grad) == -1.0
    proxy = curvature_proxy(model, 1e-2, 3e-2)
    torch.testing.assert_close(proxy, 1e-2 * beta_penalty(model) + 3e-2 * gamma_penalty(model))


def test_convolutional_lipschitz_bn_is_found_too():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), LipschitzBatchNorm2d(2, gamma_init=4.0), CenteredSoftplus())
    torch.testing.assert_close(gamma_penalty(model), torch.tensor(math.log(4.0)), rtol=1e-12, atol=0)
    torch.testing.assert_close(beta_penalty(model), torch.tensor(5.0), rtol=1e-12, atol=0)


def test_curvature_proxy_is_zero_without_lcnn_layers_and_the_model_still_trains():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    x, y = torch.randn(6, 3), torch.tensor([0, 1, 1, 0, 1, 0])
    assert float(curvature_proxy(model, 1e-2, 1e-2)) == 0.0
    assert float(beta_penalty(model)) == 0.0 and float(gamma_penalty(model)) == 0.0
    total, parts = regularized_loss(model, x, y, reg_beta=1e-2, reg_gamma=1e-2)
    torch.testing.assert_close(total, F.cross_entropy(model(x), y))
    total.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert float(model[2].weight.grad.abs().max()) > 0
    assert set(parts) == {"loss", "beta", "gamma", "gnorm", "cure"} and float(parts["beta"]) == 0.0


def test_gradient_norm_penalty_is_its_closed_form():
    model = tiny_cnn().eval()
    x, y = batch()
    penalty, value = gradient_norm_penalty(model, x, y, strength=0.3)
    g = per_sample_input_grads(model, x, y)
    torch.testing.assert_close(penalty, 0.3 * g.reshape(5, -1).square().sum(1).mean(), rtol=1e-12, atol=0)
    torch.testing.assert_close(value, F.cross_entropy(model(x), y), rtol=1e-14, atol=0)
    # batch-size free: the same samples repeated give the same penalty
    again, _ = gradient_norm_penalty(model, x.repeat(3, 1, 1, 1), y.repeat(3), strength=0.3)
    torch.testing.assert_close(again, penalty, rtol=1e-12, atol=0)


def test_reference_strength_maps_the_reference_formula_exactly_in_training_mode():
    assert math.isclose(reference_strength(1e-3, 128), 1e-3 * 1e5 / 128 ** 2)
    assert abs(reference_strength(1e-3, 128) - 6.1e-3) < 1e-5
    assert math.isclose(reference_strength(1e-3, 64), 2.44140625e-2)
    model = tiny_cnn(bn=True).train()           # batch statistics couple the samples
    x, y = batch(8)
    xr = x.clone().requires_grad_(True)
    (grad_mean,) = torch.autograd.grad(F.cross_entropy(model(xr), y), xr)
    reference = 1e-3 * 1e5 * grad_mean.square().sum() / 8              # c · 1e5 ‖∇ₓL̄‖² / B
    penalty, _ = gradient_norm_penalty(model, x, y, reference_strength(1e-3, 8))
    torch.testing.assert_close(penalty, reference, rtol=1e-12, atol=0)


def test_gradient_norm_penalty_parameter_gradient_is_the_double_backprop():
    model = tiny_cnn(bn=False).eval()
    x, y = batch(4)
    penalty, _ = gradient_norm_penalty(model, x, y, strength=2.0)
    penalty.backward()
    params = {k: p.detach() for k, p in model.named_parameters()}

    def functional_penalty(p):
        def li(xi, yi):
            return F.cross_entropy(functional_call(model, p, (xi[None],)), yi[None])
        g = torch.vmap(torch.func.grad(li))(x, y)
        return 2.0 * g.reshape(4, -1).square().sum(1).mean()
    expected = torch.func.grad(functional_penalty)(params)
    for k, p in model.named_parameters():
        torch.testing.assert_close(p.grad, expected[k], rtol=1e-10, atol=1e-13)
    assert any(float(p.grad.abs().max()) > 0 for p in model.parameters())


def test_cure_penalty_is_the_gradient_change_along_the_sign_direction():
    model = tiny_cnn(bn=False).eval()
    x, y = batch(4)
    penalty, value = cure_penalty(model, x, y, strength=0.5, step=0.2)
    g = per_sample_input_grads(model, x, y)
    z = g.sign() / g.sign().reshape(4, -1).norm(dim=1).reshape(4, 1, 1, 1)
    moved = per_sample_input_grads(model, x + 0.2 * z, y)
    torch.testing.assert_close(penalty, 0.5 * (moved - g).reshape(4, -1).square().sum(1).mean(),
                               rtol=1e-12, atol=0)
    torch.testing.assert_close(value, F.cross_entropy(model(x), y), rtol=1e-14, atol=0)
    assert math.isclose(cure_reference_strength(1e-3, 128), 1e-3 * 1e3 / 128 ** 2)


def test_cure_penalty_on_a_quadratic_loss_is_the_hessian_product():
    """l = ½‖Wx + b − y‖²: ∇ℓ(x + hz) − ∇ℓ(x) = h WᵀW z exactly."""
    torch.manual_seed(3)
    lin = nn.Linear(4, 3)
    x, y = torch.randn(5, 4), torch.randn(5, 3)
    penalty, _ = cure_penalty(lin, x, y, strength=1.0, step=0.7, loss="half_sum_squared")
    with torch.no_grad():
        g = (lin(x) - y) @ lin.weight
        z = g.sign() / 2.0                                   # ‖sign‖ = √4
        diff = 0.7 * z @ (lin.weight.T @ lin.weight)
    torch.testing.assert_close(penalty, diff.square().sum(1).mean(), rtol=1e-12, atol=0)


def test_objective_is_the_sum_of_its_parts_and_matches_the_single_penalties():
    model = lcnn_mlp().train()
    x, y = torch.rand(8, 3, generator=torch.Generator().manual_seed(4)), torch.randint(0, 3, (8,))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    obj = Objective(reg_beta=1e-2, reg_gamma=2e-2, reg_gnorm=0.1, reg_cure=0.05, cure_step=0.5)
    total, parts = obj(model, x, y)
    total.backward()
    assert model[2].log_beta.grad is not None and model[1].log_gamma.grad is not None
    torch.testing.assert_close(total.detach(), sum(parts.values()), rtol=1e-14, atol=0)
    torch.testing.assert_close(parts["beta"], 1e-2 * beta_penalty(model).detach())
    torch.testing.assert_close(parts["gamma"], 2e-2 * gamma_penalty(model).detach())
    model.load_state_dict(state)                # the same running statistics as the objective's pass
    gnorm, value = gradient_norm_penalty(model, x, y, 0.1)
    torch.testing.assert_close(parts["gnorm"], gnorm.detach(), rtol=1e-12, atol=0)
    torch.testing.assert_close(parts["loss"], value.detach(), rtol=1e-14, atol=0)
    model.load_state_dict(state)
    cure, _ = cure_penalty(model, x, y, 0.05, step=0.5)
    torch.testing.assert_close(parts["cure"], cure.detach(), rtol=1e-12, atol=0)
    plain, plain_parts = regularized_loss(model, x, y)
    assert all(float(plain_parts[k]) == 0.0 for k in ("beta", "gamma", "gnorm", "cure"))


@pytest.mark.parametrize("bad", [-1e-3, math.nan, math.inf, True, "1"])
def test_invalid_strengths(bad):
    model = tiny_cnn(bn=False)
    x, y = batch(2)
    with pytest.raises(ValueError, match="strength"):
        gradient_norm_penalty(model, x, y, bad)
    with pytest.raises(ValueError, match="strength"):
        cure_penalty(model, x, y, bad)
    with pytest.raises(ValueError, match="reg_beta"):
        curvature_proxy(model, bad, 0.0)
    with pytest.raises(ValueError, match="reg_gamma"):
        curvature_proxy(model, 0.0, bad)
    with pytest.raises(ValueError, match="reg_gnorm"):
        Objective(reg_gnorm=bad)
    with pytest.raises(ValueError, match="reg_constant"):
        reference_strength(bad, 128)


def test_invalid_batch_size_step_and_loss():
    with pytest.raises(ValueError, match="batch_size"):
        reference_strength(1e-3, 0)
    with pytest.raises(ValueError, match="batch_size"):
        cure_reference_strength(1e-3, 2.0)
    with pytest.raises(ValueError, match="step"):
        cure_penalty(tiny_cnn(bn=False), *batch(2), 1.0, step=-1.0)
    with pytest.raises(ValueError, match="loss"):
        Objective(loss="hinge")
    with pytest.raises(ValueError, match="loss"):
        gradient_norm_penalty(tiny_cnn(bn=False), *batch(2), 1.0, loss="hinge")
