"""Tests for curvlab.isaac (ζ*) and curvlab.isaac_kfac (ζ with finite λ_g, K-FAC).

Dense float64 references on tiny sizes: explicit inverses, eigendecompositions, Kronecker products
and true Hessians.
"""
import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from curvlab import isaac, isaac_kfac, linalg, models
from curvlab.isaac import apply_isaac, isaac_weight_gradient
from curvlab.isaac_kfac import (
    KroneckerPreconditioner,
    kfac_weight_gradient,
    sampled_output_gradients,
    zeta_weight_gradient,
)

DT = torch.float64


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=DT)


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def eye(k):
    return torch.eye(k, dtype=DT)


def dense_isaac(G, A, la):
    """la · Gᵀ A (AᵀA/b + la I)⁻¹ with an explicit inverse."""
    b, n = A.shape
    return la * G.T @ A @ torch.linalg.inv(A.T @ A / b + la * eye(n))


def mlp(sizes, seed=0):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return models.mlp(sizes).double()


def record_layer(layer):
    """Forward hook keeping the layer input A and output z (with retained grad)."""
    store = {}

    def hook(module, inputs, output):
        store["A"] = inputs[0].detach()
        output.retain_grad()
        store["z"] = output
    layer.register_forward_hook(hook)
    return store


# ---------------------------------------------------------------- ζ*: the closed form

SHAPES = [(30, 8, 5), (8, 30, 5), (12, 12, 4), (11, 12, 3), (13, 12, 3), (1, 6, 3), (6, 1, 2),
          (60, 400, 10), (100, 100, 7)]


@pytest.mark.parametrize("b,n,m", SHAPES)
def test_both_forms_agree_with_dense_inverse(b, n, m):
    G, A = rand(b, m, seed=1), rand(b, n, seed=2)
    ref = dense_isaac(G, A, 0.3)
    ref_batch = G.T @ torch.linalg.inv(eye(b) + A @ A.T / (b * 0.3)) @ A
    torch.testing.assert_close(ref_batch, ref, rtol=1e-9, atol=1e-12)
    for form in ("batch", "input", "auto"):
        got = isaac_weight_gradient(G, A, 0.3, form=form)
        assert got.shape == (m, n) and got.is_contiguous()
        torch.testing.assert_close(got, ref, rtol=1e-9, atol=1e-12)


def test_auto_form_solves_the_smaller_system(monkeypatch):
    sizes = []
    inverse = isaac.damped_gram_inverse
    monkeypatch.setattr(isaac, "damped_gram_inverse", lambda A, c: sizes.append(A.shape[0]) or inverse(A, c))
    for b, n in [(4, 9), (9, 4), (6, 6)]:
        isaac_weight_gradient(rand(b, 2), rand(b, n), 1.0)
    assert sizes == [4, 4, 6]
    sizes.clear()
    solve = isaac_kfac.solve_spd
    monkeypatch.setattr(isaac_kfac, "solve_spd",
                        lambda M, rhs, **kw: sizes.append(M.shape[0]) or solve(M, rhs, **kw))
    for R, m in [(3, 8), (8, 3)]:                                   # the output side: R×R or m×m
        zeta_weight_gradient(rand(3, m), rand(3, 9), rand(R, m), 1.0, 1.0)
    assert sizes == [3, 3, 3, 3]


def test_solve_spd_falls_back_and_refuses_non_finite_systems():
    M, rhs = torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=DT), rand(2, 3)  # Cholesky fails
    torch.testing.assert_close(isaac.solve_spd(M, rhs), torch.linalg.solve(M, rhs))
    bad = rand(4, 4) @ rand(4, 4).T + eye(4)
    bad[1, 2] = bad[2, 1] = float("inf")                           # LU alone would return finite values
    assert torch.isnan(isaac.solve_spd(bad, rand(4, 2))).all()


