"""PGD-ℓ2, robust accuracy and gradient stability against closed forms for linear classifiers (float64)."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from curvlab.lcnn.robustness import gradient_stability, pgd_l2, robust_accuracy

pytestmark = pytest.mark.usefixtures("float64", "one_thread")


def binary_linear(seed=0, d=6):
    torch.manual_seed(seed)
    return nn.Linear(d, 2)


def margins(lin, x, y):
    """m_i = (w_y − w_o)ᵀx_i + b_y − b_o and d_i = w_y − w_o for a two-class linear classifier."""
    w, b = lin.weight.detach(), lin.bias.detach()
    sign = (2 * y - 1).to(w.dtype)[:, None]                  # +1 for class 1, −1 for class 0
    d = sign * (w[1] - w[0])
    return (d * x).sum(1) + sign[:, 0] * (b[1] - b[0]), d


def tiny_cnn():
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.Softplus(beta=3.0),
                         nn.Flatten(), nn.Linear(3 * 16, 3))


def image_batch(n=6, seed=2):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 2, 4, 4, generator=g), torch.randint(0, 3, (n,), generator=g)


def test_pgd_reaches_the_closed_form_worst_case_of_a_linear_classifier():
    """max over ‖δ‖ ≤ ε of softplus(−m(x + δ)) is at δ* = −ε d/‖d‖, with loss softplus(ε‖d‖ − m)."""
    lin = binary_linear()
    x, y = torch.randn(5, 6, generator=torch.Generator().manual_seed(3)), torch.tensor([0, 1, 1, 0, 1])
    m, d = margins(lin, x, y)
    eps = 0.3
    adv = pgd_l2(lin, x, y, eps, random_start=False, clamp=None)
    unit = d / d.norm(dim=1, keepdim=True)
    torch.testing.assert_close(adv, x - eps * unit, rtol=0, atol=1e-12)
    worst = F.softplus(eps * d.norm(dim=1) - m)
    torch.testing.assert_close(F.cross_entropy(lin(adv), y, reduction="none"), worst, rtol=1e-12, atol=0)
    started = pgd_l2(lin, x, y, eps, steps=60, step_size=eps / 4, seed=4, clamp=None)   # random start
    assert ((started - x).norm(dim=1) <= eps * (1 + 1e-12)).all()
    torch.testing.assert_close(F.cross_entropy(lin(started), y, reduction="none"), worst, rtol=1e-6, atol=0)


def test_pgd_stays_in_the_ball_and_the_box_and_increases_the_loss():
    model = tiny_cnn()
    with torch.no_grad():
        model.train()
        model(torch.rand(16, 2, 4, 4))
    model.train()
    modes = [m.training for m in model.modules()]
    buffers = {k: b.clone() for k, b in model.named_buffers()}
    x, y = image_batch()
    for eps in (0.1, 0.5, 2.0):
        adv = pgd_l2(model, x, y, eps, steps=10, seed=1)
        assert ((adv - x).reshape(6, -1).norm(dim=1) <= eps * (1 + 1e-12)).all()
        assert adv.min() >= 0.0 and adv.max() <= 1.0
        model.eval()
        with torch.no_grad():
            clean = F.cross_entropy(model(x), y, reduction="none")
            attacked = F.cross_entropy(model(adv), y, reduction="none")
        model.train()
        assert (attacked > clean).all()
    assert [m.training for m in model.modules()] == modes
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(b, buffers[k]) for k, b in model.named_buffers())
    assert torch.equal(pgd_l2(model, x, y, 0.0), x)
    a, b = pgd_l2(model, x, y, 0.5, steps=2, seed=7), pgd_l2(model, x, y, 0.5, steps=2, seed=7)
    assert torch.equal(a, b)


def test_robust_accuracy_of_a_linear_classifier_is_the_margin_count():
    """Sample i stays correct at radius r exactly when m_i > r ‖d_i‖."""
    lin = binary_linear(seed=5, d=4)
    g = torch.Generator().manual_seed(6)
    x, y = torch.randn(23, 4, generator=g), torch.randint(0, 2, (23,), generator=g)
    m, d = margins(lin, x, y)
    radii = [0.0, 0.05, 0.2, 0.6]
    acc = robust_accuracy(lin, x, y, radii, steps=10, batch_size=7, random_start=False, clamp=None)
    assert list(acc) == radii
    for r in radii:
        assert acc[r] == float((m > r * d.norm(dim=1)).double().mean())
    assert acc[0.0] >= acc[0.05] >= acc[0.2] >= acc[0.6]


def test_gradient_stability_is_one_for_zero_noise_and_for_a_linear_classifier():
    model = tiny_cnn().eval()
    x, y = image_batch()
    torch.testing.assert_close(gradient_stability(model, x, y, sigma=0.0, n_draws=2),
                               torch.ones(6), rtol=0, atol=1e-12)
    lin = binary_linear()
    xl, yl = torch.randn(5, 6), torch.tensor([0, 1, 1, 0, 1])
    torch.testing.assert_close(gradient_stability(lin, xl, yl, sigma=3.0, n_draws=3),
                               torch.ones(5), rtol=0, atol=1e-12)


def test_gradient_stability_is_the_mean_cosine_of_explicit_gradients():
    model = tiny_cnn().eval()
    x, y = image_batch()

    def grads(inputs):
        return torch.stack([torch.func.grad(lambda xi, i=i: F.cross_entropy(model(xi[None]), y[i:i + 1]))(
            inputs[i]).reshape(-1) for i in range(6)])
    gen = torch.Generator().manual_seed(9)
    noises = [torch.randn(x.shape, generator=gen) for _ in range(2)]
    clean = grads(x)
    expected = sum(F.cosine_similarity(clean, grads(x + 0.2 * z), dim=1) for z in noises) / 2
    got = gradient_stability(model, x, y, sigma=0.2, n_draws=2, seed=9)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    assert (got < 1 - 1e-6).all() and (got > -1).all()


@pytest.mark.parametrize("kwargs,name", [({"eps": -0.1}, "eps"), ({"eps": math.nan}, "eps"),
                                         ({"eps": math.inf}, "eps"), ({"steps": 0}, "steps"),
                                         ({"steps": 2.0}, "steps"), ({"step_size": 0.0}, "step_size"),
                                         ({"step_size": -1.0}, "step_size"), ({"seed": -1}, "seed"),
                                         ({"clamp": (1.0, 0.0)}, "clamp"), ({"loss": "hinge"}, "loss")])
def test_pgd_invalid_arguments(kwargs, name):
    x, y = image_batch(2)
    args = {"eps": 0.1, **kwargs}
    with pytest.raises(ValueError, match=name):
        pgd_l2(tiny_cnn(), x, y, **args)


def test_invalid_radii_draws_and_box():
    model = tiny_cnn()
    x, y = image_batch(2)
    for radii in ([], [-0.1], [0.1, math.nan], 0.1, None):
        with pytest.raises(ValueError, match="radii"):
            robust_accuracy(model, x, y, radii)
    with pytest.raises(ValueError, match="batch_size"):
        robust_accuracy(model, x, y, [0.1], batch_size=0)
    with pytest.raises(ValueError, match="step_size_factor"):
        robust_accuracy(model, x, y, [0.1], step_size_factor=0.0)
    with pytest.raises(ValueError, match="box"):
        pgd_l2(model, x + 2.0, y, 0.1)
    with pytest.raises(ValueError, match="sigma"):
        gradient_stability(model, x, y, sigma=-1.0)
    with pytest.raises(ValueError, match="n_draws"):
        gradient_stability(model, x, y, sigma=0.1, n_draws=0)
