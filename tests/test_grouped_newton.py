"""GroupedNewton: exact limits against dense float64 references, invariance, resuming, failures, errors."""
import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

import curvlab.grouped_newton as gn
from curvlab.grouped_newton import (
    GroupedNewton,
    GroupedNewtonConfig,
    PlateauConfig,
    normalised,
    uniform_average,
)
from curvlab.losses import loss_function

# one step of the plain method: u = g, every step, no averaging, nothing clamped
PLAIN = dict(direction="sgd_momentum", momentum=0.0, period=1, averaging=None, warmup=0,
             remove_negative=False)             # and the default damping lambda_1 = 1


@pytest.fixture(autouse=True)
def _float64(float64):
    yield


# ------------------------------------------------------------------------------------------ models
class ThreeBlockLinear(nn.Module):
    """f(x) = x_{:3} A + x_{3:} B + c: linear in every group, so the MSE loss is quadratic."""

    def __init__(self, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.A = nn.Parameter(torch.randn(3, 2, generator=g))
        self.B = nn.Parameter(torch.randn(2, 2, generator=g))
        self.c = nn.Parameter(torch.randn(2, generator=g))

    def forward(self, x):
        return x[:, :3] @ self.A + x[:, 3:] @ self.B + self.c


class AffineMLP(nn.Module):
    """A 4-3-3 tanh MLP whose layer weights are a * p + b (per-tensor scalars a, fixed offsets b)."""

    names = ("w1", "b1", "w2", "b2")
    shapes = ((3, 4), (3,), (3, 3), (3,))

    def __init__(self, theta, scales=None, offsets=None):
        super().__init__()
        scales = scales or {n: 1.0 for n in self.names}
        offsets = offsets or {n: torch.zeros(s) for n, s in zip(self.names, self.shapes)}
        for n in self.names:
            self.register_buffer("a_" + n, torch.tensor(float(scales[n])))
            self.register_buffer("c_" + n, offsets[n].clone())
            # theta = a p + c  <=>  p = (theta - c) / a
            self.register_parameter(n, nn.Parameter((theta[n] - offsets[n]) / scales[n]))

    def weights(self):
        return {n: getattr(self, "a_" + n) * getattr(self, n) + getattr(self, "c_" + n) for n in self.names}

    def forward(self, x):
        w = self.weights()
        return F.linear(torch.tanh(F.linear(x, w["w1"], w["b1"])), w["w2"], w["b2"])


class Rosenbrock(nn.Module):
    """Residuals (1 - x, 10 (y - x^2)): with ``sum_squared`` and one row, L = (1 - x)^2 + 100 (y - x^2)^2."""

    def __init__(self, x=-1.2, y=1.0):
        super().__init__()
        self.x = nn.Parameter(torch.tensor(x))
        self.y = nn.Parameter(torch.tensor(y))

    def forward(self, inputs):
        r = torch.stack([1 - self.x, 10 * (self.y - self.x ** 2)])
        return r.expand(inputs.shape[0], 2)


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))


def regression_batch(seed=0, n=12, d=5, k=2):
    g = torch.Generator().manual_seed(50 + seed)
    return torch.randn(n, d, generator=g), torch.randn(n, k, generator=g)


def classification_batch(seed=0, n=16):
    g = torch.Generator().manual_seed(70 + seed)
    return torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g)


