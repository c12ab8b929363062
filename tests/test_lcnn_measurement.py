"""Per-sample input-space curvature by the power method, against dense float64 input Hessians."""
import math

import pytest
import torch
from torch import nn

from curvlab.lcnn.activations import CenteredSoftplus
from curvlab.lcnn.batchnorm import LipschitzBatchNorm2d
from curvlab.lcnn.measurement import CurvatureResult, measure_curvature, measure_dataset
from curvlab.losses import loss_function

pytestmark = pytest.mark.usefixtures("float64", "one_thread")


def tiny_cnn(classes=3, seed=0, beta=4.0):
    """conv(2->3) - clipped BN - centred softplus - conv(3->2) - softplus - pool - linear(2*4 -> classes)."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), LipschitzBatchNorm2d(3, gamma_init=3.0),
                          CenteredSoftplus(beta), nn.Conv2d(3, 2, 3, padding=1), nn.Softplus(beta=2.0),
                          nn.AvgPool2d(2), nn.Flatten(), nn.Linear(2 * 4, classes))
    with torch.no_grad():                       # non-trivial running statistics for eval mode
        model.train()
        model(torch.rand(16, 2, 4, 4))
    return model


def batch(n=4, classes=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 2, 4, 4, generator=g), torch.randint(0, classes, (n,), generator=g)


def dense_reference(model, x, y, loss="cross_entropy"):
    """Dense per-sample input Hessians (N, d, d) and gradients (N, d) of each sample's loss, eval mode.

    From the Hessian of the summed loss over the whole batch: its diagonal blocks are the per-sample
    Hessians, and its off-diagonal blocks must vanish (eval-mode samples do not interact).
    """
    model.eval()
    fn = loss_function(loss)
    n, d = x.shape[0], x[0].numel()

    def summed(xx):
        return fn(model(xx), y) * n
    H = torch.func.hessian(summed)(x).reshape(n, d, n, d)
    blocks = torch.stack([H[i, :, i] for i in range(n)])
    off = H.clone()
    for i in range(n):
        off[i, :, i] = 0
    assert off.abs().max() < 1e-12
    return blocks, torch.func.grad(summed)(x).reshape(n, d)


def dense_power_method(H, start, iters):
    """The reference estimator on dense matrices: normalise, iters updates u <- Hu/|Hu|, then u^T H u."""
    u = start.reshape(start.shape[0], -1)
    u = u / u.norm(dim=1, keepdim=True)
    for _ in range(iters):
        w = (H @ u[..., None])[..., 0]
        u = w / w.norm(dim=1, keepdim=True)
    return ((H @ u[..., None])[..., 0] * u).sum(1)


def top_abs(hessians):
    ev = torch.linalg.eigvalsh(hessians)
    return ev.gather(1, ev.abs().argmax(1, keepdim=True)).squeeze(1), ev


def test_reproduces_the_reference_estimator_on_the_dense_hessian():
    """Default iters=10: the same start (seed) through the dense reference recursion gives the same λ̂."""
    model = tiny_cnn()
    x, y = batch()
    H, g = dense_reference(model, x, y)
    torch.testing.assert_close(H, H.transpose(1, 2), rtol=0, atol=1e-12)
    model.train()
    res = measure_curvature(model, x, y, seed=3, tol=0.0)
    assert (res.iterations == 11).all()         # 10 power updates after the start, then λ̂ = uᵀHu
    assert not res.converged.any()              # tol = 0 never flags
    start = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    lam = dense_power_method(H, start, 10)
    torch.testing.assert_close(res.eigenvalue, lam, rtol=1e-10, atol=0)
    torch.testing.assert_close(res.hessian_norm, lam.abs(), rtol=1e-10, atol=0)
    torch.testing.assert_close(res.gradient_norm, g.norm(dim=1), rtol=1e-10, atol=0)
    torch.testing.assert_close(res.curvature, lam.abs() / (g.norm(dim=1) + 1e-6), rtol=1e-10, atol=0)
    assert len(res) == 4
    other = measure_curvature(model, x, y, iters=1, seed=4, tol=0.0)
    start = torch.randn(x.shape, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(other.eigenvalue, dense_power_method(H, start, 1), rtol=1e-10, atol=0)
    assert not torch.equal(other.eigenvalue, res.eigenvalue)


def test_power_method_curvature_matches_eigvalsh_of_the_dense_input_hessian():
    model = tiny_cnn(classes=2, seed=1, beta=1.0)
    x, y = batch(classes=2)
    H, g = dense_reference(model, x, y)
    top, ev = top_abs(H)
    ratio = ev.abs().sort(1, descending=True).values[:, 1] / top.abs()
    assert (ratio < 0.7).all()                  # a spectral gap: 40 products are ample
    res = measure_curvature(model, x, y, iters=40, tol=1e-10)
    assert res.converged.all() and (res.iterations < 41).all()      # stopped early, all converged
    torch.testing.assert_close(res.eigenvalue, top, rtol=1e-7, atol=0)
    torch.testing.assert_close(res.curvature, top.abs() / (g.norm(dim=1) + 1e-6), rtol=1e-7, atol=0)
    assert (res.residual_norm < 1e-3 * top.abs()).all()


def test_exact_on_a_linear_model_with_squared_error():
    """l = ½‖Wx + b − y‖²: input Hessian WᵀW, top eigenvalue σ_max(W)², gradient Wᵀ(Wx + b − y)."""
    lin = nn.Linear(5, 3)
    q, _ = torch.linalg.qr(torch.randn(5, 5, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        lin.weight.copy_(torch.diag(torch.tensor([3.0, 1.0, 0.5])) @ q[:3])    # singular values 3, 1, 0.5
    x, y = torch.randn(6, 5), torch.randn(6, 3)
    res = measure_curvature(lin, x, y, iters=20, tol=1e-13, loss="half_sum_squared")
    torch.testing.assert_close(res.eigenvalue, torch.full((6,), 9.0), rtol=1e-12, atol=0)
    assert res.converged.all()
    with torch.no_grad():
        grad = (lin(x) - y) @ lin.weight
    torch.testing.assert_close(res.gradient_norm, grad.norm(dim=1), rtol=1e-12, atol=0)
    torch.testing.assert_close(res.curvature, 9.0 / (grad.norm(dim=1) + 1e-6), rtol=1e-12, atol=0)


def test_restores_modes_leaves_parameters_and_statistics_alone():
    model = tiny_cnn()
    model.train()
    model[4].eval()                             # a mixed state must come back as it was
    modes = [m.training for m in model.modules()]
    sentinel = torch.full_like(model[0].weight, 7.0)
    model[0].weight.grad = sentinel.clone()
    buffers = {k: b.clone() for k, b in model.named_buffers()}
    x, y = batch()
    x.requires_grad_(True)
    measure_curvature(model, x, y, iters=1)
    assert [m.training for m in model.modules()] == modes
    assert torch.equal(model[0].weight.grad, sentinel)
    assert all(p.grad is None for n, p in model.named_parameters() if n != "0.weight")
    assert all(torch.equal(b, buffers[k]) for k, b in model.named_buffers())
    assert x.grad is None


def test_measure_dataset_holds_exactly_the_samples_and_summary_averages_them():
    model = tiny_cnn()
    x, y = batch(10, seed=2)
    res = measure_dataset(model, x, y, batch_size=4, iters=2, seed=5, tol=0.0)
    assert len(res) == 10 and res.iterations.tolist() == [3] * 10
    H, g = dense_reference(model, x, y)
    gen = torch.Generator().manual_seed(5)      # one generator draws the starts batch after batch
    starts = torch.cat([torch.randn((k, 2, 4, 4), generator=gen) for k in (4, 4, 2)])
    torch.testing.assert_close(res.eigenvalue, dense_power_method(H, starts, 2), rtol=1e-10, atol=0)
    torch.testing.assert_close(res.gradient_norm, g.norm(dim=1), rtol=1e-10, atol=0)
    s = res.summary()
    assert s["n"] == 10 and s["converged_fraction"] == 0.0
    torch.testing.assert_close(torch.tensor(s["curvature_mean"]), res.curvature.mean(), rtol=1e-12, atol=0)
    torch.testing.assert_close(torch.tensor(s["gradient_norm_std"]), g.norm(dim=1).std(), rtol=1e-9, atol=0)
    padded = torch.cat([res.curvature, torch.zeros(2)])     # the reference's 3 x 4 array with 2 unfilled
    assert s["curvature_mean"] > float(padded.mean()) * 1.15


def test_summary_on_known_values():
    t = torch.tensor
    r = CurvatureResult(curvature=t([1.0, 2.0, 6.0]), hessian_norm=t([2.0, 2.0, 2.0]),
                        gradient_norm=t([0.0, 1.0, 2.0]), eigenvalue=t([-2.0, 2.0, 2.0]),
                        converged=t([True, False, True]), iterations=t([3, 3, 3]), residual_norm=t([0.0] * 3))
    s = r.summary()
    assert s["curvature_mean"] == 3.0 and math.isclose(s["curvature_std"], math.sqrt(7.0))
    assert s["hessian_norm_std"] == 0.0 and s["gradient_norm_mean"] == 1.0
    assert math.isclose(s["converged_fraction"], 2 / 3)
    one = CurvatureResult.concatenate([r, r])
    assert len(one) == 6 and one.summary()["curvature_mean"] == 3.0
    single = CurvatureResult(**{k: v[:1] for k, v in r.__dict__.items()}).summary()
    assert single["curvature_mean"] == 1.0 and math.isnan(single["curvature_std"])


@pytest.mark.parametrize("kwargs,name", [({"iters": 0}, "iters"), ({"iters": 2.5}, "iters"),
                                         ({"iters": True}, "iters"), ({"eps": -1e-6}, "eps"),
                                         ({"eps": math.inf}, "eps"), ({"seed": -1}, "seed"),
                                         ({"tol": -1.0}, "tol"), ({"loss": "hinge"}, "loss")])
def test_invalid_arguments(kwargs, name):
    model = tiny_cnn()
    x, y = batch()
    with pytest.raises(ValueError, match=name):
        measure_curvature(model, x, y, **kwargs)
    with pytest.raises(ValueError, match=name):
        measure_dataset(model, x, y, **kwargs)
    with pytest.raises(ValueError, match="batch_size"):
        measure_dataset(model, x, y, batch_size=0)
    with pytest.raises(ValueError, match="targets"):
        measure_curvature(model, x, y[:2])
