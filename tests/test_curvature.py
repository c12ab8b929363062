"""Curvature products against dense float64 matrices built from explicit Jacobians."""
import warnings

import pytest
import torch
import torch.nn.functional as F
from _dense import dense_ggn
from torch import nn

from curvlab import curvature as cv
from curvlab import models

N = 6          # batch
C = 3          # outputs


def tiny_mlp():
    return models.mlp([5, 4, 3], "tanh").double()


def tiny_cnn():
    # conv(1->2, 3x3) on 6x6 -> relu -> maxpool 2 -> flatten (8) -> linear -> 3
    return models.conv_net((1, 6, 6), [(2, 3)], [], n_classes=C).double()


def make_problem(kind, loss, seed=0):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = tiny_mlp() if kind == "mlp" else tiny_cnn()
    x = torch.randn(N, 5, generator=g, dtype=torch.float64) if kind == "mlp" else \
        torch.randn(N, 1, 6, 6, generator=g, dtype=torch.float64)
    if loss == "cross_entropy":
        y = torch.randint(0, C, (N,), generator=g)
    elif loss == "cross_entropy_soft":
        y = torch.softmax(torch.randn(N, C, generator=g, dtype=torch.float64), -1)
    else:
        y = torch.randn(N, C, generator=g, dtype=torch.float64)
    return model, x, y


def loss_name(loss):
    return "cross_entropy" if loss == "cross_entropy_soft" else loss


def random_vector(params, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in params]


LOSS_CASES = ["cross_entropy", "cross_entropy_soft", "mse", "half_mse", "sum_squared", "half_sum_squared"]


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
@pytest.mark.parametrize("loss", LOSS_CASES)
def test_ggn_vector_product_matches_dense(kind, loss):
    model, x, y = make_problem(kind, loss)
    G, params = dense_ggn(model, loss_name(loss), x, y)
    v = random_vector(params)
    expected = G @ cv.flatten(v)
    for method in cv.METHODS:
        got = cv.flatten(cv.ggn_vector_product(model, loss_name(loss), x, y, v, method=method))
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    # the GGN is symmetric PSD for these convex losses
    torch.testing.assert_close(G, G.T)
    assert torch.linalg.eigvalsh(G).min() > -1e-10


@pytest.mark.parametrize("method", cv.METHODS)
@pytest.mark.parametrize("kind,loss", [("mlp", "cross_entropy"), ("cnn", "cross_entropy"),
                                       ("mlp", "mse"), ("cnn", "sum_squared")])
def test_operator_matches_dense_and_one_shot(kind, loss, method):
    model, x, y = make_problem(kind, loss)
    G, params = dense_ggn(model, loss, x, y)
    op = cv.GGNOperator(model, loss, x, y, method=method)
    assert op.method == method
    for seed in (1, 2, 3):                                 # many products at one point
        v = random_vector(params, seed)
        got = op(v)
        torch.testing.assert_close(cv.flatten(got), G @ cv.flatten(v), rtol=1e-10, atol=1e-12)
        one_shot = cv.ggn_vector_product(model, loss, x, y, v, method="jvp")
        for a, b in zip(got, one_shot):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13)
    # loss and gradient from the same linearisation
    ref_params = [p.detach().clone().requires_grad_(True) for p in model.parameters()]
    ref_loss = cv.loss_function(loss)(cv.model_function(model, x)(*ref_params), y)
    ref_grad = torch.autograd.grad(ref_loss, ref_params)
    torch.testing.assert_close(op.loss, ref_loss.detach())
    for a, b in zip(op.gradient, ref_grad):
        torch.testing.assert_close(a, b)


def test_operator_at_explicit_params_does_not_touch_model():
    model, x, y = make_problem("mlp", "cross_entropy")
    before = [p.detach().clone() for p in model.parameters()]
    shifted = [p.detach() + 0.1 for p in model.parameters()]
    v = random_vector(shifted)
    expected = cv.ggn_vector_product(model, "cross_entropy", x, y, v, params=shifted)
    with torch.no_grad():                                  # move the model to the shifted point
        for p, s in zip(model.parameters(), shifted):
            p.copy_(s)
    at_model = cv.GGNOperator(model, "cross_entropy", x, y)(v)
    for a, b in zip(expected, at_model):
        torch.testing.assert_close(a, b)
    with torch.no_grad():
        for p, s in zip(model.parameters(), before):
            p.copy_(s)
    named = dict(zip(cv.parameter_names(model), shifted))
    by_name = cv.GGNOperator(model, "cross_entropy", x, y, params=named)(v)
    for a, b in zip(expected, by_name):
        torch.testing.assert_close(a, b)
    for p, b in zip(model.parameters(), before):
        assert torch.equal(p, b)