def test_duplicated_row_at_large_scale_in_float32():
    """x = randn(8, 32)·100 with a repeated row, la = 1e-4: I + AAᵀ/(b·la) is SPD with eigenvalues
    ≥ 1, but in float32 |AAᵀ|/(b·la) ~ 4e8 swamps the I, so a plain Cholesky reports it singular."""
    torch.manual_seed(7)
    layer = isaac.Linear(32, 3, la=1e-4)
    x = torch.randn(8, 32) * 100
    x[5] = x[2]
    y = torch.randn(8, 3)
    z = layer(x)
    (G,) = torch.autograd.grad(F.mse_loss(z, y), z, retain_graph=True)
    F.mse_loss(z, y).backward()
    ref = dense_isaac(G.double(), x.double(), 1e-4)
    assert torch.isfinite(layer.weight.grad).all()
    assert rel(layer.weight.grad.double(), ref) < 1e-3
    assert linalg.damped_gram_inverse(x, 8 * 1e-4).dtype == DT     # float32 declined: float64


def rank_deficient(b, n, rank, seed):
    return rand(b, rank, seed=seed) @ rand(rank, n, seed=seed + 1)


@pytest.mark.parametrize("b,n", [(8, 32), (40, 12)], ids=["b<n", "b>n"])
@pytest.mark.parametrize("kind", ["x1e4", "x1e-4", "rank-deficient", "rank-deficient x1e3"])
@pytest.mark.parametrize("form", ["batch", "input"])
def test_float32_at_any_scale_matches_float64(b, n, kind, form):
    A = rand(b, n, seed=3) if kind.startswith("x") else rank_deficient(b, n, 3, seed=3)
    A = A * {"x1e4": 1e4, "x1e-4": 1e-4, "rank-deficient": 1.0, "rank-deficient x1e3": 1e3}[kind]
    A32 = A.float()                                                # the float32 data, exactly
    G = rand(b, 4, seed=5)
    for la in (1e-4, 1.0):
        ref = dense_isaac(G, A32.double(), la)
        got = isaac_weight_gradient(G.float(), A32, la, form=form)
        assert got.dtype == torch.float32 and torch.isfinite(got).all()
        assert rel(got.double(), ref) < 2e-3, (la, rel(got.double(), ref))


def test_empty_batch_gives_a_zero_update():
    layer = isaac.Linear(5, 3, la=0.5)
    conv = isaac.Conv2d(2, 3, 3, la=0.5)
    F.mse_loss(layer(torch.zeros(0, 5)), torch.zeros(0, 3), reduction="sum").backward()
    conv(torch.zeros(0, 2, 6, 6)).sum().backward()
    for p in (layer.weight, conv.weight):
        assert torch.equal(p.grad, torch.zeros_like(p))
    for form in ("batch", "input"):
        assert torch.equal(isaac_weight_gradient(rand(0, 3), rand(0, 5), 1.0, form=form),
                           torch.zeros(3, 5, dtype=DT))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_solved_in_float32(dtype):
    G, A = rand(6, 3, seed=1), rand(6, 10, seed=2)
    for form in ("batch", "input"):
        got = isaac_weight_gradient(G.to(dtype), A.to(dtype), 0.5, form=form)
        ref = dense_isaac(G.to(dtype).double(), A.to(dtype).double(), 0.5)
        assert got.dtype == dtype
        assert rel(got.double(), ref) < (1e-2 if dtype == torch.bfloat16 else 2e-3)
    layer = isaac.Linear(10, 3, la=0.5, dtype=dtype)
    layer(A.to(dtype)).float().square().sum().backward()
    assert layer.weight.grad.dtype == dtype and torch.isfinite(layer.weight.grad).all()


def test_eigen_view_damps_high_variance_directions():
    G, A = rand(9, 4, seed=1), rand(9, 6, seed=2) * torch.tensor([5.0, 2, 1, 0.5, 0.1, 3], dtype=DT)
    s, V = torch.linalg.eigh(A.T @ A / 9)
    la = 0.7
    ref = G.T @ A @ V @ torch.diag(la / (la + s)) @ V.T
    torch.testing.assert_close(isaac_weight_gradient(G, A, la), ref, rtol=1e-10, atol=1e-12)


def test_large_la_gives_plain_gradient():
    G, A = rand(30, 5, seed=1), rand(30, 8, seed=2)
    plain = G.T @ A
    d = [rel(isaac_weight_gradient(G, A, la), plain) for la in (1e2, 1e4, 1e6)]
    assert d[2] < 1e-5
    assert 50 < d[0] / d[1] < 200 and 50 < d[1] / d[2] < 200      # first order in 1/la


