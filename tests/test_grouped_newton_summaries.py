import copy

import pytest
import torch
from torch import nn
from torch.func import functional_call, jacfwd, jacrev

from curvlab.grouped_newton_partition import make_partition
from curvlab.grouped_newton_summaries import ROUTES, Summaries, summaries
from curvlab.losses import loss_function

# every test here in float64, restored after each (a module-level switch would leak into the whole session)
pytestmark = pytest.mark.usefixtures("float64")
TOL = 1e-10


# ------------------------------------------------------------------------------------------- references

def plain_norm(m):
    """A normalisation layer written out (batch / layer / group statistics): exact to every order.

    torch's fused normalisation kernels give wrong derivatives from order 3 on (their double backward
    treats the saved statistics as constants), and torch.func's Hessian through batch norm is wrong,
    so a reference through them would not be one; ``test_normalisation_layers_against_finite_differences``
    checks this reference (and the routes) against differences of the kernels' exact gradients.
    """
    def forward(x):
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            dims, shape = [0, *range(2, x.dim())], [1, -1] + [1] * (x.dim() - 2)
            y = x
        elif isinstance(m, nn.LayerNorm):
            dims, shape = list(range(x.dim() - len(m.normalized_shape), x.dim())), list(m.normalized_shape)
            y = x
        else:
            dims, shape = [2], [1, -1] + [1] * (x.dim() - 2)
            y = x.reshape(x.shape[0], m.num_groups, -1)
        y = (y - y.mean(dims, keepdim=True)) / torch.sqrt(y.var(dims, unbiased=False, keepdim=True) + m.eps)
        return y.reshape(x.shape) * m.weight.reshape(shape) + m.bias.reshape(shape)
    return forward


def brute_force(model, loss, inputs, targets, u, partition):
    """g, H, d3 of phi(eta) = L(theta - sum_s eta_s u_s) by reverse-over-reverse(-over-reverse) torch.func.

    Independent of the code under test: its own phi, the direction taken by name, the full order-3
    tensor of phi (S^3 entries, tiny S) whose diagonal is -D3. On a copy of the model, normalisation
    layers (training mode) are written out by :func:`plain_norm`.
    """
    model = copy.deepcopy(model)
    for m in model.modules():
        if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)) and m.training:
            m.forward = plain_norm(m)
    loss_fn = loss_function(loss) if isinstance(loss, str) else loss
    inputs = inputs if isinstance(inputs, tuple) else (inputs,)
    point = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}

    def phi(eta):
        moved = {n: point[n] - eta[s] * u[n] for s, group in enumerate(partition.names) for n in group}
        return loss_fn(functional_call(model, moved, inputs), targets)

    eta0 = torch.zeros(partition.size)
    g = -jacrev(phi)(eta0)
    H = jacrev(jacrev(phi))(eta0)
    T = jacfwd(jacrev(jacrev(phi)))(eta0)
    d3 = -torch.stack([T[s, s, s] for s in range(partition.size)])
    return g, H, d3, phi(eta0)


def finite_differences(model, loss, x, y, u, h=1e-5, h3=3e-5):
    """H by central differences of the exact gradient of phi, D3 by differences of those H_ss."""
    part = make_partition(model)
    point = {n: p.detach() for n, p in model.named_parameters()}
    model = copy.deepcopy(model)

    def grad(eta):
        eta = eta.clone().requires_grad_(True)
        moved = {n: point[n] - eta[s] * u[n] for s, group in enumerate(part.names) for n in group}
        return torch.autograd.grad(loss_function(loss)(functional_call(model, moved, (x,)), y), eta)[0]

    E = torch.eye(part.size)
    H = torch.stack([(grad(h * E[t]) - grad(-h * E[t])) / (2 * h) for t in range(part.size)])

    def h_ss(eta, s):
        return (grad(eta + h * E[s])[s] - grad(eta - h * E[s])[s]) / (2 * h)
    d3 = torch.stack([-(h_ss(h3 * E[s], s) - h_ss(-h3 * E[s], s)) / (2 * h3) for s in range(part.size)])
    return (H + H.T) / 2, d3