class PartlyUnused(nn.Module):
    def __init__(self):
        super().__init__()
        self.used = nn.Linear(4, 3)
        self.unused = nn.Parameter(torch.randn(2))
        self.register_buffer("scale", torch.tensor(2.0))

    def forward(self, x):
        return self.used(x) * self.scale


@pytest.mark.parametrize("method", cv.METHODS)
def test_unused_parameters_and_buffers(method):
    torch.manual_seed(0)
    model = PartlyUnused().double()
    x, y = torch.randn(N, 4, dtype=torch.float64), torch.randint(0, 3, (N,))
    G, params = dense_ggn(model, "cross_entropy", x, y)
    v = random_vector(params)
    got = cv.GGNOperator(model, "cross_entropy", x, y, method=method)(v)
    torch.testing.assert_close(cv.flatten(got), G @ cv.flatten(v))
    unused = cv.parameter_names(model).index("unused")
    assert got[unused].shape == (2,) and torch.count_nonzero(got[unused]) == 0   # its block is zero


def test_traced_at_params_that_are_views_of_one_flat_vector():
    model, x, y = make_problem("mlp", "cross_entropy")
    cv.clear_trace_cache(model)
    flat = cv.flatten([p.detach() for p in model.parameters()])
    views = cv.unflatten_like(flat, list(model.parameters()))
    with warnings.catch_warnings():
        warnings.simplefilter("error")                     # no fallback to method="jvp"
        op = cv.GGNOperator(model, "cross_entropy", x[1:], y[1:], params=views)
    assert op.method == "traced"
    v = random_vector(views)
    reference = cv.ggn_vector_product(model, "cross_entropy", x[1:], y[1:], v, method="jvp")
    for a, b in zip(op(v), reference):
        torch.testing.assert_close(a, b)