# ------------------------------------------------------------------------------------------ dense references
def flat_loss(model, loss_name, x, y):
    """(theta0 flat, L(flat theta)) over the trainable parameters in named_parameters order."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = dict(model.named_parameters())
    shapes = [params[n].shape for n in names]
    sizes = [params[n].numel() for n in names]
    loss_fn = loss_function(loss_name)

    def L(theta):
        parts = dict(zip(names, (t.reshape(s) for t, s in zip(theta.split(sizes), shapes))))
        return loss_fn(functional_call(model, parts, (x,)), y)

    theta0 = torch.cat([params[n].detach().reshape(-1) for n in names])
    return names, sizes, theta0, L


def block_directions(u_flat, sizes):
    """M (P, S): column s is u restricted to group s (canonical partition)."""
    M = torch.zeros(u_flat.numel(), len(sizes))
    start = 0
    for s, size in enumerate(sizes):
        M[start:start + size, s] = u_flat[start:start + size]
        start += size
    return M


def flat_params(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


# ------------------------------------------------------------------------------------------ exact limits
@pytest.mark.parametrize("direction", ["sgd_momentum", "adam"])
@pytest.mark.parametrize("regularization", ["newton", "cubic"])
def test_one_step_on_a_quadratic_is_the_minimiser_over_the_span(direction, regularization):
    """L quadratic: theta_1 = argmin over theta_0 - sum_s eta_s u_s (cubic too: D3 = 0 there)."""
    model = ThreeBlockLinear()
    x, y = regression_batch()
    names, sizes, theta0, L = flat_loss(model, "mse", x, y)
    H = torch.func.hessian(L)(theta0)
    g = torch.func.grad(L)(theta0)
    if direction == "adam":                   # the first Adam step: g / (|g| + eps), not parallel to g
        u = g / (g.abs() + 1e-8)
    else:
        u = g
    M = block_directions(u, sizes)
    eta = torch.linalg.solve(M.T @ H @ M, M.T @ g)
    expected = theta0 - M @ eta
    opt = GroupedNewton(model, "mse", **{**PLAIN, "direction": direction, "regularization": regularization})
    opt.step(x, y)
    theta1 = flat_params(model)
    torch.testing.assert_close(theta1, expected, rtol=1e-10, atol=1e-12)
    # independent of the formula: the gradient at theta_1 is orthogonal to every group direction
    residual = M.T @ torch.func.grad(L)(theta1)
    assert residual.abs().max() <= 1e-10 * (M.T @ g).abs().max()
    assert opt.history[0]["ok"] and opt.history[0]["eta"] == pytest.approx(eta.tolist(), rel=1e-10)


def test_diagonal_ablation_uses_only_the_diagonal():
    model = ThreeBlockLinear()
    x, y = regression_batch()
    names, sizes, theta0, L = flat_loss(model, "mse", x, y)
    H, g = torch.func.hessian(L)(theta0), torch.func.grad(L)(theta0)
    M = block_directions(g, sizes)
    eta = (M.T @ g) / torch.diagonal(M.T @ H @ M)
    opt = GroupedNewton(model, "mse", **PLAIN, regularization="newton", diagonal=True)
    opt.step(x, y)
    torch.testing.assert_close(flat_params(model), theta0 - M @ eta, rtol=1e-10, atol=1e-12)
    H_logged = torch.tensor(opt.history[0]["H"])
    assert torch.count_nonzero(H_logged - torch.diag(H_logged.diagonal())) == 0


@pytest.mark.parametrize("model_kind", ["quadratic", "tanh_mlp"])
def test_trivial_partition_is_cauchys_step(model_kind):
    """S = 1, u = g: eta = g^T g / g^T H g, the exact line search along -g on a quadratic."""
    if model_kind == "quadratic":
        model, (x, y), loss = ThreeBlockLinear(), regression_batch(), "mse"
    else:
        model, (x, y), loss = mlp(), classification_batch(), "cross_entropy"
    names, sizes, theta0, L = flat_loss(model, loss, x, y)
    g = torch.func.grad(L)(theta0)
    gHg = g @ torch.func.hessian(L)(theta0) @ g
    assert gHg > 0
    opt = GroupedNewton(model, loss, **PLAIN, partition="trivial", regularization="newton")
    opt.step(x, y)
    theta1 = flat_params(model)
    torch.testing.assert_close(theta1, theta0 - (g @ g) / gHg * g, rtol=1e-10, atol=1e-12)
    if model_kind == "quadratic":             # exact line search: the new gradient is orthogonal to g
        assert abs(float(torch.func.grad(L)(theta1) @ g)) <= 1e-10 * float(g @ g)


def test_direction_is_mapped_to_groups_by_name():
    """A partition listing the tensors in another order gives the same trajectory."""
    x, y = classification_batch()
    models = [mlp(), mlp()]
    reordered = {"last_bias": ["2.bias"], "first_weight": ["0.weight"], "last_weight": ["2.weight"],
                 "first_bias": ["0.bias"]}
    opts = [GroupedNewton(models[0], "cross_entropy", **PLAIN, damping=0.5),
            GroupedNewton(models[1], "cross_entropy", **PLAIN, damping=0.5, partition=reordered)]
    assert opts[1].partition.labels != opts[0].partition.labels
    for _ in range(4):
        for opt in opts:
            opt.step(x, y)
    torch.testing.assert_close(flat_params(models[0]), flat_params(models[1]), rtol=1e-12, atol=1e-13)
    assert not torch.allclose(flat_params(models[0]), flat_params(mlp()))


# ------------------------------------------------------------------------------------------ invariance
SCALES = {"w1": 10.0, "b1": 0.1, "w2": 3.0, "b2": 0.01}


def affine_pair(seed=0):
    g = torch.Generator().manual_seed(seed)
    theta = {n: torch.randn(s, generator=g) for n, s in zip(AffineMLP.names, AffineMLP.shapes)}
    offsets = {n: torch.randn(s, generator=g) for n, s in zip(AffineMLP.names, AffineMLP.shapes)}
    return AffineMLP(theta), AffineMLP(theta, SCALES, offsets)


def trajectory(model, make_step, steps, x, y):
    points = []
    for _ in range(steps):
        make_step(x, y)
        points.append(torch.cat([w.detach().reshape(-1) for w in model.weights().values()]))
    return torch.stack(points)


MOMENTUM_UNIFORM = dict(momentum=0.9, averaging="uniform", avg_period=2, warmup=1, remove_negative=True)


@pytest.mark.parametrize("settings", [dict(), MOMENTUM_UNIFORM], ids=["gradient", "momentum_uniform"])
def test_per_group_affine_reparameterisation_leaves_the_trajectory_unchanged(settings):
    """theta_s = a_s p_s + b_s: the same steps in theta coordinates; SGD's trajectory changes."""
    x, y = classification_batch()
    plain, reparam = affine_pair()
    kwargs = {**PLAIN, "damping": 0.7, "regularization": "cubic", "damping_int": 1.0, **settings}
    runs = [trajectory(m, GroupedNewton(m, "cross_entropy", **kwargs).step, 6, x, y)
            for m in (plain, reparam)]
    assert (runs[0][-1] - runs[0][0]).abs().max() > 1e-2             # it moved
    torch.testing.assert_close(runs[1], runs[0], rtol=1e-10, atol=1e-10)

    def sgd_step(model):
        opt = torch.optim.SGD(model.parameters(), lr=0.05)

        def step(x, y):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        return step

    plain, reparam = affine_pair()
    sgd = [trajectory(m, sgd_step(m), 6, x, y) for m in (plain, reparam)]
    assert (sgd[1] - sgd[0]).abs().max() > 1e-2