def assert_close(got, want, tol=TOL):
    scale = max(float(want.abs().max()), 1.0)
    err = float((got - want).abs().max())
    assert err <= tol * scale, f"error {err:.3e} (scale {scale:.3e})"


def check_all_routes(model, loss, inputs, targets, u, partition, **flags):
    part = make_partition(model, partition)
    want = brute_force(model, loss, inputs, targets, u, part)
    results = {}
    for route in ROUTES:
        got = summaries(model, loss, inputs, targets, u, partition, route=route, **flags)
        assert isinstance(got, Summaries)
        for q, w in zip(got, want):
            assert q.dtype == torch.float64 and q.shape == w.shape
            assert_close(q, w)
        results[route] = got
    return want, results


def direction(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    return {n: torch.randn(p.shape, generator=g) for n, p in model.named_parameters() if p.requires_grad}


# ------------------------------------------------------------------------------------------- models

class Polynomial(nn.Module):
    """L = (a.p)^3 + (a.p)(b.q) c + (b.q)^2 + c^4: every derivative of phi in closed form."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.tensor([0.7, -1.3]))
        self.b = nn.Parameter(torch.tensor([0.4, 1.1, -0.6]))
        self.c = nn.Parameter(torch.tensor([1.5]))

    def forward(self, p, q):
        alpha, beta, gamma = self.a @ p, self.b @ q, self.c[0]
        return alpha ** 3 + alpha * beta * gamma + beta ** 2 + gamma ** 4


def tanh_mlp(sizes=(5, 4, 3, 3)):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


def tiny_cnn():
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.Tanh(), nn.MaxPool2d(2), nn.Conv2d(3, 4, 3),
                         nn.Tanh(), nn.Flatten(), nn.Linear(4, 3))


@pytest.fixture
def classification():
    torch.manual_seed(0)
    return torch.randn(7, 5), torch.randint(0, 3, (7,))


# ------------------------------------------------------------------------------------------- closed form

@pytest.mark.parametrize("route", ROUTES)
def test_polynomial_closed_form(route):
    torch.manual_seed(0)
    model = Polynomial()
    p, q = torch.tensor([0.3, 0.8]), torch.tensor([1.2, -0.5, 0.9])
    u = {"a": torch.tensor([0.5, 0.2]), "b": torch.tensor([-0.3, 0.7, 0.1]), "c": torch.tensor([0.6])}
    al, be, ga = float(model.a @ p), float(model.b @ q), float(model.c[0])
    a1, b1, c1 = float(u["a"] @ p), float(u["b"] @ q), float(u["c"][0])
    g = [3 * al ** 2 * a1 + a1 * be * ga, al * b1 * ga + 2 * be * b1, al * be * c1 + 4 * ga ** 3 * c1]
    H = [[6 * al * a1 ** 2, a1 * b1 * ga, a1 * be * c1],
         [a1 * b1 * ga, 2 * b1 ** 2, al * b1 * c1],
         [a1 * be * c1, al * b1 * c1, 12 * ga ** 2 * c1 ** 2]]
    d3 = [6 * a1 ** 3, 0.0, 24 * ga * c1 ** 3]               # phi is quadratic in eta_b
    s = summaries(model, lambda out, _: out, (p, q), None, u, "canonical", route=route)
    assert_close(s.g, torch.tensor(g))
    assert_close(s.H, torch.tensor(H))
    assert_close(s.d3, torch.tensor(d3))
    assert float(s.d3[1]) == 0.0
    assert_close(s.loss, torch.tensor(al ** 3 + al * be * ga + be ** 2 + ga ** 4))


@pytest.mark.parametrize("route", ROUTES)
def test_polynomial_groups_of_several_tensors(route):
    model = Polynomial()
    p, q = torch.tensor([0.3, 0.8]), torch.tensor([1.2, -0.5, 0.9])
    u = direction(model)
    part = {"ac": ["a", "c"], "b": ["b"]}
    want = brute_force(model, lambda out, _: out, (p, q), None, u, make_partition(model, part))
    got = summaries(model, lambda out, _: out, (p, q), None, u, part, route=route)
    for q_, w in zip(got, want):
        assert_close(q_, w)


# ------------------------------------------------------------------------------------------- networks

def test_tanh_mlp_cross_entropy(classification):
    torch.manual_seed(0)
    model = tanh_mlp()
    x, y = classification
    want, _ = check_all_routes(model, "cross_entropy", x, y, direction(model), "canonical")
    assert bool((want[2].abs() > 1e-6).all())                # a test of D3 that zeros cannot pass
    assert float(want[1][0, 5].abs()) > 1e-6                  # coupling of the first and last layers


def test_mse_with_linear_last_layer_has_zero_order3_there(classification):
    torch.manual_seed(0)
    model = tanh_mlp((5, 4, 2))
    x = classification[0]
    y = torch.randn(7, 2)
    want, results = check_all_routes(model, "mse", x, y, direction(model), "canonical")
    for s in results.values():                               # L is quadratic in (W_2, b_2)
        assert float(s.d3[2]) == 0.0 and float(s.d3[3]) == 0.0
        assert float(s.H[2, 2]) > 0 and float(s.H[3, 3]) > 0
    assert bool((want[2][:2].abs() > 1e-6).all())


def test_tiny_cnn_with_max_pool():
    torch.manual_seed(0)
    model = tiny_cnn()
    x, y = torch.randn(4, 2, 6, 6), torch.randint(0, 3, (4,))
    want, _ = check_all_routes(model, "cross_entropy", x, y, direction(model), "canonical")
    assert bool((want[2].abs() > 1e-8).all())


def test_conv1d_without_bias_and_batch_norm_in_train_mode():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(2, 3, 3, bias=False), nn.BatchNorm1d(3), nn.Tanh(), nn.Flatten(),
                          nn.Linear(12, 3))
    with torch.no_grad():                                    # a non-trivial BN point
        model[1].weight.uniform_(0.5, 1.5)
        model[1].bias.uniform_(-0.5, 0.5)
    x, y = torch.randn(5, 2, 6), torch.randint(0, 3, (5,))
    before = {n: b.clone() for n, b in model.state_dict().items()}
    check_all_routes(model, "cross_entropy", x, y, direction(model), "canonical")
    for n, b in model.state_dict().items():                  # running statistics untouched
        assert torch.equal(b, before[n]), n
    assert model.training and all("forward" not in m.__dict__ for m in model.modules())


@pytest.mark.parametrize("norm", ["batch", "layer", "group"])
def test_normalisation_layers_against_finite_differences(norm):
    torch.manual_seed(0)
    layer = {"batch": nn.BatchNorm2d(4), "layer": nn.LayerNorm([4, 3, 3]), "group": nn.GroupNorm(2, 4)}[norm]
    model = nn.Sequential(nn.Conv2d(2, 4, 2), layer, nn.Tanh(), nn.Flatten(), nn.Linear(36, 3))
    with torch.no_grad():
        layer.weight.uniform_(0.5, 1.5)
        layer.bias.uniform_(-0.5, 0.5)
    x, y = torch.randn(5, 2, 4, 4), torch.randint(0, 3, (5,))
    u = direction(model)
    H, d3 = finite_differences(model, "cross_entropy", x, y, u)
    want, results = check_all_routes(model, "cross_entropy", x, y, u, "canonical")
    assert_close(want[1], H, tol=1e-6)
    assert_close(want[2], d3, tol=2e-5)
    assert float(d3[0].abs()) > 1.0                          # the conv weight before the norm


@pytest.mark.parametrize("kind", ["trivial", "weights_biases",
                                  {"out": ["2.weight", "4.bias"], "in": ["0.weight", "0.bias"],
                                   "w": ["4.weight", "2.bias"]}])
def test_partition_kinds(kind, classification):
    torch.manual_seed(0)
    model = tanh_mlp()
    x, y = classification
    check_all_routes(model, "cross_entropy", x, y, direction(model), kind)


def test_trivial_partition_is_the_directional_derivatives(classification):
    torch.manual_seed(0)
    model = tanh_mlp()
    x, y = classification
    u = direction(model)
    names = list(u)
    params = [p.detach() for p in model.parameters()]

    def L(*ps):
        return loss_function("cross_entropy")(functional_call(model, dict(zip(names, ps)), (x,)), y)
    grad = torch.func.grad(L, argnums=tuple(range(len(params))))(*params)
    hu = torch.func.jvp(lambda *ps: torch.func.grad(L, argnums=tuple(range(len(ps))))(*ps), tuple(params),
                        tuple(u.values()))[1]
    s = summaries(model, "cross_entropy", x, y, u, "trivial")
    assert_close(s.g, torch.stack([sum((a * b).sum() for a, b in zip(grad, u.values()))]))
    assert_close(s.H, torch.stack([sum((a * b).sum() for a, b in zip(hu, u.values()))]).reshape(1, 1))


def test_direction_is_matched_by_name_when_the_partition_reorders_groups():
    torch.manual_seed(0)
    # equal shapes everywhere, so that a positional pairing would run without any shape error
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 4))
    x, y = torch.randn(6, 4), torch.randint(0, 4, (6,))
    u = direction(model)
    canonical = summaries(model, "cross_entropy", x, y, u, "canonical")
    order = ["4.weight", "4.bias", "2.weight", "2.bias", "0.weight", "0.bias"]
    reordered = {n: [n] for n in order}
    perm = [list(u).index(n) for n in order]
    for route in ROUTES:
        got = summaries(model, "cross_entropy", x, y, dict(reversed(list(u.items()))), reordered, route=route)
        assert_close(got.g, canonical.g[perm])
        assert_close(got.H, canonical.H[perm][:, perm])
        assert_close(got.d3, canonical.d3[perm])
    # the reference's pairing: the i-th direction tensor (model order) with the i-th grouped parameter
    positional = dict(zip(order, u.values()))
    wrong = summaries(model, "cross_entropy", x, y, positional, reordered)
    assert float((wrong.g - canonical.g[perm]).abs().max()) > 1e-3


@pytest.mark.parametrize("route", ROUTES)
def test_order3_off_and_diagonal(route, classification):
    torch.manual_seed(0)
    model = tanh_mlp()
    x, y = classification
    u = direction(model)
    full = summaries(model, "cross_entropy", x, y, u, "canonical", route="func")
    no3 = summaries(model, "cross_entropy", x, y, u, "canonical", route=route, order3=False)
    assert_close(no3.g, full.g)
    assert_close(no3.H, full.H)
    assert torch.equal(no3.d3, torch.zeros(6))
    diag = summaries(model, "cross_entropy", x, y, u, "canonical", route=route, diagonal=True)
    assert_close(diag.H, torch.diag(full.H.diagonal()))
    assert_close(diag.d3, full.d3)
    assert_close(diag.g, full.g)


def test_model_is_left_exactly_as_it_was(classification):
    torch.manual_seed(0)
    model = tanh_mlp()
    x, y = classification
    model[0].weight.grad = torch.ones_like(model[0].weight)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for route in ROUTES:
        summaries(model, "cross_entropy", x, y, direction(model), "canonical", route=route)
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n])
        assert (p.grad is None) == (n != "0.weight")
    assert torch.equal(model[0].weight.grad, torch.ones_like(model[0].weight))
    assert all("forward" not in m.__dict__ for m in model.modules())


def test_frozen_first_layer_and_inputs_that_require_grad(classification):
    torch.manual_seed(0)
    model = tanh_mlp()
    model[0].requires_grad_(False)                           # then layer 2's input is constant
    x, y = classification
    u = direction(model)
    assert "0.weight" not in u
    check_all_routes(model, "cross_entropy", x, y, u, "canonical")
    model[0].requires_grad_(True)
    check_all_routes(model, "cross_entropy", x.clone().requires_grad_(True), y, direction(model), "canonical")


class ReadsItsWeight(nn.Module):
    """A weight read outside its layer (a penalty) and a weight tied between two layers."""

    def __init__(self):
        super().__init__()
        self.first = nn.Linear(5, 4)
        self.second = nn.Linear(4, 4)
        self.third = nn.Linear(4, 4)
        self.third.weight = self.second.weight               # tied
        self.out = nn.Linear(4, 3)

    def forward(self, x):
        h = torch.tanh(self.first(x))
        h = torch.tanh(self.third(torch.tanh(self.second(h))))
        return self.out(h) * (1.0 + 0.3 * (self.first.weight ** 2).mean())   # a temperature


def test_weights_used_outside_their_layer(classification):
    torch.manual_seed(0)
    model = ReadsItsWeight()
    x, y = classification
    check_all_routes(model, "cross_entropy", x, y, direction(model), "canonical")


def test_float32_model_gives_float32_summaries(classification):
    torch.manual_seed(0)
    model = tanh_mlp().float()
    x, y = classification
    u = direction(model)
    u = {n: t.float() for n, t in u.items()}
    ref = summaries(model.double(), "cross_entropy", x, y, u, "canonical")
    model.float()
    for route in ROUTES:
        s = summaries(model, "cross_entropy", x.float(), y, u, "canonical", route=route)
        assert all(q.dtype == torch.float32 for q in s)
        assert_close(s.H.double(), ref.H, tol=1e-4)


def test_zero_direction_on_one_group(classification):
    torch.manual_seed(0)
    model = tanh_mlp()
    x, y = classification
    u = direction(model)
    u["2.weight"] = torch.zeros_like(u["2.weight"])
    want, _ = check_all_routes(model, "cross_entropy", x, y, u, "canonical")
    assert float(want[0][2]) == 0.0 and float(want[1][2].abs().max()) == 0.0


def test_errors(classification):
    model = tanh_mlp()
    x, y = classification
    u = direction(model)
    with pytest.raises(ValueError, match="route"):
        summaries(model, "cross_entropy", x, y, u, "canonical", route="fast")
    with pytest.raises(ValueError, match="loss"):
        summaries(model, "hinge", x, y, u, "canonical")
    with pytest.raises(ValueError, match="loss"):
        summaries(model, 3, x, y, u, "canonical")
    with pytest.raises(ValueError, match="loss must return a 0-d tensor"):
        summaries(model, lambda out, t: out, x, y, u, "canonical")
    with pytest.raises(ValueError, match="order3"):
        summaries(model, "cross_entropy", x, y, u, "canonical", order3=1)
    with pytest.raises(ValueError, match="diagonal"):
        summaries(model, "cross_entropy", x, y, u, "canonical", diagonal=None)
    with pytest.raises(ValueError, match=r"no tensor for parameters \['4.bias'\]"):
        summaries(model, "cross_entropy", x, y, {n: t for n, t in u.items() if n != "4.bias"}, "canonical")
    with pytest.raises(ValueError, match=r"direction\['0.weight'\]"):
        summaries(model, "cross_entropy", x, y, {**u, "0.weight": torch.zeros(5, 4)}, "canonical")
    with pytest.raises(ValueError, match="partition"):
        summaries(model, "cross_entropy", x, y, u, "blocks")