def test_small_la_shrinks_in_proportion_to_la():
    G, A = rand(5, 3, seed=1), rand(5, 12, seed=2)                 # b < n
    la = 1e-7
    ref = la * 5 * G.T @ torch.linalg.inv(A @ A.T) @ A
    assert rel(isaac_weight_gradient(G, A, la), ref) < 1e-5


def test_is_damped_gauss_newton_for_linear_least_squares():
    """Theorem 4: for L = ‖A Wᵀ − Y‖²/(2b) the Hessian is I ⊗ AᵀA/b, and ζ*/la = (H + la I)⁻¹ ∇."""
    A, Y, W = rand(7, 4, seed=1), rand(7, 3, seed=2), rand(3, 4, seed=3)

    def loss(w):
        return ((A @ w.T - Y) ** 2).sum() / (2 * 7)
    grad = torch.func.grad(loss)(W)
    H = torch.autograd.functional.hessian(loss, W).reshape(12, 12)
    newton = torch.linalg.solve(H + 0.2 * eye(12), grad.reshape(-1)).reshape(3, 4)
    G = (A @ W.T - Y) / 7                                           # dL/dz
    torch.testing.assert_close(isaac_weight_gradient(G, A, 0.2) / 0.2, newton)


def test_reference_self_check_values():
    """The reference's __main__ check: seed 0, x (30, 8), y (30, 5), Linear(8, 5, la=0.1), MSE."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        x, y = torch.randn(30, 8), torch.randn(30, 5)
        layer = isaac.Linear(8, 5, la=0.1)
    F.mse_loss(layer(x), y).backward()
    weight = torch.tensor([
        [0.0074, 0.0095, -0.0056, -0.0040, -0.0136, 0.0001, 0.0160, -0.0047],
        [-0.0099, -0.0106, -0.0178, 0.0148, 0.0111, -0.0037, 0.0032, -0.0133],
        [0.0030, 0.0048, 0.0138, -0.0168, 0.0078, -0.0085, -0.0059, 0.0053],
        [-0.0073, 0.0105, 0.0100, 0.0042, -0.0141, -0.0003, -0.0043, -0.0115],
        [0.0144, -0.0073, -0.0026, -0.0101, -0.0090, 0.0182, -0.0152, 0.0095]])
    bias = torch.tensor([-0.1162, 0.1062, -0.1275, -0.0206, -0.1149])
    torch.testing.assert_close(layer.weight.grad, weight, rtol=0, atol=6e-5)
    torch.testing.assert_close(layer.bias.grad, bias, rtol=0, atol=6e-5)


# ---------------------------------------------------------------- the layers

def test_only_the_weight_gradient_changes():
    plain = mlp([6, 5, 4, 3])
    model = apply_isaac(copy.deepcopy(plain), 0.7, [2])
    rec = record_layer(plain[3])
    x, y = rand(9, 6, seed=1), torch.arange(9) % 3
    grads = []
    for net in (plain, model):
        xi = x.clone().requires_grad_()
        F.cross_entropy(net(xi), y).backward()
        grads.append((xi.grad, {k: p.grad for k, p in net.named_parameters()}))
    (gx_plain, g_plain), (gx_isaac, g_isaac) = grads
    torch.testing.assert_close(gx_isaac, gx_plain)
    for name in g_plain:
        if name != "3.weight":
            torch.testing.assert_close(g_isaac[name], g_plain[name])
    expected = isaac_weight_gradient(rec["z"].grad, rec["A"], 0.7)
    torch.testing.assert_close(g_isaac["3.weight"], expected)
    assert rel(g_isaac["3.weight"], g_plain["3.weight"]) > 1e-2


def test_input_and_bias_gradients_pass_gradcheck():
    weight = rand(3, 5, seed=1)
    x, bias = rand(4, 5, seed=2).requires_grad_(), rand(3, seed=3).requires_grad_()

    def f(x, bias):
        return isaac._LinearFunction.apply(x, weight, bias, 0.5)
    assert torch.autograd.gradcheck(f, (x, bias))


def test_sequence_input_is_flattened_into_rows():
    for shape in [(3, 5, 6), (2, 3, 20)]:                          # b ≥ n and b < n
        n = shape[-1]
        layer = isaac.Linear(n, 4, la=0.5, dtype=DT)
        x, up = rand(*shape, seed=1), rand(*shape[:-1], 4, seed=2)
        (layer(x) * up).sum().backward()
        expected = isaac_weight_gradient(up.reshape(-1, 4), x.reshape(-1, n), 0.5)
        torch.testing.assert_close(layer.weight.grad, expected)
        torch.testing.assert_close(layer.bias.grad, up.reshape(-1, 4).sum(0))


def test_conv2d_equals_linear_on_unfolded_patches():
    kw = dict(kernel_size=(3, 2), stride=(2, 1), padding=1, dilation=(1, 2))
    with torch.random.fork_rng():
        torch.manual_seed(0)
        conv = isaac.Conv2d(3, 4, la=0.5, dtype=DT, **kw)
    reference = nn.Conv2d(3, 4, dtype=DT, **kw)
    reference.load_state_dict(conv.state_dict())
    x = rand(2, 3, 7, 6, seed=1)
    xc, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = conv(xc)
    up = rand(*out.shape, seed=2)
    (out * up).sum().backward()
    (reference(xr) * up).sum().backward()
    torch.testing.assert_close(out, reference(x))
    torch.testing.assert_close(xc.grad, xr.grad)                   # input gradient exact
    torch.testing.assert_close(conv.bias.grad, reference.bias.grad)
    linear = isaac.Linear(18, 4, la=0.5, dtype=DT)
    linear.load_state_dict({"weight": conv.weight.reshape(4, -1), "bias": conv.bias})
    patches = F.unfold(x, **kw).transpose(1, 2)                    # (B, L, C·kh·kw)
    y = linear(patches)                                            # (B, L, O)
    torch.testing.assert_close(y.transpose(1, 2).reshape(out.shape), out)
    (y * up.flatten(2).transpose(1, 2)).sum().backward()
    torch.testing.assert_close(conv.weight.grad.reshape(4, -1), linear.weight.grad)
    assert rel(conv.weight.grad, reference.weight.grad) > 1e-2
    with pytest.raises(ValueError, match="padding"):
        isaac.Conv2d(3, 4, 3, la=1.0, padding="same")


@pytest.mark.parametrize("make_opt", [
    lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01),
    lambda p: torch.optim.Adam(p, lr=0.01)], ids=["sgd", "adam"])
def test_optimizers_step_on_the_preconditioned_gradient(make_opt):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        layer = isaac.Linear(6, 3, la=0.3, dtype=DT)
    plain = nn.Linear(6, 3, dtype=DT)
    plain.load_state_dict(layer.state_dict())
    opt, opt_plain = make_opt(layer.parameters()), make_opt(plain.parameters())
    for step in range(3):
        x, y = rand(4, 6, seed=step), rand(4, 3, seed=10 + step)
        opt.zero_grad()
        F.mse_loss(layer(x), y).backward()
        opt.step()
        opt_plain.zero_grad()
        z = plain(x)
        (G,) = torch.autograd.grad(F.mse_loss(z, y), z, retain_graph=True)
        F.mse_loss(z, y).backward()
        plain.weight.grad = isaac_weight_gradient(G, x, 0.3)
        opt_plain.step()
    torch.testing.assert_close(layer.weight, plain.weight)
    torch.testing.assert_close(layer.bias, plain.bias)


def test_torch_func_grad_and_functional_call():
    model = apply_isaac(mlp([6, 5, 4, 3]), 0.4, [1, 2])
    x, y = rand(5, 6, seed=1), torch.arange(5) % 3
    params = dict(model.named_parameters())

    def loss_fn(p):
        return F.cross_entropy(torch.func.functional_call(model, p, (x,)), y)
    grads = torch.func.grad(loss_fn)(params)
    loss_fn(params).backward()
    for name, p in params.items():
        torch.testing.assert_close(grads[name], p.grad)


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_direct_apply_equals_the_public_apply(kind):
    """The layers skip Function.apply's Python preamble outside torch.func: same values, same grads."""
    torch.manual_seed(0)
    if kind == "linear":
        layer, x = isaac.Linear(6, 4, la=0.3, dtype=DT), rand(5, 6, seed=2)
        extra = (0.3,)
        function = isaac._LinearFunction
    else:
        layer, x = isaac.Conv2d(2, 3, 3, la=0.3, padding=1, dtype=DT), rand(2, 2, 5, 5, seed=2)
        extra = (0.3, layer.stride, layer.padding, layer.dilation)
        function = isaac._Conv2dFunction
    x.requires_grad_(True)
    results = []
    for out in (layer(x), function.apply(x, layer.weight, layer.bias, *extra)):
        results.append((out, *torch.autograd.grad(out.square().sum(), (x, layer.weight, layer.bias))))
    assert type(results[0][0].grad_fn).__name__ == f"{function.__name__}Backward"
    for direct, public in zip(*results):
        assert torch.equal(direct, public)


