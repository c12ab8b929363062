"""SGN: limits with known answers, the damping and line-search rules, robustness and resuming."""
import io
import math
import re
import warnings

import pytest
import torch
from torch import nn

from curvlab import models
from curvlab.sgn import SGN, SGNConfig


@pytest.fixture(autouse=True)
def _float64(float64):
    """Every test here runs in float64 (conftest's ``float64`` fixture)."""
    yield


def least_squares(seed=0, n=20, d=4):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g)
    y = X @ torch.randn(d, 1, generator=g) + 0.3 * torch.randn(n, 1, generator=g)
    torch.manual_seed(seed)
    model = nn.Linear(d, 1)
    A = torch.cat([X, torch.ones(n, 1)], dim=1)
    solution = torch.linalg.lstsq(A, y).solution                  # (d + 1, 1)
    return model, X, y, solution


def classification(seed=0, n=32):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = models.mlp([5, 6, 3], "sigmoid")
    return model, torch.randn(n, 5, generator=g), torch.randint(0, 3, (n,), generator=g)


def params_of(model):
    return [p.detach().clone() for p in model.parameters()]


class Sine(nn.Module):
    """f(w) = sin(w): with target 0 the Gauss-Newton step w -> w - tan(w) overshoots for w = 1.2."""

    def __init__(self, w=1.2):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([w]))

    def forward(self, x):                        # x (1, 1)
        return torch.sin(self.w * x)


class Log(nn.Module):
    """f(w) = log(w): the step from w = 0.5 towards target -5 lands at w < 0 (NaN loss)."""

    def __init__(self, w=0.5):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([w]))

    def forward(self, x):
        return torch.log(self.w) * x


def one():
    return torch.ones(1, 1)


# ------------------------------------------------------------------------------------------ limits

@pytest.mark.parametrize("preconditioner", [False, True])
def test_one_step_solves_linear_least_squares(preconditioner):
    model, X, y, solution = least_squares()
    opt = SGN(model, "mse", rho=1e-12, rho_min=0.0, cg_max_iter=5, cg_warmup_steps=0, cg_tol=0.0,
              preconditioner=preconditioner)
    stats = opt.step(X, y)
    got = torch.cat([model.weight.detach().reshape(-1), model.bias.detach()])
    torch.testing.assert_close(got, solution.reshape(-1), rtol=1e-8, atol=1e-9)
    assert stats.accepted and stats.alpha == 1.0 and stats.backtracks == 0
    assert stats.trust_ratio == pytest.approx(1.0, abs=1e-6)
    assert stats.next_rho == pytest.approx(1e-12 / 1.5)          # ratio > 3/4: rho shrinks


def test_preconditioner_changes_a_truncated_direction():
    runs = []
    for preconditioner in (False, True):
        model, X, y, _ = least_squares()
        SGN(model, "mse", cg_max_iter=1, cg_warmup_steps=0, preconditioner=preconditioner,
            line_search=False).step(X, y)
        runs.append(torch.cat([p.detach().reshape(-1) for p in model.parameters()]))
    assert not torch.allclose(runs[0], runs[1])


def test_huge_damping_gives_gradient_descent_with_step_one_over_rho():
    rho = 1e6
    model, x, y = classification()
    twin, _, _ = classification()
    opt = SGN(model, "cross_entropy", rho=rho, trust_region=False, line_search=False, cg_warmup_steps=0,
              cg_max_iter=5, cg_tol=0.0)
    opt.step(x, y)
    sgd = torch.optim.SGD(twin.parameters(), lr=1.0 / rho)
    nn.functional.cross_entropy(twin(x), y).backward()
    start = [p.detach().clone() for p in twin.parameters()]
    sgd.step()
    for p, q, s in zip(model.parameters(), twin.parameters(), start):
        step_sgn, step_sgd = p.detach() - s, q.detach() - s
        assert torch.linalg.norm(step_sgn - step_sgd) <= 1e-5 * torch.linalg.norm(step_sgd)


# ------------------------------------------------------------------------------------------ damping