# ------------------------------------------------------------------------------------------ convergence
@pytest.mark.parametrize("remove_negative", [False, True])
def test_rosenbrock_converges(remove_negative):
    """From (-1.2, 1), S = 2 (x and y), u = g, the summaries on the function itself."""
    model = Rosenbrock()
    inputs, targets = torch.zeros(1, 1), torch.zeros(1, 2)
    opt = GroupedNewton(model, "sum_squared", **{**PLAIN, "remove_negative": remove_negative},
                        regularization="cubic", damping_int=1.0)
    assert opt.num_groups == 2
    losses = [opt.step(inputs, targets) for _ in range(200)]
    assert losses[0] == pytest.approx(24.2)
    with torch.no_grad():
        final = float(loss_function("sum_squared")(model(inputs), targets))
    assert final < 1e-12
    assert abs(model.x.item() - 1) < 1e-5 and abs(model.y.item() - 1) < 1e-5
    # the solver may fail only once converged (g = 0 makes H_bar = 0), never on the way
    failed = [h["step"] for h in opt.history if not h["ok"]]
    assert all(losses[t - 1] < 1e-20 for t in failed) and opt.stats["skipped"] == 0


def teacher_batch(seed, n=64):
    """Labels from a fixed linear teacher: a task the small MLP can fit."""
    g = torch.Generator().manual_seed(90 + seed)
    x = torch.randn(n, 4, generator=g)
    return x, (x @ torch.randn(4, 3, generator=torch.Generator().manual_seed(1))).argmax(1)


def test_default_settings_train_a_small_classifier():
    """Momentum direction, cubic model, uniform averages, warm-up, separate shuffled summary batches."""
    x, y = teacher_batch(0)
    model = mlp()
    opt = GroupedNewton(model, "cross_entropy", summary_data=teacher_batch(1), summary_batch_size=16,
                        period=2, warmup=1, damping=0.3)
    losses = [opt.step(x, y) for _ in range(40)]
    assert losses[-1] < 0.1 * losses[0]
    assert opt.stats["failures"] == 0 and opt.stats["recomputations"] == 20
    json.dumps({"stats": opt.stats, "history": opt.history})     # JSON-ready records


