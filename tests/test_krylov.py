"""Conjugate gradient and power iteration on dense float64 matrices."""
import math

import pytest
import torch

from curvlab import krylov as K


def spd(n, seed=0, cond=1e3):
    """Random SPD matrix with eigenvalues log-spaced in [1, cond]."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    eig = torch.logspace(0, math.log10(cond), n, dtype=torch.float64)
    return q @ torch.diag(eig) @ q.T


def rhs(n, seed=1):
    return torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_cg_solves_spd_system():
    A, b = spd(40), rhs(40)
    x, info = K.conjugate_gradient(lambda v: A @ v, b, max_iter=400, tol=1e-10)
    assert info.converged and not info.breakdown
    assert info.residual_norm <= 1e-10
    torch.testing.assert_close(x, torch.linalg.solve(A, b), rtol=1e-8, atol=1e-9)
    torch.testing.assert_close(info.residual, b - A @ x, rtol=0, atol=1e-9)


def test_cg_on_tuples_of_tensors_matches_flat():
    A, b = spd(12), rhs(12)
    split = (b[:6].reshape(2, 3), b[6:])

    def matvec(v):
        out = A @ torch.cat([v[0].reshape(-1), v[1]])
        return (out[:6].reshape(2, 3), out[6:])
    x_tuple, info_tuple = K.conjugate_gradient(matvec, split, max_iter=5, tol=0.0)
    x_flat, info_flat = K.conjugate_gradient(lambda v: A @ v, b, max_iter=5, tol=0.0)
    assert isinstance(x_tuple, tuple) and x_tuple[0].shape == (2, 3)
    torch.testing.assert_close(torch.cat([x_tuple[0].reshape(-1), x_tuple[1]]), x_flat)
    assert info_tuple.iterations == info_flat.iterations == 5


def test_on_step_step_lengths_rebuild_the_solution_from_the_products():
    A, b = spd(15), rhs(15)
    seen, steps = [], []

    def matvec(v):
        seen.append(v.clone())
        return A @ v
    x, info = K.conjugate_gradient(matvec, b, max_iter=6, tol=0.0, on_step=steps.append,
                                   preconditioner=lambda r: r / A.diagonal())
    assert len(steps) == len(seen) == info.iterations == 6
    torch.testing.assert_close(sum(a * p for a, p in zip(steps, seen)), x)


def test_on_step_reports_the_warm_start_product():
    """With x0, the first product is A x0 and on_step(1.0) follows it: x = sum_k a_k v_k still holds."""
    A, b = spd(15), rhs(15)
    x0 = rhs(15, seed=9)
    events = []

    def matvec(v):
        events.append(("product", v.clone()))
        return A @ v
    x, info = K.conjugate_gradient(matvec, b, x0=x0, max_iter=4, tol=0.0,
                                   on_step=lambda a: events.append(("step", a)))
    kinds = [kind for kind, _ in events]
    assert kinds == ["product", "step"] * 5 and events[1][1] == 1.0
    torch.testing.assert_close(events[0][1], x0)
    rebuilt = sum(a * events[i - 1][1] for i, (kind, a) in enumerate(events) if kind == "step")
    torch.testing.assert_close(rebuilt, x)
    assert info.iterations == 4                          # the warm-start product is not an iteration


def test_cg_honours_iteration_cap():
    A, b = spd(30), rhs(30)
    calls = []

    def matvec(v):
        calls.append(1)
        return A @ v
    x, info = K.conjugate_gradient(matvec, b, max_iter=3, tol=1e-12)
    assert info.iterations == 3 and len(calls) == 3 and not info.converged
    assert info.residual_norm == pytest.approx((b - A @ x).abs().max().item(), rel=1e-8)
    x0, info0 = K.conjugate_gradient(matvec, b, max_iter=0)
    assert info0.iterations == 0 and torch.count_nonzero(x0) == 0


def test_cg_honours_tolerance_exactly():
    A, b = spd(30), rhs(30)
    tol = 1e-3
    x, info = K.conjugate_gradient(lambda v: A @ v, b, max_iter=100, tol=tol)
    assert info.converged and info.residual_norm <= tol
    _, before = K.conjugate_gradient(lambda v: A @ v, b, max_iter=info.iterations - 1, tol=tol)
    assert before.residual_norm > tol                   # it did not stop later than needed
    # min_iter keeps going past the tolerance
    _, more = K.conjugate_gradient(lambda v: A @ v, b, max_iter=100, tol=tol, min_iter=info.iterations + 2)
    assert more.iterations >= info.iterations + 2 and more.converged


def test_cg_terminates_in_number_of_distinct_eigenvalues():
    g = torch.Generator().manual_seed(3)
    q, _ = torch.linalg.qr(torch.randn(20, 20, generator=g, dtype=torch.float64))
    A = q @ torch.diag(torch.tensor([1.0, 5.0, 20.0], dtype=torch.float64).repeat_interleave(
        torch.tensor([7, 7, 6]))) @ q.T
    _, info = K.conjugate_gradient(lambda v: A @ v, rhs(20), max_iter=20, tol=1e-9)
    assert info.converged and info.iterations == 3


def test_cg_warm_start():
    A, b = spd(20), rhs(20)
    exact = torch.linalg.solve(A, b)
    x, info = K.conjugate_gradient(lambda v: A @ v, b, x0=exact, tol=1e-8)
    assert info.iterations == 0 and info.converged
    x, info = K.conjugate_gradient(lambda v: A @ v, b, x0=exact + 0.1, max_iter=200, tol=1e-10)
    torch.testing.assert_close(x, exact)


def test_preconditioned_cg():
    # badly scaled SPD matrix: diagonal scaling with entries over 6 decades
    d = torch.logspace(0, 6, 40, dtype=torch.float64)
    B = spd(40, cond=10.0)
    A = torch.diag(d.sqrt()) @ B @ torch.diag(d.sqrt())
    b = rhs(40)
    exact = torch.linalg.solve(A, b)
    inv_diag = 1.0 / torch.diag(A)
    tol = 1e-8 * b.abs().max().item()
    x_plain, plain = K.conjugate_gradient(lambda v: A @ v, b, max_iter=2000, tol=tol)
    x_prec, prec = K.conjugate_gradient(lambda v: A @ v, b, max_iter=2000, tol=tol,
                                        preconditioner=lambda r: inv_diag * r)
    assert prec.converged
    assert prec.iterations < plain.iterations / 2
    torch.testing.assert_close(x_prec, exact, rtol=1e-5, atol=0)
    # the exact inverse as preconditioner solves in one iteration
    A_inv = torch.linalg.inv(A)
    _, one = K.conjugate_gradient(lambda v: A @ v, b, tol=1e-6, preconditioner=lambda r: A_inv @ r)
    assert one.iterations == 1


def test_cg_reports_breakdown_on_indefinite_matrix():
    A = torch.diag(torch.tensor([1.0, -1.0], dtype=torch.float64))
    x, info = K.conjugate_gradient(lambda v: A @ v, torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert info.breakdown and not info.converged and info.iterations == 0
    assert torch.count_nonzero(x) == 0


@pytest.mark.parametrize("kwargs,name", [
    ({"max_iter": -1}, "max_iter"), ({"max_iter": 2.5}, "max_iter"), ({"max_iter": True}, "max_iter"),
    ({"max_iter": "3"}, "max_iter"), ({"tol": -1.0}, "tol"), ({"tol": math.nan}, "tol"),
    ({"tol": "x"}, "tol"),
    ({"min_iter": -1}, "min_iter"), ({"min_iter": 1.5}, "min_iter"),
])
def test_cg_invalid_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        K.conjugate_gradient(lambda v: v, torch.ones(3), **kwargs)


def test_cg_invalid_rhs():
    for bad in (torch.ones(3, dtype=torch.int64), [], [torch.ones(2), "x"], 3.0):
        with pytest.raises(ValueError, match="rhs"):
            K.conjugate_gradient(lambda v: v, bad)


def test_cg_matvec_of_the_wrong_shape_is_refused():
    b = rhs(6).reshape(2, 3)
    A = spd(6)
    wrong = [lambda v: (A @ v.reshape(-1)),                               # flat instead of (2, 3)
             lambda v: (A @ v.reshape(-1)).reshape(3, 2),                 # same size, other shape
             lambda v: (A @ v.reshape(-1)).reshape(2, 3)[:, :2],
             lambda v: ((A @ v.reshape(-1)).reshape(2, 3),),              # a tuple for a tensor
             lambda v: (A @ v.reshape(-1)).reshape(2, 3).float()]         # another dtype
    for matvec in wrong:
        with pytest.raises(ValueError, match=r"matvec\(v\) must be shaped like rhs"):
            K.conjugate_gradient(matvec, b, max_iter=3)
    parts = (b[0], b[1])
    for matvec in (lambda v: (v[0],), lambda v: (v[0], v[1], v[1]), lambda v: (v[0], v[1][:2]),
                   lambda v: v[0]):
        with pytest.raises(ValueError, match="matvec"):
            K.conjugate_gradient(matvec, parts, max_iter=3)
    with pytest.raises(ValueError, match="preconditioner"):
        K.conjugate_gradient(lambda v: v, b, preconditioner=lambda r: r.reshape(-1))
    x, info = K.conjugate_gradient(lambda v: (A @ v.reshape(-1)).reshape(2, 3), b, max_iter=50, tol=1e-10)
    torch.testing.assert_close(x.reshape(-1), torch.linalg.solve(A, b.reshape(-1)))   # the right one works


def test_cg_x0_of_the_wrong_shape_is_refused():
    A, b = spd(4), rhs(4)
    for x0 in (torch.zeros(5), torch.zeros(4, 1), torch.zeros(2, 2), (torch.zeros(4),),
               torch.zeros(4, dtype=torch.float32)):
        with pytest.raises(ValueError, match="x0"):
            K.conjugate_gradient(lambda v: A @ v, b, x0=x0)
    with pytest.raises(ValueError, match="x0"):
        K.conjugate_gradient(lambda v: v, (b, b), x0=(b,))


def test_power_iteration_top_eigenvalue_of_psd_matrix():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(50, 30, generator=g, dtype=torch.float64)
    A = X.T @ X / 50                                     # Wishart, PSD
    evals, evecs = torch.linalg.eigh(A)
    lam, v, info = K.power_iteration(lambda u: A @ u, (30,), max_iter=2000, tol=1e-12,
                                     generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert info.converged
    assert lam == pytest.approx(evals[-1].item(), rel=1e-9)
    assert abs(torch.dot(v, evecs[:, -1]).item()) == pytest.approx(1.0, abs=1e-5)


def test_power_iteration_on_tuples_and_reproducible():
    A = spd(10, cond=100.0)

    def matvec(v):
        out = A @ torch.cat([v[0].reshape(-1), v[1]])
        return (out[:4].reshape(2, 2), out[4:])
    shapes = [(2, 2), (6,)]
    runs = [K.power_iteration(matvec, shapes, max_iter=500, tol=1e-10, dtype=torch.float64,
                              generator=torch.Generator().manual_seed(7)) for _ in range(2)]
    assert runs[0][0] == runs[1][0]
    assert isinstance(runs[0][1], tuple) and runs[0][1][0].shape == (2, 2)
    assert runs[0][0] == pytest.approx(100.0, rel=1e-6)
    # an explicit start vector, and a small iteration cap that does not converge
    start = (torch.ones(2, 2, dtype=torch.float64), torch.ones(6, dtype=torch.float64))
    lam, _, info = K.power_iteration(matvec, start, max_iter=2, tol=0.0)
    assert info.iterations == 2 and not info.converged and lam < 100.0


def test_power_iteration_does_not_converge_on_plus_minus_pair():
    """diag(1, -1) from (1, 1): the Rayleigh quotient is 0 at every iterate (it never changes), but
    (1, 1) is no eigenvector: not converged, and the magnitude estimate ||A v|| is the true 1."""
    A = torch.diag(torch.tensor([1.0, -1.0], dtype=torch.float64))
    lam, v, info = K.power_iteration(lambda u: A @ u, torch.ones(2, dtype=torch.float64), max_iter=50)
    assert not info.converged and info.iterations == 50
    assert lam == pytest.approx(0.0, abs=1e-15)
    assert info.relative_change == 0.0                  # a rule on the eigenvalue's change would stop here
    assert info.residual_norm == pytest.approx(1.0) and info.magnitude == pytest.approx(1.0)
    torch.testing.assert_close(info.residual_norm, torch.linalg.norm(A @ v - lam * v).item())
    # a larger symmetric matrix with eigenvalues 3, -3, 1, 0.5: not converged, magnitude -> 3
    q, _ = torch.linalg.qr(torch.randn(4, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64))
    B = q @ torch.diag(torch.tensor([3.0, -3.0, 1.0, 0.5], dtype=torch.float64)) @ q.T
    lam, v, info = K.power_iteration(lambda u: B @ u, (4,), max_iter=200, tol=1e-8, dtype=torch.float64,
                                     generator=torch.Generator().manual_seed(0))
    assert not info.converged and abs(lam) < 3.0 - 1e-3
    assert info.magnitude == pytest.approx(3.0, rel=1e-10)


def test_power_iteration_certifies_its_answer_on_an_indefinite_matrix():
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=torch.Generator().manual_seed(4), dtype=torch.float64))
    evals = torch.tensor([-5.0, 2.0, 1.0, 0.3, -0.2, 0.1], dtype=torch.float64)
    A = q @ torch.diag(evals) @ q.T
    tol = 1e-7
    lam, v, info = K.power_iteration(lambda u: A @ u, (6,), max_iter=500, tol=tol, dtype=torch.float64,
                                     generator=torch.Generator().manual_seed(1))
    assert info.converged
    residual = torch.linalg.norm(A @ v - lam * v).item()
    assert residual == pytest.approx(info.residual_norm, rel=1e-6, abs=1e-14)
    assert residual <= tol * abs(lam)
    assert lam == pytest.approx(-5.0, rel=1e-12)              # error ~ residual^2 / gap
    assert info.magnitude == pytest.approx(5.0, rel=1e-12)
    assert abs(torch.dot(v, q[:, 0]).item()) == pytest.approx(1.0, abs=1e-6)


def test_power_iteration_null_space_start_and_overflow():
    A = torch.diag(torch.tensor([1.0, 0.0], dtype=torch.float64))
    lam, v, info = K.power_iteration(lambda u: A @ u, torch.tensor([0.0, 2.0], dtype=torch.float64))
    assert lam == 0.0 and info.converged and info.residual_norm == 0.0 and info.iterations == 1
    torch.testing.assert_close(v, torch.tensor([0.0, 1.0], dtype=torch.float64))    # a true eigenpair
    lam, v, info = K.power_iteration(lambda u: u * math.inf, torch.ones(2, dtype=torch.float64))
    assert not info.converged and info.iterations == 1


@pytest.mark.parametrize("kwargs,name", [
    ({"max_iter": 0}, "max_iter"), ({"max_iter": 1.5}, "max_iter"), ({"max_iter": None}, "max_iter"),
    ({"tol": -1.0}, "tol"), ({"tol": math.nan}, "tol"),
])
def test_power_iteration_invalid_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        K.power_iteration(lambda v: v, torch.ones(3), **kwargs)


def test_power_iteration_invalid_start_and_matvec():
    with pytest.raises(ValueError, match="zero"):
        K.power_iteration(lambda v: v, torch.zeros(3))
    with pytest.raises(ValueError, match="v0"):
        K.power_iteration(lambda v: v, torch.ones(3, dtype=torch.int64))
    for matvec in (lambda v: v[:2], lambda v: v.reshape(3, 1), lambda v: (v,), lambda v: v.float()):
        with pytest.raises(ValueError, match="matvec"):
            K.power_iteration(matvec, torch.ones(3, dtype=torch.float64))


def test_vector_helpers():
    a = (torch.tensor([1.0, -2.0]), torch.tensor([[3.0]]))
    b = (torch.tensor([1.0, 1.0]), torch.tensor([[2.0]]))
    assert float(K.inner(a, b)) == 5.0
    assert K.norm(a) == pytest.approx(math.sqrt(14.0))
    assert K.max_abs(a) == 3.0
    c = K.add_scaled(a, b, 2.0)
    assert torch.equal(c[0], torch.tensor([3.0, 0.0])) and torch.equal(c[1], torch.tensor([[7.0]]))
    assert math.isnan(K.max_abs((torch.tensor([1.0, float("nan")]),)))


# --------------------------------------------------------------------------------------------------
# Batched (per-sample) power iteration
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_iter", [1, 4])
def test_cg_last_iteration_from_the_curvature_alone(max_iter):
    """With ``curvature`` (v -> v^T A v) the last iteration skips A p: the same x, residual unknown."""
    n = 12
    A, b = spd(n, cond=50.0), rhs(n)
    products, steps = [], []

    def matvec(v):
        products.append(v.clone())
        return A @ v
    x, info = K.conjugate_gradient(matvec, b, max_iter=max_iter, tol=0.0, on_step=steps.append,
                                   curvature=lambda v: float(v @ A @ v))
    expected, full = K.conjugate_gradient(lambda v: A @ v, b, max_iter=max_iter, tol=0.0)
    torch.testing.assert_close(x, expected, rtol=1e-12, atol=1e-14)
    assert len(products) == max_iter - 1 and len(steps) == max_iter    # one product fewer, every step
    assert info.iterations == max_iter and info.residual is None
    assert math.isnan(info.residual_norm) and not info.converged and full.residual is not None


def test_cg_with_curvature_stopping_on_tolerance_keeps_its_residual():
    """Stopping before the cap (tolerance met) needs no curvature call: the residual is reported."""
    A, b = spd(6, cond=10.0), rhs(6)
    calls = []
    x, info = K.conjugate_gradient(lambda v: A @ v, b, max_iter=50, tol=1e-10,
                                   curvature=lambda v: calls.append(v) or float(v @ A @ v))
    assert info.converged and not calls and info.iterations < 50
    torch.testing.assert_close(info.residual, b - A @ x, rtol=0, atol=1e-9)


@pytest.mark.parametrize("bad", [lambda v: v, lambda v: "1.0", lambda v: True])
def test_cg_curvature_must_return_a_number(bad):
    A, b = spd(4), rhs(4)
    with pytest.raises(ValueError, match="curvature"):
        K.conjugate_gradient(lambda v: A @ v, b, max_iter=1, tol=0.0, curvature=bad)


def test_cg_breaks_down_on_a_non_positive_curvature():
    A, b = spd(4), rhs(4)
    x, info = K.conjugate_gradient(lambda v: A @ v, b, max_iter=1, tol=0.0, curvature=lambda v: -1.0)
    assert info.breakdown and info.iterations == 0 and torch.equal(x, torch.zeros_like(b))