def test_trust_region_in_a_step_with_known_ratio():
    # least squares: the quadratic model is exact up to the damping, ratio ~ 1 -> rho decreases to the floor
    model, X, y, _ = least_squares()
    opt = SGN(model, "mse", rho=1.2e-6, rho_min=1e-6, cg_max_iter=5, cg_warmup_steps=0, cg_tol=0.0)
    stats = opt.step(X, y)
    assert stats.trust_ratio == pytest.approx((stats.trial_loss - stats.loss) / stats.predicted_change)
    assert stats.trust_ratio > 0.75 and stats.next_rho == 1e-6 and opt.rho == 1e-6
    # sine: the full Gauss-Newton step overshoots, ratio < 0 -> rho grows by 1.5
    opt = SGN(Sine(), "mse", rho=1e-8, rho_min=1e-9, cg_warmup_steps=0)
    stats = opt.step(one(), torch.zeros(1, 1))
    w = 1.2
    predicted = -math.sin(w) ** 2 * (2 * math.cos(w) ** 2) / (2 * math.cos(w) ** 2 + 1e-8)
    assert stats.predicted_change == pytest.approx(predicted, rel=1e-9)
    assert stats.trust_ratio < 0 and stats.next_rho == pytest.approx(1.5e-8) and opt.rho == stats.next_rho


def test_rho_schedule_in_steps():
    model, x, y = classification()
    opt = SGN(model, "cross_entropy", rho=1e-3, rho_min=1e-5, trust_region=False, rho_schedule="linear",
              schedule_steps=3, cg_max_iter=2, cg_warmup_steps=0)
    used = [opt.step(x, y).rho for _ in range(4)]
    assert used == pytest.approx([1e-3, 0.5 * (1e-3 + 1e-5), 1e-5, 1e-5])


def test_cg_warmup_then_cap():
    model, x, y = classification()
    opt = SGN(model, "cross_entropy", cg_max_iter=1, cg_warmup_iter=4, cg_warmup_steps=2, cg_tol=0.0)
    assert [opt.step(x, y).cg_iterations for _ in range(4)] == [4, 4, 1, 1]


# ------------------------------------------------------------------------------------------ line search

def expected_alpha(rule, c, w0=1.2, rho=1e-8, max_backtracks=10):
    g = 2 * math.sin(w0) * math.cos(w0)
    delta = -g / (2 * math.cos(w0) ** 2 + rho)
    loss0, alpha, n = math.sin(w0) ** 2, 1.0, 0
    while True:
        bound = loss0 + c * (alpha if rule == "armijo" else 1.0) * g * delta
        if math.sin(w0 + alpha * delta) ** 2 <= bound or n == max_backtracks:
            return alpha, n
        alpha, n = alpha / 2, n + 1


@pytest.mark.parametrize("rule,c", [("armijo", 1e-4), ("armijo", 0.5), ("reference", 1e-4),
                                    ("reference", 0.5)])
def test_line_search_backtracks_when_the_full_step_overshoots(rule, c):
    model = Sine()
    opt = SGN(model, "mse", rho=1e-8, rho_min=1e-9, cg_warmup_steps=0, line_search_rule=rule, armijo_c=c)
    stats = opt.step(one(), torch.zeros(1, 1))
    alpha, n = expected_alpha(rule, c)
    assert n >= 1
    assert (stats.alpha, stats.backtracks) == (alpha, n)
    assert stats.trial_loss > stats.loss                          # the full step overshoots
    assert model.w.item() == pytest.approx(1.2 - alpha * math.tan(1.2), rel=1e-6)
    if rule == "reference" and c == 0.5:                          # fixed rhs = L - L = 0: never met
        assert (stats.alpha, stats.backtracks) == (2.0 ** -10, 10)


def test_without_line_search_the_overshooting_step_is_taken_unless_rejected():
    model = Sine()
    stats = SGN(model, "mse", rho=1e-8, rho_min=1e-9, cg_warmup_steps=0, line_search=False).step(
        one(), torch.zeros(1, 1))
    assert stats.accepted and stats.alpha == 1.0 and stats.new_loss > stats.loss
    model = Sine()
    stats = SGN(model, "mse", rho=1e-8, rho_min=1e-9, cg_warmup_steps=0, line_search=False,
                reject_uphill=True).step(one(), torch.zeros(1, 1))
    assert not stats.accepted and model.w.item() == 1.2 and stats.new_loss == stats.loss


# ------------------------------------------------------------------------------------------ robustness