def test_direct_apply_takes_the_public_path_only_under_torch_func(monkeypatch):
    """Outside torch.func the public Function.apply is not called; inside a transform it is."""
    calls = []
    public = isaac._LinearFunction.apply
    monkeypatch.setattr(isaac._LinearFunction, "apply", lambda *a: calls.append(1) or public(*a))
    fast = isaac._direct_apply(isaac._LinearFunction)
    w, b, x = rand(4, 6, seed=1), rand(4, seed=2), rand(5, 6, seed=3)
    fast(x, w, b, 0.3)
    assert calls == []
    torch.func.grad(lambda w_: fast(x, w_, b, 0.3).square().sum())(w)
    assert calls                     # (torch.func may re-enter apply once per level)


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_exact_derivatives_give_the_plain_gradient(kind):
    """Inside exact_derivatives() a layer is its plain counterpart (true derivatives); outside, ζ*."""
    from curvlab._exact import exact_derivatives
    torch.manual_seed(0)
    if kind == "linear":
        layer, x = isaac.Linear(6, 4, la=0.3, dtype=DT), rand(5, 6, seed=2)
        plain = nn.Linear(6, 4, dtype=DT)
    else:
        layer, x = isaac.Conv2d(2, 3, 3, la=0.3, padding=1, dtype=DT), rand(2, 2, 5, 5, seed=2)
        plain = nn.Conv2d(2, 3, 3, padding=1, dtype=DT)
    plain.load_state_dict(layer.state_dict())

    def loss(module):
        return module(x).square().sum()
    (g_plain,) = torch.autograd.grad(loss(plain), plain.weight)
    with exact_derivatives():
        (g_exact,) = torch.autograd.grad(loss(layer), layer.weight)
        hess = torch.func.hessian(lambda w: torch.func.functional_call(layer, {"weight": w}, (x,))
                                  .square().sum())(layer.weight.detach())
    (g_isaac,) = torch.autograd.grad(loss(layer), layer.weight)
    torch.testing.assert_close(g_exact, g_plain)
    ref_hess = torch.func.hessian(lambda w: torch.func.functional_call(plain, {"weight": w}, (x,))
                                  .square().sum())(plain.weight.detach())
    torch.testing.assert_close(hess, ref_hess)
    z = layer(x)
    (G,) = torch.autograd.grad(z.square().sum(), z)
    if kind == "linear":
        expected = isaac_weight_gradient(G, x, 0.3)
    else:
        A = F.unfold(x, 3, padding=1).transpose(1, 2).reshape(-1, 18)
        expected = isaac_weight_gradient(G.flatten(2).transpose(1, 2).reshape(-1, 3), A, 0.3)
        expected = expected.reshape(layer.weight.shape)
    torch.testing.assert_close(g_isaac, expected)
    assert rel(g_isaac, g_plain) > 1e-2