def test_untraceable_model_falls_back_to_jvp():
    class DataDependent(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(5, 3)

        def forward(self, x):
            out = self.lin(x)
            return out if out.sum() > 0 else -out          # Python branch on a tensor value

    torch.manual_seed(0)
    model = DataDependent().double()
    x, y = torch.randn(N, 5, dtype=torch.float64), torch.randint(0, 3, (N,))
    with pytest.warns(UserWarning, match="falling back"):
        op = cv.GGNOperator(model, "cross_entropy", x, y)
    assert op.method == "jvp"
    G, params = dense_ggn(model, "cross_entropy", x, y)
    v = random_vector(params)
    torch.testing.assert_close(cv.flatten(op(v)), G @ cv.flatten(v))


def test_traced_linearisation_is_cached_per_shape():
    model, x, y = make_problem("mlp", "cross_entropy")
    cv.clear_trace_cache(model)
    cv.GGNOperator(model, "cross_entropy", x, y)
    cv.GGNOperator(model, "cross_entropy", x + 1, y)
    assert len(cv._TRACE_CACHE[model]) == 1
    cv.GGNOperator(model, "cross_entropy", x[:3], y[:3])
    assert len(cv._TRACE_CACHE[model]) == 2


def test_traced_graph_drops_zero_tangent_work():
    model, x, y = make_problem("mlp", "cross_entropy")
    cv.clear_trace_cache(model)
    cv.GGNOperator(model, "cross_entropy", x, y)
    split = next(iter(cv._TRACE_CACHE[model].values()))
    targets = {str(n.target) for g in (split.primal.graph, split.tangent.graph) for n in g.nodes}
    assert "aten.zeros.default" not in targets              # no matmul of the input's zero tangent


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_hessian_vector_product_matches_dense_hessian(kind):
    model, x, y = make_problem(kind, "cross_entropy")
    names, params = cv._resolve_params(model, None)
    f = cv.model_function(model, x, names)
    loss_fn = cv.loss_function("cross_entropy")
    sizes = [p.numel() for p in params]

    def flat_loss(theta):
        return loss_fn(f(*cv.unflatten_like(theta, params)), y)
    H = torch.func.hessian(flat_loss)(cv.flatten(params))
    v = random_vector(params)
    got = cv.hessian_vector_product(model, "cross_entropy", x, y, v)
    assert [g.numel() for g in got] == sizes
    torch.testing.assert_close(cv.flatten(got), H @ cv.flatten(v), rtol=1e-10, atol=1e-12)


def test_ggn_equals_hessian_for_linear_least_squares():
    torch.manual_seed(0)
    model = nn.Linear(4, 2).double()
    x, y = torch.randn(N, 4, dtype=torch.float64), torch.randn(N, 2, dtype=torch.float64)
    v = random_vector(list(model.parameters()))
    ggn = cv.ggn_vector_product(model, "mse", x, y, v)
    hvp = cv.hessian_vector_product(model, "mse", x, y, v)
    for a, b in zip(ggn, hvp):
        torch.testing.assert_close(a, b)


def test_loss_conventions():
    g = torch.Generator().manual_seed(0)
    out = torch.randn(N, C, generator=g, dtype=torch.float64)
    y = torch.randn(N, C, generator=g, dtype=torch.float64)
    sse = ((out - y) ** 2).sum()
    torch.testing.assert_close(cv.loss_function("mse")(out, y), F.mse_loss(out, y))
    torch.testing.assert_close(cv.loss_function("half_mse")(out, y), 0.5 * F.mse_loss(out, y))
    torch.testing.assert_close(cv.loss_function("sum_squared")(out, y), sse / N)
    torch.testing.assert_close(cv.loss_function("half_sum_squared")(out, y), 0.5 * sse / N)
    labels = torch.randint(0, C, (N,), generator=g)
    torch.testing.assert_close(cv.loss_function("cross_entropy")(out, labels), F.cross_entropy(out, labels))
    # (N,) targets for (N, 1) outputs are accepted for regression
    torch.testing.assert_close(cv.loss_function("mse")(out[:, :1], y[:, 0]), F.mse_loss(out[:, :1], y[:, :1]))


@pytest.mark.parametrize("classes", [1, 2, 10, 15, 16, 40])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_log_softmax_classes_equals_torch(classes, dtype):
    g = torch.Generator().manual_seed(classes)
    logits = (5 * torch.randn(37, classes, generator=g)).to(dtype).requires_grad_(True)
    ours = cv.log_softmax_classes(logits)
    ref = torch.log_softmax(logits, dim=-1)
    torch.testing.assert_close(ours, ref)
    w = torch.randn(37, classes, generator=g).to(dtype)
    torch.testing.assert_close(torch.autograd.grad((ours * w).sum(), logits)[0],
                               torch.autograd.grad((ref * w).sum(), logits)[0])
    # the cross-entropy built on it is torch's, for class indices and for class probabilities
    labels = torch.randint(0, classes, (37,), generator=g)
    probs = torch.softmax(torch.randn(37, classes, generator=g), -1).to(dtype)
    fn = cv.loss_function("cross_entropy")
    torch.testing.assert_close(fn(logits, labels), F.cross_entropy(logits, labels))
    torch.testing.assert_close(fn(logits, probs), F.cross_entropy(logits, probs))


@pytest.mark.parametrize("loss", LOSS_CASES)
def test_loss_derivatives_match_autograd(loss):
    g = torch.Generator().manual_seed(0)
    out = torch.randn(N, C, generator=g, dtype=torch.float64)
    _, _, y = make_problem("mlp", loss)
    name = loss_name(loss)
    d = cv.loss_derivatives(name, out, y)
    fn = cv.loss_function(name)
    grad = torch.func.grad(lambda o: fn(o, y))(out)
    hess = torch.func.hessian(lambda o: fn(o.reshape(N, C), y))(out.reshape(-1))
    v = torch.randn(N, C, generator=g, dtype=torch.float64)
    torch.testing.assert_close(d.value, fn(out, y))
    torch.testing.assert_close(d.gradient, grad)
    torch.testing.assert_close(d.hessian_product(v).reshape(-1), hess @ v.reshape(-1))


def test_flatten_round_trip_and_errors():
    parts = [torch.randn(2, 3), torch.randn(4)]
    flat = cv.flatten(parts)
    assert flat.shape == (10,)
    for a, b in zip(cv.unflatten_like(flat, parts), parts):
        assert torch.equal(a, b)
    with pytest.raises(ValueError):
        cv.unflatten_like(torch.zeros(9), parts)


def test_invalid_arguments():
    model, x, y = make_problem("mlp", "cross_entropy")
    v = random_vector(list(model.parameters()))
    with pytest.raises(ValueError, match="loss"):
        cv.ggn_vector_product(model, "hinge", x, y, v)
    with pytest.raises(ValueError, match="method"):
        cv.GGNOperator(model, "cross_entropy", x, y, method="finite_difference")
    with pytest.raises(ValueError, match="vector"):
        cv.ggn_vector_product(model, "cross_entropy", x, y, v[:-1])
    with pytest.raises(ValueError, match="logits"):
        cv.loss_function("cross_entropy")(torch.zeros(2, 3, 4), torch.zeros(2, 4, dtype=torch.long))