def test_non_finite_trial_loss_leaves_parameters_and_raises_rho():
    model = Log()
    before = model.w.detach().clone()
    opt = SGN(model, "mse", rho=1e-4, cg_warmup_steps=0, line_search=False)
    stats = opt.step(one(), torch.full((1, 1), -5.0))
    assert math.isnan(stats.trial_loss) and not stats.accepted
    assert torch.equal(model.w.detach(), before)
    assert stats.next_rho == pytest.approx(1.5e-4) and opt.rho == stats.next_rho
    assert stats.new_loss == stats.loss
    # with the line search, a finite point is found by backtracking (w = 0.5 - alpha 2.15 > 0)
    model = Log()
    stats = SGN(model, "mse", rho=1e-4, cg_warmup_steps=0).step(one(), torch.full((1, 1), -5.0))
    assert stats.accepted and stats.backtracks == 3 and math.isfinite(stats.new_loss)
    assert stats.new_loss < stats.loss and stats.next_rho == pytest.approx(1.5e-4)


def test_non_finite_loss_at_the_current_point_skips_the_step():
    model, x, y = classification()
    before = params_of(model)
    x = x.clone()
    x[0, 0] = math.nan
    opt = SGN(model, "cross_entropy")
    stats = opt.step(x, y)
    assert not stats.accepted and math.isnan(stats.loss)
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))
    assert opt.rho == 1e-4


# ------------------------------------------------------------------------------------------ momentum

def test_momentum_bias_correction_and_prediction_rules():
    model, x, y = classification()
    plain, _, _ = classification()
    # (few CG iterations: on this ill-conditioned system longer CG runs amplify last-bit differences)
    kwargs = dict(cg_max_iter=3, cg_warmup_steps=0, rho=1e-2)
    s_mom = SGN(model, "cross_entropy", beta=0.9, **kwargs).step(x, y)
    s_plain = SGN(plain, "cross_entropy", **kwargs).step(x, y)
    for p, q in zip(model.parameters(), plain.parameters()):     # m_hat_1 = g_1
        torch.testing.assert_close(p, q)
    assert s_mom.predicted_change == pytest.approx(s_plain.predicted_change)
    # with beta = 0 and alpha = 1 the reference prediction 1/2 (r + g)^T Delta is the model's
    ref, _, _ = classification()
    s_ref = SGN(ref, "cross_entropy", prediction_rule="reference", **kwargs).step(x, y)
    assert s_ref.predicted_change == pytest.approx(s_plain.predicted_change, rel=1e-9)
    # with momentum the two predictions differ from the second step on
    opts = [SGN(m, "cross_entropy", beta=0.9, prediction_rule=rule, **kwargs)
            for m, rule in ((classification()[0], "model"), (classification()[0], "reference"))]
    x2 = x.flip(0)
    second = [(o.step(x, y), o.step(x2, y))[1].predicted_change for o in opts]
    assert second[0] != pytest.approx(second[1], rel=1e-3)


# ------------------------------------------------------------------------------------------ resume