# ------------------------------------------------------------------------------------------ procedure
def test_warmup_does_not_move_the_parameters():
    model = mlp()
    x, y = classification_batch()
    opt = GroupedNewton(model, "cross_entropy", period=3, warmup=2, averaging="uniform", avg_period=2,
                        damping=0.5)
    start = flat_params(model)
    for _ in range(6):
        opt.step(x, y)
        assert torch.equal(flat_params(model), start)
    assert opt.stats["warmup_steps"] == 6 and len(opt.history) == 2
    assert [h["warmup"] for h in opt.history] == [True, True] and any(lr > 0 for lr in opt.lrs)
    opt.step(x, y)
    assert not torch.equal(flat_params(model), start)
    assert len(opt.history) == 3 and not opt.history[-1]["warmup"] and opt.stats["updates"] == 1


def test_rates_stay_fixed_between_recomputations():
    model = mlp()
    x, y = classification_batch()
    opt = GroupedNewton(model, "cross_entropy", **{**PLAIN, "period": 4, "momentum": 0.9}, damping=0.5)
    seen = []
    for _ in range(8):
        opt.step(x, y)
        seen.append(opt.lrs)
    assert seen[0] == seen[1] == seen[2] == seen[3] != seen[4] == seen[7]
    assert [h["step"] for h in opt.history] == [1, 5]


def test_uniform_average_is_the_mean_of_the_last_p_plus_t_plus_1_estimates():
    P = 3
    values = [float(v) for v in torch.randn(14, generator=torch.Generator().manual_seed(3))]
    state = {}
    for n, v in enumerate(values):
        x = (torch.tensor([v]), torch.tensor([[2 * v]]), torch.tensor([v ** 2]))
        used, state = uniform_average(state, n, x, P)
        window = values[max(0, n - (n % P) - P):n + 1] if n >= P else values[:n + 1]
        assert len(window) == (n + 1 if n < P else P + n % P + 1)
        mean = sum(window) / len(window)
        assert float(used[0]) == pytest.approx(mean, abs=1e-14)
        assert float(used[1]) == pytest.approx(2 * mean, abs=1e-14)
        assert float(used[2]) == pytest.approx(sum(w ** 2 for w in window) / len(window), abs=1e-14)


def test_rates_average_and_clamping_rules():
    eta = torch.tensor([1.0, -2.0])
    true = gn.next_rates(None, eta, lr_ema=0.5, remove_negative=True, maintain_true_lrs=True)
    assert true.tolist() == [1.0, -2.0]
    true = gn.next_rates(true, torch.tensor([3.0, 4.0]), lr_ema=0.5, remove_negative=True,
                         maintain_true_lrs=True)
    assert true.tolist() == [2.0, 1.0]                          # averaged unclamped: (-2 + 4) / 2
    clamped = gn.next_rates(None, eta, lr_ema=0.5, remove_negative=True, maintain_true_lrs=False)
    clamped = gn.next_rates(clamped, torch.tensor([3.0, 4.0]), lr_ema=0.5, remove_negative=True,
                            maintain_true_lrs=False)
    assert clamped.tolist() == [2.0, 2.0]                       # averaged clamped: (0 + 4) / 2
    assert gn.applied_rates(torch.tensor([1.0, -2.0]), 0.1, True, 2).tolist() == [0.1, 0.0]
    assert gn.applied_rates(None, 0.1, True, 2).tolist() == [0.0, 0.0]
    H = torch.tensor([[4.0, 1.0], [1.0, 0.0]])
    assert normalised(H).tolist() == [[1.0, 0.0], [0.0, 0.0]]


def test_summary_batches_cycle_in_order_without_shuffle():
    """The summary loss logged at each recomputation is the loss on the expected rows of the summary data."""
    model = mlp()
    x, y = classification_batch()
    sx, sy = classification_batch(seed=5, n=10)
    opt = GroupedNewton(model, "cross_entropy", **PLAIN, damping=0.3, summary_data=(sx, sy),
                        summary_batch_size=4, summary_shuffle=False)
    expected_rows = [range(0, 4), range(4, 8), range(8, 10), range(0, 4)]
    for rows in expected_rows:
        with torch.no_grad():
            expected = float(F.cross_entropy(model(sx[list(rows)]), sy[list(rows)]))
        opt.step(x, y)
        assert opt.history[-1]["loss"] == pytest.approx(expected, rel=1e-12)


def test_without_summary_data_the_training_batch_is_used():
    model = mlp()
    x, y = classification_batch()
    opt = GroupedNewton(model, "cross_entropy", **PLAIN, damping=0.3)
    for _ in range(3):
        loss = opt.step(x, y)
        assert opt.history[-1]["loss"] == pytest.approx(loss, rel=1e-12)