def test_vmap_is_refused_rather_than_silently_per_example():
    layer = isaac.Linear(3, 2, la=1.0, dtype=DT)
    with pytest.raises(RuntimeError, match="vmap"):
        torch.func.vmap(layer)(rand(4, 5, 3))


# ---------------------------------------------------------------- apply_isaac

def test_apply_isaac_by_position_and_by_name():
    base = mlp([6, 5, 5, 5, 3])                                    # Linear at 1, 3, 5, 7
    x = rand(4, 6, seed=1)
    for layers in ([1, 3], ["1", "5"], [3, 1, 1]):
        model = copy.deepcopy(base)
        params = list(model.parameters())
        state = torch.random.get_rng_state()
        assert apply_isaac(model, 2.0, layers) is model
        assert torch.equal(torch.random.get_rng_state(), state)   # no random init drawn
        assert [type(m) for m in model] == [nn.Flatten, isaac.Linear, nn.ReLU, nn.Linear, nn.ReLU,
                                            isaac.Linear, nn.ReLU, nn.Linear]
        assert model[1].la == 2.0 and "la=2" in repr(model[1])
        assert all(p is q for p, q in zip(model.parameters(), params))
        torch.testing.assert_close(model(x), base(x))


def test_apply_isaac_on_nested_and_shared_modules():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
            self.head = nn.ModuleDict({"fc": nn.Linear(4, 2)})
            self.alias = self.head["fc"]                          # the same layer twice
    net = apply_isaac(Net(), 1.0, "head.fc")
    assert isinstance(net.head["fc"], isaac.Linear) and net.alias is net.head["fc"]
    assert type(net.body[0]) is nn.Linear