def test_trial_points_through_the_line_shortcut_equal_a_plain_forward():
    """SGN evaluates trial losses from the moved first layer (traced method) or by a full forward
    pass (jvp method): the same steps in float64."""
    runs = {}
    for method in ("traced", "jvp"):
        model, x, y = classification()
        opt = SGN(model, "cross_entropy", rho=1e-2, cg_max_iter=4, cg_warmup_iter=4, method=method)
        runs[method] = ([opt.step(x, y) for _ in range(3)], params_of(model))
    (stats_t, params_t), (stats_j, params_j) = runs["traced"], runs["jvp"]
    assert all(s.line_shortcut for s in stats_t)              # the shortcut did run...
    assert not any(s.line_shortcut for s in stats_j)          # ...and the plain forward here
    for a, b in zip(stats_t, stats_j):
        assert a.trial_loss == pytest.approx(b.trial_loss, rel=1e-12) and a.alpha == b.alpha
    for a, b in zip(params_t, params_j):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_where_the_shortcut_does_not_apply_full_passes_give_the_same_steps():
    """A model with buffers (BatchNorm in eval mode) has no affine frontier: the traced method falls
    back to full forward passes for the trial points, and its steps equal the jvp method's."""
    _, x, y = classification()
    runs = {}
    for method in ("traced", "jvp"):
        model = bn_model().eval()
        opt = SGN(model, "cross_entropy", rho=1e-2, cg_max_iter=3, method=method)
        runs[method] = ([opt.step(x, y) for _ in range(3)], params_of(model))
    assert not any(s.line_shortcut for s in runs["traced"][0])
    for a, b in zip(runs["traced"][0], runs["jvp"][0]):
        assert a.trial_loss == pytest.approx(b.trial_loss, rel=1e-12) and a.backtracks == b.backtracks
    for a, b in zip(runs["traced"][1], runs["jvp"][1]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_resume_is_bit_identical(tmp_path):
    def batches():
        g = torch.Generator().manual_seed(5)
        return [(torch.randn(16, 5, generator=g), torch.randint(0, 3, (16,), generator=g)) for _ in range(6)]
    kwargs = dict(beta=0.5, cg_max_iter=2, cg_warmup_iter=4, cg_warmup_steps=2)
    data = batches()

    straight, _, _ = classification()
    opt = SGN(straight, "cross_entropy", **kwargs)
    stats_straight = [opt.step(x, y).as_dict() for x, y in data]

    first, _, _ = classification()
    opt = SGN(first, "cross_entropy", **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                  # the default traced products, no fallback
        stats_resumed = [opt.step(x, y).as_dict() for x, y in data[:3]]
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": first.state_dict(), "sgn": opt.state_dict()}, path)

    checkpoint = torch.load(path)
    second = models.mlp([5, 6, 3], "sigmoid")
    second.load_state_dict(checkpoint["model"])
    opt = SGN(second, "cross_entropy", **kwargs)
    opt.load_state_dict(checkpoint["sgn"])
    stats_resumed += [opt.step(x, y).as_dict() for x, y in data[3:]]

    assert stats_resumed == stats_straight
    for p, q in zip(second.parameters(), straight.parameters()):
        assert torch.equal(p, q)


def test_state_round_trip_resumes_identically():
    model, x, y = classification()
    twin, _, _ = classification()
    kwargs = dict(beta=0.5, cg_max_iter=2, cg_warmup_steps=0)
    opt, ref = SGN(model, "cross_entropy", **kwargs), SGN(twin, "cross_entropy", **kwargs)
    for _ in range(2):
        opt.step(x, y), ref.step(x, y)
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "sgn": opt.state_dict()}, buf)
    buf.seek(0)
    checkpoint = torch.load(buf)
    fresh, _, _ = classification()
    fresh.load_state_dict(checkpoint["model"])
    resumed = SGN(fresh, "cross_entropy", **kwargs)
    resumed.load_state_dict(checkpoint["sgn"])
    assert resumed.step_count == 2 and resumed.rho == ref.rho
    assert checkpoint["sgn"]["config"] == ref.config.as_dict()
    for _ in range(2):
        assert resumed.step(x, y).as_dict() == ref.step(x, y).as_dict()
    assert all(torch.equal(p, q) for p, q in zip(fresh.parameters(), twin.parameters()))


def test_load_state_dict_validates():
    model, _, _ = classification()
    opt = SGN(model, "cross_entropy", beta=0.5)
    with pytest.raises(ValueError, match="lacks"):
        opt.load_state_dict({"step": 1})
    bad = {"step": 1, "rho": 1e-3, "momentum": [torch.zeros(2)], "momentum_steps": 1}
    with pytest.raises(ValueError, match="momentum"):
        opt.load_state_dict(bad)


@pytest.mark.parametrize("entry,value", [
    ("rho", math.nan), ("rho", -5.0), ("rho", 0.0), ("rho", math.inf), ("rho", "1e-3"),
    ("step", -1), ("step", 1.5), ("momentum_steps", 3), ("momentum", torch.full((57,), math.nan)),
    ("momentum", torch.zeros(3)),
])
def test_invalid_checkpoint_is_refused_and_leaves_the_state(entry, value):
    model, x, y = classification()
    opt = SGN(model, "cross_entropy", beta=0.5, cg_max_iter=2, cg_warmup_steps=0)
    opt.step(x, y), opt.step(x, y)
    before = opt.state_dict()
    state = {**before, entry: value}
    with pytest.raises(ValueError, match=entry):
        opt.load_state_dict(state)
    after = opt.state_dict()
    assert after.keys() == before.keys()
    for key in before:
        if isinstance(before[key], torch.Tensor):
            assert torch.equal(after[key], before[key])
        else:
            assert after[key] == before[key]
    stats = opt.step(x, y)                       # still a working optimizer, at the old rho
    assert stats.rho == before["rho"] and stats.cg_iterations == 2


# ------------------------------------------------------------------------------------------ model and batch

def test_empty_batch_raises_and_changes_nothing():
    model, x, y = classification()
    before = params_of(model)
    opt = SGN(model, "cross_entropy")
    with pytest.raises(ValueError, match="non-empty batch"):
        opt.step(x[:0], y[:0])
    assert opt.step_count == 0 and all(torch.equal(p, b) for p, b in zip(model.parameters(), before))


