import pytest
import torch
import torch.nn.functional as F
from torch import nn

from curvlab.lcnn.spectral import (
    conv_operator_matrix,
    conv_spectral_norm,
    linear_spectral_norm,
    operator_norm,
    spectral_estimate,
)

pytestmark = pytest.mark.usefixtures("float64")

SIZE = 8


def _conv(stride, seed=0, c_in=3, c_out=4, **kwargs):
    torch.manual_seed(seed)
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, **kwargs)


def _norm_of(conv):
    return conv.parametrizations.weight[0]


def _original(module):
    return module.parametrizations.weight.original


@pytest.mark.parametrize("stride", [1, 2])
def test_dense_conv_matrix_is_the_conv_map(stride):
    conv = _conv(stride, groups=1)
    m = conv_operator_matrix(conv, SIZE)
    out = SIZE // stride
    assert m.shape == (4 * out * out, 3 * SIZE * SIZE)
    x = torch.randn(2, 3, SIZE, SIZE)
    y = (conv(x) - conv.bias.view(1, -1, 1, 1)).reshape(2, -1)
    torch.testing.assert_close(x.reshape(2, -1) @ m.T, y, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("stride", [1, 2])
def test_training_forwards_are_the_dense_power_iteration(stride):
    # The conv / transposed-conv pair is exactly M and Mᵀ: the iterates match a dense power iteration.
    conv = conv_spectral_norm(_conv(stride), SIZE, warmup=0)
    m = conv_operator_matrix(conv, SIZE, weight=_original(conv).detach())
    u, v = _norm_of(conv)._u.reshape(-1).clone(), _norm_of(conv)._v.reshape(-1).clone()
    x = torch.randn(2, 3, SIZE, SIZE)
    conv.train()
    for _ in range(6):
        conv(x)
        v = m.T @ u / torch.linalg.vector_norm(m.T @ u)
        u = m @ v / torch.linalg.vector_norm(m @ v)
        torch.testing.assert_close(_norm_of(conv)._v.reshape(-1), v, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(_norm_of(conv)._u.reshape(-1), u, rtol=1e-12, atol=1e-14)
        assert spectral_estimate(conv) == pytest.approx(float(u @ m @ v), rel=1e-12)


@pytest.mark.parametrize("stride", [1, 2])
def test_estimate_matches_svd_of_dense_conv_matrix_after_warmup(stride):
    sv = torch.linalg.svdvals(conv_operator_matrix(_conv(stride), SIZE))
    sigma, gap = float(sv[0]), float(1 - sv[1] / sv[0])
    default = conv_spectral_norm(_conv(stride), SIZE)  # 15 warm-up iterations
    long = conv_spectral_norm(_conv(stride), SIZE, warmup=300)
    est, est_long = spectral_estimate(default), spectral_estimate(long)
    # ⟨u, A v⟩ <= σ for unit u, v; the iteration approaches σ, limited by the gap to σ₂ when it is tiny.
    assert est <= sigma * (1 + 1e-12) and est_long <= sigma * (1 + 1e-12)
    assert est == pytest.approx(sigma, rel=2e-2)
    assert est_long == pytest.approx(sigma, rel=min(gap, 1e-3) + 1e-10)
    # The normalised layer then has operator norm 1 on that input size (by the SVD); reading it in
    # training mode does not advance the iteration.
    assert long.training
    assert operator_norm(long, SIZE) == pytest.approx(sigma / est_long, rel=1e-12)
    assert operator_norm(long, SIZE) == pytest.approx(1.0, rel=1e-3)
    assert spectral_estimate(long) == est_long


def test_training_iterations_converge_monotonically_and_eval_freezes():
    conv = conv_spectral_norm(_conv(2, seed=2), SIZE, warmup=0)
    sigma = operator_norm(_conv(2, seed=2), SIZE)
    x = torch.randn(1, 3, SIZE, SIZE)
    conv.train()
    estimates = []
    for _ in range(150):
        conv(x)
        estimates.append(spectral_estimate(conv))
    assert all(b >= a * (1 - 1e-12) for a, b in zip(estimates, estimates[1:]))
    assert estimates[-1] == pytest.approx(sigma, rel=1e-8)
    conv.eval()
    u, v = _norm_of(conv)._u.clone(), _norm_of(conv)._v.clone()
    with torch.no_grad():
        _original(conv).mul_(3.0)
    for _ in range(3):
        conv(x)
    assert torch.equal(_norm_of(conv)._u, u) and torch.equal(_norm_of(conv)._v, v)
    assert spectral_estimate(conv) == pytest.approx(3.0 * estimates[-1], rel=1e-12)


def test_linear_estimate_matches_svd():
    torch.manual_seed(0)
    lin = nn.Linear(7, 5)
    sigma = float(torch.linalg.svdvals(lin.weight.detach())[0])
    linear_spectral_norm(lin, warmup=200)
    assert spectral_estimate(lin) == pytest.approx(sigma, rel=1e-10)
    assert operator_norm(lin) == pytest.approx(1.0, rel=1e-10)
    x = torch.randn(3, 7)
    torch.testing.assert_close(lin(x), F.linear(x, _original(lin) / spectral_estimate(lin), lin.bias))


@pytest.mark.parametrize("module", ["conv", "linear"])
def test_gradient_reaches_the_weight_only_through_w_over_sigma(module):
    if module == "conv":
        layer = conv_spectral_norm(_conv(2), SIZE, warmup=5)
        x = torch.randn(2, 3, SIZE, SIZE)
        norm = _norm_of(layer)

        def sigma_of(w, u, v):
            return (u * F.conv2d(v, w, None, 2, 1)).sum()
    else:
        torch.manual_seed(0)
        layer = linear_spectral_norm(nn.Linear(6, 4), warmup=5)
        x = torch.randn(3, 6)
        norm = layer.parametrizations.weight[0]

        def sigma_of(w, u, v):
            return u @ w @ v
    layer.train()
    y = layer(x)  # one power iteration, then σ̂ from the updated u, v
    c = torch.randn(y.shape)
    (y * c).sum().backward()
    # Reference: the same map with u, v as constants and the σ̂ path differentiated.
    w = _original(layer).detach().clone().requires_grad_(True)
    u, v = norm._u.clone(), norm._v.clone()
    call = F.conv2d if module == "conv" else F.linear
    args = dict(stride=2, padding=1) if module == "conv" else {}
    ref = call(x, w / sigma_of(w, u, v), layer.bias.detach(), **args)
    (grad,) = torch.autograd.grad((ref * c).sum(), w)
    torch.testing.assert_close(_original(layer).grad, grad, rtol=1e-10, atol=1e-12)
    # The σ̂ path matters: with σ̂ held fixed the gradient would differ.
    fixed = call(x, w / sigma_of(w, u, v).detach(), layer.bias.detach(), **args)
    (grad_fixed,) = torch.autograd.grad((fixed * c).sum(), w)
    assert float((grad - grad_fixed).abs().max()) > 1e-6


def test_two_training_forwards_before_one_backward():
    conv = conv_spectral_norm(_conv(1), SIZE)
    x = torch.randn(2, 3, SIZE, SIZE)
    loss = conv(x).square().sum() + conv(x + 0.1).square().sum()
    loss.backward()
    assert bool(torch.isfinite(_original(conv).grad).all())


@pytest.mark.parametrize("stride", [1, 2])
def test_state_dict_round_trip_without_a_forward(stride):
    src = conv_spectral_norm(_conv(stride, seed=1), SIZE)
    x = torch.randn(4, 3, SIZE, SIZE)
    for _ in range(3):  # a few gradient steps on the original weight and the bias
        src.zero_grad()
        src(x).square().mean().backward()
        with torch.no_grad():
            for p in src.parameters():
                p -= 0.1 * p.grad
    dst = conv_spectral_norm(_conv(stride, seed=2), SIZE)  # different weights and u, v
    dst.load_state_dict(src.state_dict())
    src.eval()
    dst.eval()
    torch.testing.assert_close(dst(x), src(x), rtol=0, atol=0)
    src.train()
    dst.train()
    torch.testing.assert_close(dst(x), src(x), rtol=0, atol=0)
    assert _norm_of(dst)._v.shape == (1, 3, SIZE, SIZE)


def test_tiny_sigma_leaves_the_weight_unchanged():
    conv = _conv(1)
    with torch.no_grad():
        conv.weight.zero_()
    conv_spectral_norm(conv, SIZE)
    assert torch.equal(conv.weight, torch.zeros_like(conv.weight))


def test_rectangular_input_and_dilation():
    conv = conv_spectral_norm(nn.Conv2d(2, 3, 3, stride=2, padding=2, dilation=2), (6, 9), warmup=400)
    sigma = float(torch.linalg.svdvals(conv_operator_matrix(conv, (6, 9), weight=_original(conv)))[0])
    assert spectral_estimate(conv) == pytest.approx(sigma, rel=1e-6)
    assert _norm_of(conv)._v.shape == (1, 2, 6, 9)


@pytest.mark.parametrize("size", [0, -3, (8,), (8, 0), "8", True, 2.5])
def test_bad_input_size_raises(size):
    with pytest.raises(ValueError, match="input_size"):
        conv_spectral_norm(_conv(1), size)


def test_input_smaller_than_the_kernel_raises():
    with pytest.raises(ValueError, match="input_size"):
        conv_spectral_norm(nn.Conv2d(1, 1, 5), 3)


@pytest.mark.parametrize("count", [0, -1, 1.5, True])
def test_bad_iteration_counts_raise(count):
    with pytest.raises(ValueError, match="n_power_iterations"):
        conv_spectral_norm(_conv(1), SIZE, n_power_iterations=count)
    with pytest.raises(ValueError, match="n_power_iterations"):
        linear_spectral_norm(nn.Linear(2, 2), n_power_iterations=count)


def test_bad_warmup_and_unsupported_layers_raise():
    with pytest.raises(ValueError, match="warmup"):
        conv_spectral_norm(_conv(1), SIZE, warmup=-1)
    with pytest.raises(ValueError, match="padding"):
        conv_spectral_norm(nn.Conv2d(1, 1, 3, padding="same"), SIZE)
    with pytest.raises(ValueError, match="padding"):
        conv_spectral_norm(nn.Conv2d(1, 1, 3, padding=1, padding_mode="circular"), SIZE)
    with pytest.raises(ValueError, match="already"):
        conv_spectral_norm(conv_spectral_norm(_conv(1), SIZE), SIZE)
    with pytest.raises(TypeError):
        conv_spectral_norm(nn.Linear(2, 2), SIZE)
    with pytest.raises(ValueError, match="not normalised"):
        spectral_estimate(nn.Linear(2, 2))


# torch.func's first use scripts a helper with torch.jit, which warns of its own deprecation.
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_eval_mode_composes_with_torch_func_transforms():
    conv = conv_spectral_norm(nn.Conv2d(2, 2, 3, padding=1), 4).eval()
    x = torch.randn(1, 2, 4, 4)

    def f(inp):
        return torch.tanh(conv(inp)).square().sum()

    v = torch.randn(1, 2, 4, 4)
    _, hv_forward = torch.func.jvp(torch.func.grad(f), (x,), (v,))  # forward-over-reverse
    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(f(xr), xr, create_graph=True)
    (hv,) = torch.autograd.grad((grad * v).sum(), xr)  # double backward
    torch.testing.assert_close(hv_forward, hv, rtol=1e-10, atol=1e-12)