def test_apply_isaac_converts_a_module_used_twice_in_one_parent():
    torch.manual_seed(0)
    shared = nn.Linear(4, 4, dtype=DT)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    x = rand(6, 4, seed=1)
    before = model(x)
    apply_isaac(model, 0.5, [1])
    assert isinstance(model[0], isaac.Linear) and model[2] is model[0]
    assert model[0].weight is shared.weight                       # tying kept
    assert len(list(model.parameters())) == 2
    torch.testing.assert_close(model(x), before)
    model(x).square().sum().backward()                             # both uses give ζ*, summed
    z1 = shared(x)
    h = torch.relu(z1)
    z2 = shared(h)
    G1, G2 = torch.autograd.grad(z2.square().sum(), (z1, z2))
    expected = isaac_weight_gradient(G1, x, 0.5) + isaac_weight_gradient(G2, h.detach(), 0.5)
    torch.testing.assert_close(model[0].weight.grad, expected)


@pytest.mark.parametrize("layers, match", [
    ([], "empty"), ([0], "out of range"), ([6], "out of range"), (["nope"], "no module named"),
    (["2"], "not nn.Linear"), ([True], "ints"), ([1.0], "ints")])
def test_apply_isaac_errors(layers, match):
    with pytest.raises(ValueError, match=match):
        apply_isaac(mlp([6, 5, 5, 5, 3]), 1.0, layers)


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), float("-inf"), "x", None])
def test_bad_damping_raises_naming_the_parameter(bad):
    G, A, Gs = rand(4, 3), rand(4, 5), rand(4, 3)
    layer = isaac.Linear(5, 3, la=1.0)
    calls = {
        "la": [lambda: isaac.Linear(5, 3, la=bad), lambda: isaac.Conv2d(1, 1, 1, la=bad),
               lambda: isaac_weight_gradient(G, A, bad), lambda: apply_isaac(mlp([5, 3]), bad, [1]),
               lambda: setattr(layer, "la", bad), lambda: zeta_weight_gradient(G, A, Gs, bad, 1.0),
               lambda: kfac_weight_gradient(G, A, Gs, bad, 1.0),
               lambda: KroneckerPreconditioner(mlp([5, 3]), bad, 1.0, [1])],
        "lg": [lambda: zeta_weight_gradient(G, A, Gs, 1.0, bad),
               lambda: kfac_weight_gradient(G, A, Gs, 1.0, bad),
               lambda: KroneckerPreconditioner(mlp([5, 3]), 1.0, bad, [1])]}
    for name, fns in calls.items():
        for fn in fns:
            with pytest.raises(ValueError, match=f"^{name} must"):
                fn()
    assert layer.la == 1.0