def bn_model(track=True):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6, track_running_stats=track), nn.Tanh(),
                         nn.Linear(6, 3))


@pytest.mark.parametrize("make,name", [
    (bn_model, "1 (BatchNorm1d)"),
    (lambda: nn.Sequential(nn.Linear(5, 6), nn.Dropout(0.2), nn.Linear(6, 3)), "1 (Dropout)"),
    (lambda: nn.Sequential(nn.Linear(5, 6), nn.RReLU(), nn.Linear(6, 3)), "1 (RReLU)"),
    (lambda: nn.Sequential(nn.Linear(5, 6), nn.Sequential(nn.Tanh(), nn.AlphaDropout(0.1)), nn.Linear(6, 3)),
     "1.1 (AlphaDropout)"),
])
@pytest.mark.parametrize("method", ["traced", "jvp"])
def test_training_mode_randomness_and_running_stats_are_refused(make, name, method):
    model = make()
    _, x, y = classification()
    buffers = [b.clone() for b in model.buffers()]
    before = params_of(model)
    opt = SGN(model, "cross_entropy", method=method)
    with pytest.raises(ValueError, match=re.escape(name)):
        opt.step(x, y)
    assert opt.step_count == 0 and all(torch.equal(p, b) for p, b in zip(model.parameters(), before))
    assert all(torch.equal(b, c) for b, c in zip(model.buffers(), buffers))   # running stats untouched
    model.eval()                                                               # the documented remedy
    stats = opt.step(x, y)
    assert stats.accepted and stats.new_loss < stats.loss
    assert all(torch.equal(b, c) for b, c in zip(model.buffers(), buffers))


def test_batchnorm_on_batch_statistics_is_a_deterministic_function_and_accepted():
    """BatchNorm with track_running_stats=False in training mode normalises by the batch's own
    statistics: every method gives the same step (its GGN is of the whole-batch function)."""
    _, x, y = classification()
    runs = []
    for method in ("traced", "jvp", "double_backward"):
        model = bn_model(track=False)
        SGN(model, "cross_entropy", method=method, cg_max_iter=3).step(x, y)
        runs.append(params_of(model))
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


def test_dropout_with_p_zero_and_eval_mode_modules_are_allowed():
    model = nn.Sequential(nn.Linear(5, 6), nn.Dropout(0.0), nn.Tanh(), nn.Linear(6, 3))
    _, x, y = classification()
    assert SGN(model, "cross_entropy").step(x, y).accepted


# ------------------------------------------------------------------------------------------ validation

@pytest.mark.parametrize("kwargs,name", [
    ({"rho": 0.0}, "rho"), ({"rho": -1.0}, "rho"), ({"rho": math.nan}, "rho"),
    ({"rho_min": -1.0}, "rho_min"), ({"rho": 1e-6, "rho_min": 1e-4}, "rho_min"),
    ({"cg_max_iter": 0}, "cg_max_iter"), ({"cg_max_iter": 2.5}, "cg_max_iter"),
    ({"cg_warmup_iter": 0}, "cg_warmup_iter"), ({"cg_warmup_steps": -1}, "cg_warmup_steps"),
    ({"cg_tol": -1.0}, "cg_tol"), ({"precond_exponent": 2.0}, "precond_exponent"),
    ({"preconditioner": "yes"}, "preconditioner"), ({"tr_lower": 0.8}, "tr_lower"),
    ({"tr_factor": 1.0}, "tr_factor"), ({"rho_schedule": "exp"}, "rho_schedule"),
    ({"rho_schedule": "linear"}, "rho_schedule"),
    ({"trust_region": False, "schedule_steps": 0}, "schedule_steps"),
    ({"line_search_rule": "wolfe"}, "line_search_rule"), ({"armijo_c": 0.0}, "armijo_c"),
    ({"armijo_c": 1.0}, "armijo_c"), ({"backtrack_factor": 1.0}, "backtrack_factor"),
    ({"max_backtracks": -1}, "max_backtracks"), ({"alpha": 0.0}, "alpha"), ({"beta": 1.0}, "beta"),
    ({"beta": -0.1}, "beta"), ({"prediction_rule": "x"}, "prediction_rule"), ({"method": "x"}, "method"),
    ({"line_search": 1}, "line_search"),
])
def test_invalid_hyperparameters_raise(kwargs, name):
    model, _, _ = classification()
    with pytest.raises(ValueError, match=name):
        SGN(model, "cross_entropy", **kwargs)


