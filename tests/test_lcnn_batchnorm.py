import math

import pytest
import torch
from torch import nn
from torch.autograd.functional import jacobian

from curvlab.lcnn.batchnorm import LipschitzBatchNorm1d, LipschitzBatchNorm2d

pytestmark = pytest.mark.usefixtures("float64")

SCALES = torch.tensor([0.05, 1.0, 3.0])  # channel standard deviations of the data


def _data(n=16, h=4, scales=SCALES, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = len(scales)
    return torch.randn(n, c, h, h, generator=g) * scales.view(1, c, 1, 1) + torch.arange(c).view(1, c, 1, 1)


def _fitted(gamma_init, scales=SCALES, steps=40):
    """A 2d layer whose running statistics have converged to the data's."""
    bn = LipschitzBatchNorm2d(len(scales), gamma_init=gamma_init, momentum=0.3)
    for step in range(steps):
        bn(_data(scales=scales, seed=step))
    return bn.eval()


def _sigma(bn):
    return torch.sqrt(bn.running_var + bn.eps)


def _dense_jacobian(layer, shape):
    """Autograd Jacobian of the layer at a random input, as an (n, n) matrix."""
    x = torch.randn(shape)
    jac = jacobian(layer, x)
    n = x.numel()
    return jac.reshape(n, n).detach()


@pytest.mark.parametrize("gamma_init", [10.0, 0.7])
def test_eval_lipschitz_constant_is_largest_singular_value_of_dense_jacobian(gamma_init):
    bn = _fitted(gamma_init)
    sigma_min = float(_sigma(bn).min())
    expected = min(1.0 / sigma_min, gamma_init)
    top = float(torch.linalg.svdvals(_dense_jacobian(bn, (1, 3, 4, 4)))[0])
    assert top == pytest.approx(expected, rel=1e-12)
    assert float(bn.lipschitz().detach()) == pytest.approx(expected, rel=1e-12)
    assert top <= gamma_init * (1 + 1e-12)


def test_both_regimes_are_exercised():
    # The small-variance channel makes 1/σ_min ≈ 20: γ = 10 binds, γ = 100 does not.
    binding, free = _fitted(10.0), _fitted(100.0)
    assert float(binding.lipschitz().detach()) == pytest.approx(10.0)
    assert float(free.lipschitz().detach()) == pytest.approx(1.0 / float(_sigma(free).min()))
    assert 15.0 < float(free.lipschitz().detach()) < 25.0


def test_eval_gains_per_channel():
    bn = _fitted(10.0)
    sigma = _sigma(bn)
    gains = torch.minimum(1.0 / sigma, 10.0 * sigma.min() / sigma)
    jac = _dense_jacobian(bn, (1, 3, 2, 2))
    torch.testing.assert_close(jac, torch.diag(gains.repeat_interleave(4)), rtol=1e-12, atol=1e-14)
    x = _data(n=2)
    mean = bn.running_mean.view(1, 3, 1, 1)
    torch.testing.assert_close(bn(x), (x - mean) * gains.view(1, 3, 1, 1))


def test_training_forward_uses_batch_statistics_and_the_updated_running_variance():
    bn = LipschitzBatchNorm2d(3, gamma_init=2.0)
    plain = nn.BatchNorm2d(3, affine=False)
    with torch.no_grad():
        bn.running_var.copy_(torch.tensor([0.01, 1.0, 4.0]))
        plain.running_var.copy_(bn.running_var)
    x = _data()
    y = bn(x)
    # The running statistics update exactly as torch's affine-free batch norm.
    ref = plain(x)
    torch.testing.assert_close(bn.running_mean, plain.running_mean)
    torch.testing.assert_close(bn.running_var, plain.running_var)
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    normalised = (x - mean) / torch.sqrt(var + 1e-5)
    torch.testing.assert_close(ref, normalised)
    sigma_min = math.sqrt(float(plain.running_var.min()) + 1e-5)  # after this batch's update
    torch.testing.assert_close(y, normalised * sigma_min * min(1.0 / sigma_min, 2.0))


def test_gamma_gradient_only_while_the_cap_binds():
    x = _data()
    weights = torch.randn(x.shape)
    binding, free = _fitted(10.0), _fitted(100.0)
    for bn in (binding, free):
        bn.zero_grad()
        (bn(x) * weights).sum().backward()
    # Binding: y = BN(x) γ σ_min, so d/d log γ of ⟨y, w⟩ is ⟨y, w⟩ itself.
    expected = float((binding(x) * weights).sum().detach())
    assert float(binding.log_gamma.grad) == pytest.approx(expected, rel=1e-12)
    assert float(free.log_gamma.grad) == 0.0


def test_affine_free_with_gamma_as_the_only_parameter():
    bn = LipschitzBatchNorm2d(4, gamma_init=3.0)
    assert [name for name, _ in bn.named_parameters()] == ["log_gamma"]
    assert float(bn.gamma.detach()) == pytest.approx(3.0)
    assert bn.affine is False
    assert set(bn.state_dict()) == {"log_gamma", "running_mean", "running_var", "num_batches_tracked"}


def test_state_dict_round_trip():
    src = _fitted(4.0)
    dst = LipschitzBatchNorm2d(3)
    dst.load_state_dict(src.state_dict())
    dst.eval()
    x = _data(n=3)
    torch.testing.assert_close(dst(x), src(x), rtol=0, atol=0)


def test_1d_variant_on_mlp_features():
    bn = LipschitzBatchNorm1d(3, gamma_init=5.0, momentum=0.5)
    g = torch.Generator().manual_seed(1)
    for _ in range(30):
        bn(torch.randn(32, 3, generator=g) * SCALES)
    bn.eval()
    top = float(torch.linalg.svdvals(_dense_jacobian(bn, (1, 3)))[0])
    assert top == pytest.approx(float(bn.lipschitz().detach()), rel=1e-12)
    assert top == pytest.approx(5.0)  # 1/σ_min ≈ 20 > γ


def test_input_shapes_are_checked():
    with pytest.raises(ValueError, match="4D"):
        LipschitzBatchNorm2d(3)(torch.randn(4, 3))
    with pytest.raises(ValueError, match="2D"):
        LipschitzBatchNorm1d(3)(torch.randn(4, 3, 2, 2))


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_gamma_init_raises(bad):
    with pytest.raises(ValueError, match="gamma_init"):
        LipschitzBatchNorm2d(3, gamma_init=bad)


@pytest.mark.parametrize("kwargs, name", [
    (dict(num_features=0), "num_features"),
    (dict(num_features=2.5), "num_features"),
    (dict(num_features=3, eps=0.0), "eps"),
    (dict(num_features=3, momentum=1.5), "momentum"),
])
def test_bad_settings_raise(kwargs, name):
    with pytest.raises(ValueError, match=name):
        LipschitzBatchNorm1d(**kwargs)