def test_plateau_reduces_damping_and_current_rates():
    model = mlp()
    x, y = classification_batch()
    opt = GroupedNewton(model, "cross_entropy", **PLAIN, damping=0.5,
                        plateau=PlateauConfig(patience=1, threshold=0.1, factor=0.5))
    opt.step(x, y)
    before = opt.lrs
    assert opt.epoch_end(1.0) == 0.5                  # first epoch: improvement over +inf
    assert opt.epoch_end(0.95) == 0.5                 # < 10 % better: one bad epoch
    assert opt.epoch_end(0.95) == 0.25                # two bad epochs > patience 1: halved
    assert opt.lrs == pytest.approx([0.5 * lr for lr in before], rel=1e-15)
    assert opt.epoch_end(0.5) == 0.25 and opt.stats["plateau_reductions"] == 1
    assert GroupedNewton(mlp(), "cross_entropy").epoch_end(1e9) == 1.0     # no rule: unchanged


# ------------------------------------------------------------------------------------------ failures
def test_solver_failure_keeps_the_previous_rates(monkeypatch):
    model = mlp()
    x, y = classification_batch()
    calls = []
    real = gn.solve_learning_rates

    def failing_second_time(*args, **kwargs):
        calls.append(1)
        solution = real(*args, **kwargs)
        if len(calls) == 2:
            return solution._replace(eta=None, ok=False, reason="forced failure", radius=math.nan)
        return solution

    monkeypatch.setattr(gn, "solve_learning_rates", failing_second_time)
    opt = GroupedNewton(model, "cross_entropy", **PLAIN, damping=0.5)
    opt.step(x, y)
    first = opt.lrs
    before = flat_params(model)
    opt.step(x, y)
    assert opt.lrs == first and opt.stats["failures"] == 1 and opt.stats["last_reason"] == "forced failure"
    assert opt.history[1]["ok"] is False and opt.history[1]["eta"] is None and opt.history[1]["lrs"] == first
    assert not torch.equal(flat_params(model), before)          # the previous rates were applied
    opt.step(x, y)
    assert opt.lrs != first and opt.history[2]["ok"]


