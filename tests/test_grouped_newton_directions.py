"""GroupedNewton's directions: -lr u reproduces torch.optim.SGD / Adam step for step; state and errors."""
import copy

import pytest
import torch
from torch import nn

from curvlab.grouped_newton_directions import AdamDirection, SGDMomentumDirection, make_direction


@pytest.fixture(autouse=True)
def _float64(float64):
    yield


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))


def batch(seed):
    g = torch.Generator().manual_seed(100 + seed)
    return torch.randn(8, 3, generator=g), torch.randn(8, 2, generator=g)


def grads_of(model, x, y):
    loss = nn.functional.mse_loss(model(x), y)
    names, params = zip(*model.named_parameters())
    return dict(zip(names, torch.autograd.grad(loss, params)))


def run_torch(optimizer_cls, steps, lr, **kwargs):
    """Parameters after ``steps`` steps of a torch optimizer, one batch per step."""
    model = tiny_model()
    opt = optimizer_cls(model.parameters(), lr=lr, **kwargs)
    for t in range(steps):
        x, y = batch(t)
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    return dict(model.named_parameters())


def run_direction(direction, steps, lr):
    """The same, with theta <- theta - lr u from ``direction``."""
    model = tiny_model()
    for t in range(steps):
        u = direction.update(grads_of(model, *batch(t)))
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.sub_(lr * u[name])
    return dict(model.named_parameters())


def assert_same_params(a, b, tol=1e-12):
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=tol, atol=tol)


SGD_CASES = [dict(momentum=0.0), dict(momentum=0.9), dict(momentum=0.9, dampening=0.9),
             dict(momentum=0.5, dampening=0.3), dict(momentum=0.9, nesterov=True)]


@pytest.mark.parametrize("kwargs", SGD_CASES, ids=str)
@pytest.mark.parametrize("lr", [0.1, 0.03])
def test_sgd_direction_reproduces_torch_sgd(kwargs, lr):
    expected = run_torch(torch.optim.SGD, 6, lr, **kwargs)
    got = run_direction(SGDMomentumDirection(**kwargs), 6, lr)
    assert_same_params(got, expected)
    # and it moved: the comparison is not between two untouched models
    assert not torch.allclose(got["0.weight"], tiny_model()[0].weight)


@pytest.mark.parametrize("kwargs", [dict(), dict(betas=(0.5, 0.9), eps=1e-3), dict(betas=(0.0, 0.0))],
                         ids=str)
@pytest.mark.parametrize("lr", [0.01, 0.3])
def test_adam_direction_reproduces_torch_adam(kwargs, lr):
    expected = run_torch(torch.optim.Adam, 6, lr, **kwargs)
    got = run_direction(AdamDirection(**kwargs), 6, lr)
    assert_same_params(got, expected)


def test_momentum_buffer_closed_form():
    """b_1 = g_1, b_t = mu b_{t-1} + (1 - tau) g_t on known scalar gradients."""
    d = SGDMomentumDirection(momentum=0.5, dampening=0.2)
    gs = [1.0, 2.0, -4.0]
    us = [float(d.update({"w": torch.tensor([g])})["w"]) for g in gs]
    b1 = 1.0
    b2 = 0.5 * b1 + 0.8 * 2.0
    b3 = 0.5 * b2 + 0.8 * -4.0
    assert us == pytest.approx([b1, b2, b3], abs=1e-15)


def test_propose_does_not_change_state():
    d = AdamDirection()
    g = {"w": torch.tensor([1.0, -2.0])}
    first = d.update(g)
    d.propose({"w": torch.tensor([100.0, 100.0])})        # proposed, never committed
    again = AdamDirection()
    again.update(g)
    assert torch.equal(d.update(g)["w"], again.update(g)["w"])
    assert not torch.equal(first["w"], d.update(g)["w"])   # the state does advance when committed


@pytest.mark.parametrize("make", [lambda: SGDMomentumDirection(momentum=0.9, nesterov=True),
                                  lambda: AdamDirection(betas=(0.8, 0.99))], ids=["sgd", "adam"])
def test_state_dict_round_trip(make):
    model = tiny_model()
    d = make()
    for t in range(3):
        d.update(grads_of(model, *batch(t)))
    restored = make()
    restored.load_state_dict(copy.deepcopy(d.state_dict()))
    for t in range(3, 6):
        g = grads_of(model, *batch(t))
        a, b = d.update(g), restored.update(g)
        assert all(torch.equal(a[n], b[n]) for n in a)


def test_state_dict_is_a_copy():
    d = SGDMomentumDirection(momentum=0.9)
    d.update({"w": torch.tensor([1.0])})
    d.state_dict()["momentum_buffer"]["w"].fill_(7.0)
    assert float(d.update({"w": torch.tensor([0.0])})["w"]) == pytest.approx(0.9)


@pytest.mark.parametrize("kwargs, word", [(dict(momentum=-0.1), "momentum"),
                                          (dict(dampening=1.5), "dampening"),
                                          (dict(momentum=float("nan")), "momentum"),
                                          (dict(nesterov=1), "nesterov"),
                                          (dict(momentum=0.9, dampening=0.1, nesterov=True), "nesterov"),
                                          (dict(momentum=0.0, nesterov=True), "nesterov")])
def test_sgd_errors(kwargs, word):
    with pytest.raises(ValueError, match=word):
        SGDMomentumDirection(**kwargs)


@pytest.mark.parametrize("kwargs, word", [(dict(betas=(1.0, 0.9)), "betas"), (dict(betas=(0.9,)), "betas"),
                                          (dict(betas=(0.9, -0.1)), "betas"), (dict(eps=-1e-8), "eps")])
def test_adam_errors(kwargs, word):
    with pytest.raises(ValueError, match=word):
        AdamDirection(**kwargs)


def test_invalid_states_are_refused_and_leave_state_unchanged():
    d = AdamDirection()
    d.update({"w": torch.tensor([1.0])})
    before = d.state_dict()
    one = {"w": torch.tensor([1.0])}
    bad = [{"step": 1, "exp_avg": one},
           {"step": -1, "exp_avg": {}, "exp_avg_sq": {}},
           {"step": 1, "exp_avg": {"w": torch.tensor([float("nan")])}, "exp_avg_sq": one},
           {"step": 1, "exp_avg": one, "exp_avg_sq": {"w": torch.tensor([1.0, 2.0])}},
           {"step": 1, "exp_avg": one, "exp_avg_sq": {"w": torch.tensor([-1.0])}}]
    for state in bad:
        with pytest.raises(ValueError):
            d.load_state_dict(state)
    after = d.state_dict()
    assert after["step"] == before["step"] and torch.equal(after["exp_avg"]["w"], before["exp_avg"]["w"])
    with pytest.raises(ValueError, match="momentum_buffer"):
        SGDMomentumDirection().load_state_dict({})
    with pytest.raises(ValueError, match="grads"):
        SGDMomentumDirection().update({})


def test_make_direction():
    assert isinstance(make_direction("adam", eps=0.0), AdamDirection)
    d = make_direction("sgd_momentum", momentum=0.3)
    assert isinstance(d, SGDMomentumDirection) and d.momentum == 0.3
    with pytest.raises(ValueError, match="direction"):
        make_direction("lbfgs")
