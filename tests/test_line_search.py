"""The line-search shortcut: which path ran, warm-started CG, and the fallback without a frontier."""
import pytest
import torch
from _dense import dense_ggn
from torch import nn

from curvlab import curvature as cv
from curvlab import models
from curvlab._line_search import LineShortcut
from curvlab.krylov import conjugate_gradient

N, C = 6, 3
TOL = dict(rtol=1e-12, atol=1e-12)


def problem(kind):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    if kind == "mlp":
        return models.mlp([5, 4, 3], "tanh").double(), torch.randn(N, 5, generator=g, dtype=torch.float64), \
            torch.randint(0, C, (N,), generator=g)
    return models.conv_net((1, 6, 6), [(2, 3)], [], n_classes=C).double(), \
        torch.randn(N, 1, 6, 6, generator=g, dtype=torch.float64), torch.randint(0, C, (N,), generator=g)


def full_forward(model, params, x):
    return torch.func.functional_call(model, dict(zip(cv.parameter_names(model), params)), (x,))


def damped(line):
    return lambda v: [a + 0.1 * b for a, b in zip(line(v), v)]


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_shortcut_runs_and_equals_the_network_at_the_trial_point(kind):
    model, x, y = problem(kind)
    cv.clear_trace_cache(model)
    op = cv.GGNOperator(model, "cross_entropy", x, y)
    line = LineShortcut(op)
    first = "aten.addmm.default" if kind == "mlp" else "aten.convolution.default"
    count = [str(n.target) for n in op.split.primal.graph.nodes].count
    trial_count = [str(n.target) for n in op.split.trial.graph.nodes].count
    assert op.split.n_frontier == 1 and trial_count(first) == count(first) - 1   # the first layer is skipped
    params = [p.detach() for p in model.parameters()]
    assert torch.equal(line.outputs(params, 0.7), op.outputs) and line.last_path == "shortcut"
    delta, info = conjugate_gradient(damped(line), [-t for t in op.gradient], max_iter=3, tol=0.0,
                                     on_step=line.record_step)
    assert info.iterations == 3 and line.applies
    for s in (1.0, 0.25, -2.0):
        trial = [p + s * d for p, d in zip(params, delta)]
        torch.testing.assert_close(line.outputs(trial, s), full_forward(model, trial, x), **TOL)
        assert line.last_path == "shortcut"
    assert (line.shortcut_calls, line.full_calls) == (4, 0)


@pytest.mark.parametrize("max_iter", [0, 2])
@pytest.mark.parametrize("reports_x0", [False, True])
def test_warm_started_cg_is_reported_or_refused(reports_x0, max_iter):
    """A warm start moves x by x0: CG reports it (on_step(1.0) after A x0) and the shortcut holds;
    a solver that does not report it gets the shortcut refused, and the full network runs."""
    model, x, y = problem("mlp")
    op = cv.GGNOperator(model, "cross_entropy", x, y)
    line = LineShortcut(op)
    x0 = [0.3 * t for t in op.gradient]
    calls = []

    def on_step(a):
        calls.append(a)
        if reports_x0 or len(calls) > 1:                   # drop the report of the initial product
            line.record_step(a)
    delta, _ = conjugate_gradient(damped(line), [-t for t in op.gradient], x0=x0, max_iter=max_iter, tol=0.0,
                                  on_step=on_step)
    assert calls[0] == 1.0 and len(calls) == max_iter + 1  # CG itself reports the initial product
    params = [p.detach() for p in model.parameters()]
    trial = [p + 0.5 * d for p, d in zip(params, delta)]
    torch.testing.assert_close(line.outputs(trial, 0.5), full_forward(model, trial, x), **TOL)
    assert line.applies == reports_x0
    assert line.last_path == ("shortcut" if reports_x0 else "full")


@pytest.mark.parametrize("case", ["batchnorm traced", "batchnorm double_backward", "mlp jvp"])
def test_fallback_without_a_frontier_gives_the_same_results(case):
    """BatchNorm in training mode (in-place statistics) gets no frontier; other methods none either."""
    torch.manual_seed(0)
    kind, method = case.split()
    model = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 3)).double() \
        if kind == "batchnorm" else models.mlp([5, 4, 3], "tanh").double()
    x, y = torch.randn(N, 5, dtype=torch.float64), torch.arange(N) % C
    op = cv.GGNOperator(model, "cross_entropy", x, y, method=method)
    line = LineShortcut(op)
    assert not line.applies
    v = [torch.ones_like(p) for p in model.parameters()]
    for a, b in zip(line(v), op(v)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    line.record_step(1.0)                                   # a no-op without the shortcut
    params = [p.detach() for p in model.parameters()]
    expected = full_forward(model, params, x)
    torch.testing.assert_close(line.outputs(params, 1.0), expected, **TOL)
    assert line.last_path == "full" and line.full_calls == 1


def test_record_step_needs_a_product_first():
    model, x, y = problem("mlp")
    line = LineShortcut(cv.GGNOperator(model, "mse", x, torch.randn(N, C, dtype=torch.float64)))
    with pytest.raises(RuntimeError, match="product first"):
        line.record_step(0.5)


@pytest.mark.parametrize("case", ["mlp traced", "cnn traced", "mlp jvp", "mlp double_backward"])
def test_curvature_and_step_curvature_equal_the_dense_ggn(case):
    kind, method = case.split()
    model, x, y = problem(kind)
    G, _ = dense_ggn(model, "cross_entropy", x, y)
    line = LineShortcut(cv.GGNOperator(model, "cross_entropy", x, y, method=method))
    b = [-t for t in line.op.gradient]
    flat = lambda vs: torch.cat([v.reshape(-1) for v in vs])           # noqa: E731
    v = [torch.randn_like(t) for t in b]
    assert line.curvature(v) == pytest.approx(float(flat(v) @ G @ flat(v)), rel=1e-10)
    line.record_step(0.0)                                   # the curvature call counts as a product
    delta, info = conjugate_gradient(damped(line), b, max_iter=3, tol=0.0, on_step=line.record_step,
                                     curvature=lambda u: line.curvature(u) + 0.1 * float(flat(u) @ flat(u)))
    d = flat(delta)
    assert info.residual is None and info.iterations == 3
    assert line.step_curvature() == pytest.approx(float(d @ G @ d), rel=1e-10)
    expected = torch.linalg.solve(G + 0.1 * torch.eye(len(d), dtype=G.dtype), flat(b))
    dense_cg, _ = conjugate_gradient(lambda u: (G + 0.1 * torch.eye(len(d), dtype=G.dtype)) @ u, flat(b),
                                     max_iter=3, tol=0.0)
    torch.testing.assert_close(d, dense_cg, rtol=1e-9, atol=1e-12)
    assert not torch.allclose(d, expected)                  # three iterations: truncated, as intended


def test_step_curvature_is_unknown_after_an_unreported_product():
    model, x, y = problem("mlp")
    line = LineShortcut(cv.GGNOperator(model, "cross_entropy", x, y))
    v = [torch.ones_like(t) for t in line.op.gradient]
    assert line.step_curvature() == 0.0                     # nothing recorded: Delta = 0
    line(v)
    line(v)                                                 # the first product was never reported
    line.record_step(1.0)
    with pytest.raises(RuntimeError, match="curvature is unknown"):
        line.step_curvature()