class WithUnused(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(3, 2)
        self.unused = nn.Parameter(torch.ones(2))

    def forward(self, x):
        return self.layer(x)


def test_failure_before_any_success_leaves_zero_rates():
    """A group the loss does not reach has u_s = 0, so H_bar is singular and Newton fails."""
    model = WithUnused()
    x, y = regression_batch(d=3)
    start = flat_params(model)
    opt = GroupedNewton(model, "mse", **PLAIN, regularization="newton")
    for _ in range(3):
        opt.step(x, y)
    assert opt.stats["failures"] == 3 and opt.stats["last_reason"] and opt.lrs == [0.0, 0.0, 0.0]
    assert torch.equal(flat_params(model), start)


def test_non_finite_loss_skips_the_step():
    model = mlp()
    x, y = classification_batch()
    opt = GroupedNewton(model, "cross_entropy", **PLAIN, damping=0.5)
    opt.step(x, y)
    state, before = opt.state_dict(), flat_params(model)
    bad = x.clone()
    bad[0, 0] = float("nan")
    assert math.isnan(opt.step(bad, y))
    assert torch.equal(flat_params(model), before) and opt.stats["skipped"] == 1
    assert "non-finite" in opt.stats["last_skip_reason"]
    assert len(opt.history) == len(state["history"])            # no summaries at a skipped step
    opt.step(x, y)
    assert not torch.equal(flat_params(model), before)
    assert all(math.isfinite(v) for v in flat_params(model).tolist())


# ------------------------------------------------------------------------------------------ state
@pytest.mark.parametrize("direction", ["sgd_momentum", "adam"])
def test_state_dict_round_trip_continues_exactly(direction):
    batches = [classification_batch(seed=s) for s in range(10)]
    summary = classification_batch(seed=20, n=24)
    kwargs = dict(direction=direction, period=2, averaging="uniform", avg_period=2, warmup=1, damping=0.3,
                  summary_batch_size=5, lr_ema=0.3, plateau={"patience": 0, "factor": 0.5})
    model = mlp()
    opt = GroupedNewton(model, "cross_entropy", summary_data=summary, **kwargs)
    for b in batches[:5]:
        opt.step(*b)
    opt.epoch_end(1.0)
    opt.epoch_end(2.0)
    saved_model, saved_state = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    for b in batches[5:]:
        opt.step(*b)

    other = mlp(seed=1)
    other.load_state_dict(saved_model)
    resumed = GroupedNewton(other, "cross_entropy", summary_data=summary, **kwargs)
    resumed.load_state_dict(saved_state)
    for b in batches[5:]:
        resumed.step(*b)
    assert torch.equal(flat_params(other), flat_params(model))
    assert resumed.history == opt.history and resumed.stats == opt.stats and resumed.damping == opt.damping
    assert resumed.lrs == opt.lrs


def test_invalid_state_is_refused_and_changes_nothing():
    model = mlp()
    x, y = classification_batch()
    opt = GroupedNewton(model, "cross_entropy", **PLAIN)
    opt.step(x, y)
    good = opt.state_dict()
    bad_entries = [("step", -1), ("damping", 0.0), ("eta", torch.zeros(3)),
                   ("eta", torch.tensor([float("nan")] * 4)), ("direction", {}),
                   ("averages", {"use": None}), ("plateau", {"best": 1.0}), ("stats", {}),
                   ("history", None), ("summary_batches", {"generator": None, "position": 0, "order": None})]
    for key, value in bad_entries:
        with pytest.raises(ValueError, match=key):
            opt.load_state_dict({**good, key: value})
    with pytest.raises(ValueError, match="lacks"):
        opt.load_state_dict({"step": 1})
    sgd = GroupedNewton(mlp(), "cross_entropy", momentum=0.9).state_dict()
    momentum = GroupedNewton(model, "cross_entropy", momentum=0.9)
    wrong = {**sgd, "direction": {"momentum_buffer": {"0.weight": torch.zeros(2, 2)}}}
    with pytest.raises(ValueError, match="direction"):
        momentum.load_state_dict(wrong)
    after = opt.state_dict()                                     # nothing was assigned by the failed loads
    assert after["step"] == 1 and torch.equal(after["eta"], good["eta"]) and after["stats"] == good["stats"]


# ------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("field, value", [
    ("partition", "blocks"), ("partition", {"a": []}), ("direction", "lbfgs"), ("momentum", -1.0),
    ("dampening", 2.0), ("betas", (0.9, 1.0)), ("eps", -1.0), ("damping", 0.0), ("damping", math.inf),
    ("damping_int", -1.0), ("damping_int", math.nan), ("regularization", "trust"), ("ridge", -1e-3),
    ("threshold", -1.0), ("threshold", 1.0), ("diagonal", 1), ("period", 0), ("period", 1.5),
    ("averaging", "mean"),
    ("avg_period", 0), ("warmup", -1), ("ema", 1.0), ("lr_ema", -0.1), ("remove_negative", "yes"),
    ("maintain_true_lrs", None), ("plateau", {"factor": 1.5}), ("plateau", {"size": 1}), ("plateau", 3),
    ("summary_batch_size", 0), ("summary_shuffle", 0), ("seed", -1), ("summary_route", "fast")])
def test_invalid_hyperparameters_raise_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        GroupedNewtonConfig(**{field: value})


def test_config_round_trip_and_constructor_errors():
    config = GroupedNewtonConfig(partition={"w": ["weight"], "b": ["bias"]}, plateau={"patience": 3},
                                 betas=[0.8, 0.99], period=5)
    assert GroupedNewtonConfig.from_dict(json.loads(json.dumps(config.as_dict()))) == config
    assert config.plateau == PlateauConfig(patience=3)
    with pytest.raises(ValueError, match="unknown"):
        GroupedNewtonConfig.from_dict({"lr": 1.0})
    with pytest.raises(ValueError, match="nesterov"):
        GroupedNewtonConfig(nesterov=True, momentum=0.0)
    with pytest.raises(ValueError, match="loss"):
        GroupedNewton(mlp(), "hinge")
    with pytest.raises(ValueError, match="model"):
        GroupedNewton(lambda x: x, "mse")
    with pytest.raises(TypeError, match="lr"):
        GroupedNewton(mlp(), "mse", lr=0.1)
    opt = GroupedNewton(mlp(), "mse", {"damping": 0.2}, period=3)
    assert (opt.config.damping, opt.config.period) == (0.2, 3)
    with pytest.raises(ValueError, match="summary_data"):
        opt.set_summary_data(torch.zeros(3, 4), torch.zeros(2))