@pytest.mark.parametrize("form", ["batch", "input"])
@pytest.mark.parametrize("where", ["A", "G", "A-diag"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_input_gives_non_finite_gradient(form, where, value):
    G, A = rand(6, 3, seed=1), rand(6, 6, seed=2)
    if where == "A":
        A[2, 1] = value
    elif where == "A-diag":
        A[:, 0] = 0.0
        A[3, 0] = value                                            # only a diagonal entry is inf
    else:
        G[4, 2] = value
    assert not torch.isfinite(isaac_weight_gradient(G, A, 0.5, form=form)).all()
    Gs = rand(6, 3, seed=3)
    assert not torch.isfinite(zeta_weight_gradient(G, A, Gs, 0.5, 0.5)).all()
    assert not torch.isfinite(kfac_weight_gradient(G, A, Gs, 0.5, 0.5)).all()


def test_non_finite_layer_input_gives_non_finite_weight_gradient():
    layer = isaac.Linear(5, 3, la=1.0, dtype=DT)
    x = rand(4, 5)
    x[1, 2] = float("nan")
    layer(x).sum().backward()
    assert not torch.isfinite(layer.weight.grad).all()


# ---------------------------------------------------------------- ζ with finite λ_g, K-FAC

def dense_factors(G, A, Gs, la, lg):
    b, R = A.shape[0], Gs.shape[0]
    s_g = b * b / R * Gs.T @ Gs + lg * eye(G.shape[1])
    s_a = A.T @ A / b + la * eye(A.shape[1])
    return torch.linalg.inv(s_g), torch.linalg.inv(s_a)


@pytest.mark.parametrize("b,n,m,R", [(5, 7, 4, 5), (5, 7, 8, 5), (9, 4, 3, 18), (6, 6, 6, 12)])
def test_zeta_and_kfac_against_dense_kronecker(b, n, m, R):
    G, A, Gs = rand(b, m, seed=1), rand(b, n, seed=2), rand(R, m, seed=3) / b
    la, lg = 0.3, 0.05
    inv_g, inv_a = dense_factors(G, A, Gs, la, lg)
    vec = lg * la * torch.kron(inv_g, inv_a) @ (G.T @ A).reshape(-1)   # row-major vec(X W Y)
    for form in ("sample", "output", "auto"):
        got = zeta_weight_gradient(G, A, Gs, la, lg, form=form)
        torch.testing.assert_close(got, vec.reshape(m, n), rtol=1e-8, atol=1e-12)
    kfac = kfac_weight_gradient(G, A, Gs, la, lg)
    torch.testing.assert_close(kfac, inv_g @ G.T @ A @ inv_a, rtol=1e-8, atol=1e-12)
    torch.testing.assert_close(kfac * la * lg, vec.reshape(m, n), rtol=1e-8, atol=1e-12)
    assert torch.sum(kfac * (G.T @ A)) > 0                         # Theorem 2: a descent direction


def test_zeta_matches_theorem_1_woodbury_form():
    b, n, m = 6, 9, 4
    G, A, Gs = rand(b, m, seed=1), rand(b, n, seed=2), rand(b, m, seed=3) / b
    la, lg = 0.2, 0.1
    g_bar = b * Gs                                                 # per-example sampled gradients
    left = eye(m) - g_bar.T @ torch.linalg.inv(b * lg * eye(b) + g_bar @ g_bar.T) @ g_bar
    right = eye(b) - torch.linalg.inv(b * la * eye(b) + A @ A.T) @ A @ A.T
    torch.testing.assert_close(zeta_weight_gradient(G, A, Gs, la, lg), left @ G.T @ right @ A)


def test_zeta_tends_to_isaac_as_lg_grows():
    G, A, Gs = rand(5, 4, seed=1), rand(5, 8, seed=2), rand(10, 4, seed=3) / 5
    star = isaac_weight_gradient(G, A, 0.3)
    d = [rel(zeta_weight_gradient(G, A, Gs, 0.3, lg), star) for lg in (1e2, 1e4, 1e8)]
    assert d[0] > d[1] > d[2] and d[2] < 1e-7


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_sampled_gradients_estimate_the_loss_hessian(loss):
    """E[(b² / R) Gsᵀ Gs] over label draws = mean per-example Hessian of the loss w.r.t. outputs."""
    b, k = 3, 4
    out = rand(b, k, seed=1).requires_grad_()
    (gs,) = sampled_output_gradients(out, [out], loss, samples=3000,
                                     generator=torch.Generator().manual_seed(0))
    assert gs.shape == (3000 * b, k)
    estimate = b * b / gs.shape[0] * gs.T @ gs
    target = torch.zeros(b, dtype=torch.long) if loss == "cross_entropy" else torch.zeros(b, k, dtype=DT)
    fn = F.cross_entropy if loss == "cross_entropy" else F.mse_loss
    H = torch.autograd.functional.hessian(lambda o: fn(o, target), out.detach()).reshape(b, k, b, k)
    exact = sum(H[i, :, i, :] for i in range(b))                  # (1/b) Σ_i H_i
    assert rel(estimate, exact) < 0.1


@pytest.mark.parametrize("method", ["zeta", "kfac"])
def test_preconditioner_in_a_training_step(method):
    model, ref = mlp([6, 5, 4, 3]), mlp([6, 5, 4, 3])
    x, y = rand(7, 6, seed=1), torch.arange(7) % 3
    with KroneckerPreconditioner(model, 0.3, 0.2, [1, "5"], method=method, samples=2,
                                 generator=torch.Generator().manual_seed(5)) as pre:
        out = model(x)
        pre.backward(F.cross_entropy(out, y), out)
        # a reference by hand: forward keeping pre-activations, sampled and true backward
        z1 = ref[1](x)
        z2 = ref[3](torch.relu(z1))
        z3 = ref[5](torch.relu(z2))
        labels = torch.multinomial(torch.softmax(z3.detach(), 1), 2, replacement=True,
                                   generator=torch.Generator().manual_seed(5))
        draws = [torch.autograd.grad(F.cross_entropy(z3, labels[:, j]), [z1, z3], retain_graph=True)
                 for j in range(2)]
        loss = F.cross_entropy(z3, y)
        G1, G3 = torch.autograd.grad(loss, [z1, z3], retain_graph=True)
        loss.backward()
        fn = zeta_weight_gradient if method == "zeta" else kfac_weight_gradient
        Gs1 = torch.cat([d[0] for d in draws])
        Gs3 = torch.cat([d[1] for d in draws])
        torch.testing.assert_close(model[1].weight.grad, fn(G1, x, Gs1, 0.3, 0.2))
        torch.testing.assert_close(model[5].weight.grad, fn(G3, torch.relu(z2).detach(), Gs3, 0.3, 0.2))
        for name, p in model.named_parameters():
            if name not in ("1.weight", "5.weight"):
                torch.testing.assert_close(p.grad, dict(ref.named_parameters())[name].grad)
        first = {name: p.grad.clone() for name, p in model.named_parameters()}
        pre.generator.manual_seed(5)
        out = model(x)
        pre.backward(F.cross_entropy(out, y), out)                 # accumulates like backward()
        for name, p in model.named_parameters():
            torch.testing.assert_close(p.grad, 2 * first[name])
        model(x)
        model(x)
        with pytest.raises(RuntimeError, match="ran 2 times"):
            pre.backward(F.cross_entropy(out, y), out)
    with torch.no_grad():
        model(x)
    assert all(not m._forward_hooks for m in model.modules())


@pytest.mark.parametrize("method, lr, factor", [("zeta", 2.0, 0.5), ("kfac", 0.2, 0.1)])
def test_preconditioner_mse_training_reduces_loss(method, lr, factor):
    model = mlp([5, 8, 5])
    x = rand(16, 5, seed=1)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    with KroneckerPreconditioner(model, 0.1, 0.1, [1, 2], method=method, loss="mse",
                                 generator=torch.Generator().manual_seed(0)) as pre:
        losses = []
        for _ in range(25):
            opt.zero_grad()
            out = model(x)
            loss = F.mse_loss(out, x)
            pre.backward(loss, out)
            opt.step()
            losses.append(loss.item())
    assert losses[-1] < factor * losses[0] and math.isfinite(losses[-1])