def test_config_keywords_and_dict_give_the_same_steps():
    kwargs = dict(rho=1e-2, cg_max_iter=3, cg_warmup_steps=1, beta=0.3)
    runs = []
    for make in (lambda m: SGN(m, "cross_entropy", **kwargs),
                 lambda m: SGN(m, "cross_entropy", SGNConfig(**kwargs)),
                 lambda m: SGN(m, "cross_entropy", SGNConfig(rho=1.0, beta=0.3), rho=1e-2, cg_max_iter=3,
                               cg_warmup_steps=1),
                 lambda m: SGN(m, "cross_entropy", SGNConfig(**kwargs).as_dict())):
        model, x, y = classification()
        opt = make(model)
        assert opt.config == SGNConfig(**kwargs)
        assert opt.hyperparameters() == {"loss": "cross_entropy", **SGNConfig(**kwargs).as_dict()}
        runs.append([opt.step(x, y).as_dict() for _ in range(3)])
    assert all(run == runs[0] for run in runs[1:])


def test_unknown_hyperparameter_and_bad_config():
    model, _, _ = classification()
    with pytest.raises(TypeError, match="cg_iters"):
        SGN(model, "cross_entropy", cg_iters=3)
    with pytest.raises(ValueError, match="cg_iters"):
        SGN(model, "cross_entropy", {"cg_iters": 3})
    with pytest.raises(ValueError, match="config"):
        SGN(model, "cross_entropy", 3)


def test_invalid_loss_and_model():
    model, _, _ = classification()
    with pytest.raises(ValueError, match="loss"):
        SGN(model, "hinge")
    with pytest.raises(ValueError, match="model"):
        SGN(lambda x: x, "mse")
    frozen = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="trainable"):
        SGN(frozen, "mse")


@pytest.mark.parametrize("k", [1, 3])
def test_step_is_dense_cg_on_the_damped_ggn_and_its_last_iteration_skips_the_backward(k, monkeypatch):
    """Delta = k dense CG iterations on (G + rho I) Delta = -g, G from explicit Jacobians; the predicted
    change is the damped model's; the k-th CG iteration uses only the curvature (k - 1 J^T passes)."""
    from _dense import dense_ggn

    from curvlab import curvature as cv
    from curvlab.krylov import conjugate_gradient
    model, x, y = classification()
    G, theta = dense_ggn(model, "cross_entropy", x, y)
    names = cv.parameter_names(model)
    f = cv.model_function(model, x, names)
    grads = torch.func.grad(lambda *ps: nn.functional.cross_entropy(f(*ps), y),
                            argnums=tuple(range(len(theta))))(*theta)
    theta, g = (torch.cat([t.reshape(-1) for t in ts]).clone() for ts in (theta, grads))
    rho = 0.5
    A = G + rho * torch.eye(len(theta), dtype=G.dtype)
    dense_delta, _ = conjugate_gradient(lambda v: A @ v, -g, max_iter=k, tol=0.0)
    backward = []
    original = cv.GGNOperator.vector_jacobian_product
    monkeypatch.setattr(cv.GGNOperator, "vector_jacobian_product",
                        lambda self, w: backward.append(1) or original(self, w))
    opt = SGN(model, "cross_entropy", cg_max_iter=k, cg_warmup_steps=0, cg_tol=0.0, rho=rho, alpha=1.0,
              line_search=False)                             # alpha_0 = 1: the model's change below
    stats = opt.step(x, y)
    delta = (torch.cat([p.detach().reshape(-1) for p in model.parameters()]) - theta) / stats.alpha
    torch.testing.assert_close(delta, dense_delta, rtol=1e-9, atol=1e-12)
    predicted = float(g @ dense_delta + 0.5 * dense_delta @ A @ dense_delta)
    assert stats.predicted_change == pytest.approx(predicted, rel=1e-9)
    assert len(backward) == k - 1 and stats.cg_iterations == k
    assert math.isnan(stats.cg_residual) and not stats.cg_converged


def test_cg_stopping_on_its_tolerance_reports_the_residual():
    model, X, y, _ = least_squares()
    stats = SGN(model, "mse", cg_max_iter=50, cg_warmup_steps=0, cg_tol=1e-10, rho=1e-3).step(X, y)
    assert stats.cg_converged and stats.cg_residual <= 1e-10 and stats.cg_iterations < 50
