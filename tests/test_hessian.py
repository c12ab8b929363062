"""HessianOperator and the per-sample input products against dense torch.func.hessian (float64)."""
import pytest
import torch
from torch import nn

from curvlab import curvature as cv
from curvlab.linalg import flatten, unflatten_like

N = 4


def problem(kind, seed=0):
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    if kind == "mlp":
        model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).double()
        x = torch.randn(N, 5, generator=g, dtype=torch.float64)
    else:   # smooth activations: the input Hessian of a ReLU network is zero almost everywhere
        model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Softplus(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3),
                              nn.Tanh()).double()
        x = torch.randn(N, 1, 6, 6, generator=g, dtype=torch.float64)
    return model, x, torch.randint(0, 3, (N,), generator=g)


def dense_hessian(model, loss, x, y):
    names, params = cv._resolve_params(model, None)
    f, loss_fn = cv.model_function(model, x, names), cv.loss_function(loss)
    return torch.func.hessian(lambda t: loss_fn(f(*unflatten_like(t, params)), y))(flatten(params)), params


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
@pytest.mark.parametrize("method", ["linearize", "double_backward"])
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_hessian_operator_matches_dense(kind, method, loss):
    model, x, y = problem(kind)
    if loss == "mse":
        y = torch.randn(N, 3, dtype=torch.float64)
    H, params = dense_hessian(model, loss, x, y)
    op = cv.HessianOperator(model, loss, x, y, method=method)
    g = torch.Generator().manual_seed(3)
    V = torch.randn(H.shape[0], 5, generator=g, dtype=torch.float64)
    tol = dict(rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(flatten(op(unflatten_like(V[:, 0], params))), H @ V[:, 0], **tol)
    for vmap in (True, False):
        torch.testing.assert_close(op.matmat(V, vmap=vmap), H @ V, rtol=1e-10, atol=1e-12)
        columns = [unflatten_like(V[:, j], params) for j in range(5)]
        block = [torch.stack([c[i] for c in columns]) for i in range(len(params))]
        got = op.matmat(block, vmap=vmap)
        torch.testing.assert_close(torch.cat([b.reshape(5, -1) for b in got], 1).T, H @ V, **tol)
    names = cv.parameter_names(model)
    expected_g = torch.func.grad(lambda t: cv.loss_function(loss)(
        cv.model_function(model, x, names)(*unflatten_like(t, params)), y))(flatten(params))
    torch.testing.assert_close(flatten(op.gradient()), expected_g, rtol=1e-10, atol=1e-12)


def test_hessian_operator_refuses_bad_input():
    model, x, y = problem("mlp")
    with pytest.raises(ValueError, match="method"):
        cv.HessianOperator(model, "cross_entropy", x, y, method="bogus")
    with pytest.raises(ValueError, match="loss"):
        cv.HessianOperator(model, "hinge", x, y)
    op = cv.HessianOperator(model, "cross_entropy", x, y)
    with pytest.raises(ValueError, match="vector"):
        op([torch.zeros(3)])
    with pytest.raises(ValueError, match="block"):
        op.matmat(torch.zeros(7, 2, dtype=torch.float64))


def per_sample_dense(model, loss, x, y):
    """nabla_x l_i and nabla_x^2 l_i of each sample alone, by torch.func on a batch of one."""
    loss_fn = cv.loss_function(loss)

    def l_i(xi, yi):
        return loss_fn(model(xi[None]), yi[None])
    grads = torch.stack([torch.func.grad(l_i)(x[i], y[i]) for i in range(N)])
    hessians = [torch.func.hessian(l_i)(x[i], y[i]).reshape(x[i].numel(), x[i].numel()) for i in range(N)]
    return grads, hessians


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_input_products_match_per_sample_dense(kind, loss):
    model, x, y = problem(kind)
    if loss == "mse":
        y = torch.randn(N, 3, dtype=torch.float64)
    model.eval()
    grads, hessians = per_sample_dense(model, loss, x, y)
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    model.train()
    got = cv.input_hessian_vector_product(model, loss, x, y, v)
    expected = torch.stack([(hessians[i] @ v[i].reshape(-1)).reshape(x[i].shape) for i in range(N)])
    assert expected.abs().max() > 1e-3                      # a real test: the Hessians are not zero
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(cv.input_gradient(model, loss, x, y), grads, rtol=1e-10, atol=1e-12)
    assert model.training and all(m.training for m in model.modules())   # mode restored


def test_input_products_run_in_eval_mode_and_restore_each_mode():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Dropout(0.5),
                          nn.Linear(4, 3)).double()
    model[1].running_mean.uniform_()
    model[3].eval()                                          # a mixed state must come back as it was
    x, y = torch.randn(N, 5, dtype=torch.float64), torch.arange(N) % 3
    before = model[1].running_mean.clone()
    first = cv.input_gradient(model, "cross_entropy", x, y)
    torch.testing.assert_close(cv.input_gradient(model, "cross_entropy", x, y), first)   # no dropout
    assert torch.equal(model[1].running_mean, before)        # no statistics updated
    assert [m.training for m in model.modules()] == [True, True, True, True, False, True]
    with pytest.raises(ValueError, match="v must"):
        cv.input_hessian_vector_product(model, "cross_entropy", x, y, torch.zeros(N, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="empty"):
        cv.input_gradient(model, "cross_entropy", x[:0], y[:0])
