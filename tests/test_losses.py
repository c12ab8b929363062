"""The loss registry: values against torch, closed-form derivatives against autograd, sampled targets."""
import pytest
import torch
import torch.nn.functional as F

from curvlab import isaac_kfac, losses

N, C = 5, 3


def outputs_targets(name, seed=0):
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(N, C, generator=g, dtype=torch.float64)
    if name == "cross_entropy":
        return f, torch.randint(0, C, (N,), generator=g)
    if name == "soft":
        return f, torch.softmax(torch.randn(N, C, generator=g, dtype=torch.float64), -1)
    return f, torch.randn(N, C, generator=g, dtype=torch.float64)


def test_values_follow_the_documented_conventions():
    f, y = outputs_targets("mse")
    sq = (f - y).square()
    expected = {"mse": F.mse_loss(f, y), "half_mse": sq.mean() / 2, "sum_squared": sq.sum() / N,
                "half_sum_squared": sq.sum() / (2 * N)}
    for name, value in expected.items():
        torch.testing.assert_close(losses.loss_function(name)(f, y), value)
    f, y = outputs_targets("cross_entropy")
    torch.testing.assert_close(losses.loss_function("cross_entropy")(f, y), F.cross_entropy(f, y))
    torch.testing.assert_close(losses.log_softmax_classes(f), torch.log_softmax(f, -1))


@pytest.mark.parametrize("name", [*losses.LOSSES, "soft"])
def test_closed_form_derivatives_match_autograd(name):
    loss = "cross_entropy" if name == "soft" else name
    f, y = outputs_targets(name)
    d = losses.loss_derivatives(loss, f, y)
    fn = losses.loss_function(loss)
    torch.testing.assert_close(d.value, fn(f, y))
    torch.testing.assert_close(d.gradient, torch.func.grad(lambda o: fn(o, y))(f), rtol=1e-12, atol=1e-14)
    H = torch.func.hessian(lambda o: fn(o.reshape(N, C), y))(f.reshape(-1))
    v = torch.randn(N, C, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    torch.testing.assert_close(d.hessian_product(v).reshape(-1), H @ v.reshape(-1), rtol=1e-12, atol=1e-14)


def test_unknown_loss_and_bad_shapes_raise():
    with pytest.raises(ValueError, match="loss"):
        losses.loss_function("hinge")
    with pytest.raises(ValueError, match="loss"):
        losses.sample_targets("hinge", torch.zeros(2, 2))
    with pytest.raises(ValueError, match="samples"):
        losses.sample_targets("mse", torch.zeros(2, 2), samples=0)
    with pytest.raises(ValueError, match="logits"):
        losses.loss_function("cross_entropy")(torch.zeros(2, 3, 4), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="targets"):
        losses.loss_function("mse")(torch.zeros(2, 3), torch.zeros(5))


@pytest.mark.parametrize("name", losses.LOSSES)
def test_sampled_gradients_estimate_the_loss_hessian(name):
    """E[g_i g_i^T] over sampled targets = d^2 l_i / d f_i^2 (the Fisher = GGN factor), per sample."""
    f, y = outputs_targets(name)
    fn = losses.loss_function(name)
    draws = losses.sample_targets(name, f, samples=8000, generator=torch.Generator().manual_seed(0))
    grads = torch.stack([losses.loss_derivatives(name, f, t).gradient for t in draws]) * N   # of each l_i
    fisher = torch.einsum("sic,sid->icd", grads, grads) / len(draws)
    H = torch.func.hessian(lambda o: fn(o.reshape(N, C), y))(f.reshape(-1)).reshape(N, C, N, C) * N
    expected = torch.stack([H[i, :, i, :] for i in range(N)])
    torch.testing.assert_close(fisher, expected, rtol=0.1, atol=0.05 * float(expected.abs().max()))


def test_isaac_kfac_uses_the_registry():
    f, _ = outputs_targets("mse")
    f.requires_grad_(True)
    gen = torch.Generator().manual_seed(3)
    (got,) = isaac_kfac.sampled_output_gradients(f, [f], "half_mse", samples=2, generator=gen)
    draws = losses.sample_targets("half_mse", f, samples=2, generator=torch.Generator().manual_seed(3))
    expected = torch.cat([torch.func.grad(lambda o, t=t: losses.loss_function("half_mse")(o, t))(f.detach())
                          for t in draws])
    torch.testing.assert_close(got, expected)
    with pytest.raises(ValueError, match="loss"):
        isaac_kfac.sampled_output_gradients(f, [f], "hinge")
