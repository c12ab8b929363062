"""The per-group learning-rate solve of GroupedNewton against dense float64 references.

The cubic model is re-implemented here independently (its gradient by autograd), and the solver's
answer is checked by the optimality conditions of cubic regularisation (stationarity, and
H + (λ/2) r D² ⪰ 0, which characterise the global minimiser), by local searches from random starts,
by the closed form for S = 1, and by the scale invariance of the model.
"""
import math

import pytest
import torch

from curvlab.grouped_newton_solver import LRSolution, cube_root_scale, cubic_model, solve_learning_rates

f64 = torch.float64


def model_value(eta, g, H, D, lam):
    """m(eta) written out again; ‖x‖³ as (xᵀx)^(3/2) so that its gradient at 0 is 0, not NaN."""
    x = D * eta
    return -(g @ eta) + 0.5 * eta @ (H @ eta) + lam / 6.0 * (x @ x) ** 1.5


def model_gradient(eta, g, H, D, lam):
    return torch.func.grad(model_value)(eta, g, H, D, lam)


def random_instance(S, kind, seed):
    gen = torch.Generator().manual_seed(seed)
    A = torch.randn(S, S, generator=gen, dtype=f64)
    if kind == "pd":
        H = A @ A.T / S + 0.1 * torch.eye(S, dtype=f64)
    else:
        H = (A + A.T) / 2
    g = torch.randn(S, generator=gen, dtype=f64)
    d3 = torch.randn(S, generator=gen, dtype=f64) * torch.logspace(-2, 2, S, dtype=f64)
    if kind == "singular_D":
        # D_s = 0 on the first half; H is made PD there (the reduced problem is feasible) but
        # stays indefinite as a whole
        k = max(1, S // 2)
        d3[:k] = 0.0
        B = torch.randn(k, k, generator=gen, dtype=f64)
        H[:k, :k] = B @ B.T + 0.5 * torch.eye(k, dtype=f64)
    return g, H, d3


def assert_cubic_optimal(sol, g, H, d3, lam, rtol=1e-10):
    """First- and second-order conditions of the global minimiser of the cubic model."""
    assert sol.ok, sol.reason
    assert sol.reason == ""
    assert sol.eta.dtype == f64 and sol.eta.shape == g.shape
    D = cube_root_scale(d3)
    eta = sol.eta
    r = float(torch.linalg.vector_norm(D * eta))
    assert sol.radius == pytest.approx(r, rel=1e-12, abs=1e-300)
    grad = model_gradient(eta, g, H, D, lam)
    H_norm = torch.linalg.matrix_norm(H, 2)
    scale = float(g.norm() + H_norm * eta.norm() + 0.5 * lam * r * (D ** 2 * eta).norm())
    assert float(grad.norm()) <= rtol * scale
    shifted = H + 0.5 * lam * r * torch.diag(D ** 2)
    assert float(torch.linalg.eigvalsh(shifted).min()) >= -rtol * float(torch.linalg.matrix_norm(shifted, 2))
    return D


def local_minima(g, H, D, lam, eta_star, n_starts=24, seed=0):
    """Model values of L-BFGS local searches from random starts spread over a few scales."""
    gen = torch.Generator().manual_seed(seed)
    S = g.numel()
    spread = 1.0 + float(eta_star.abs().max())
    values = []
    for k in range(n_starts):
        x = (torch.randn(S, generator=gen, dtype=f64) * spread * 10.0 ** (k % 3 - 1)).requires_grad_(True)
        opt = torch.optim.LBFGS([x], lr=1.0, max_iter=500, tolerance_grad=1e-14, tolerance_change=1e-16,
                                line_search_fn="strong_wolfe")

        def closure(x=x, opt=opt):
            opt.zero_grad()
            value = model_value(x, g, H, D, lam)
            value.backward()
            return value

        opt.step(closure)
        values.append((float(model_value(x.detach(), g, H, D, lam)), x.detach()))
    return values


# ------------------------------------------------------------------------------------------ cubic
@pytest.mark.parametrize("kind", ["pd", "indefinite", "singular_D"])
@pytest.mark.parametrize("S", [2, 3, 6])
@pytest.mark.parametrize("lam", [1e-3, 1.0, 50.0])
def test_cubic_first_and_second_order_conditions(kind, S, lam):
    for seed in range(4):
        g, H, d3 = random_instance(S, kind, seed + 100 * S)
        sol = solve_learning_rates(g, H, d3, damping_int=lam)
        assert_cubic_optimal(sol, g, H, d3, lam)
        assert not sol.hard_case


@pytest.mark.parametrize("kind", ["indefinite", "singular_D"])
def test_cubic_solution_is_the_global_minimiser(kind):
    """No local search from random starts ends lower; the searches do reach it, and find other minima."""
    reached = 0
    for seed in range(3):
        g, H, d3 = random_instance(4, kind, seed)
        sol = solve_learning_rates(g, H, d3, damping_int=1.0)
        D = cube_root_scale(d3)
        best = cubic_model(sol.eta, g, H, D, 1.0)
        assert best == pytest.approx(float(model_value(sol.eta, g, H, D, 1.0)), rel=1e-14)
        for value, x in local_minima(g, H, D, 1.0, sol.eta, seed=seed):
            assert best <= value + 1e-10 * (1.0 + abs(best))
            reached += bool(torch.allclose(x, sol.eta, rtol=1e-6, atol=1e-8))
    assert reached > 0          # the searches are able to find the minimiser at all


def test_cubic_solution_beats_a_non_global_stationary_point():
    """S = 2, H = diag(-1, 2), D = I: the secular equation has a second root below -κ_1, a local
    stationary point with H + (λ/2) r D² not PSD; the solver must return the one with the lower value."""
    g = torch.tensor([0.05, 0.3], dtype=f64)
    H = torch.diag(torch.tensor([-1.0, 2.0], dtype=f64))
    d3 = torch.ones(2, dtype=f64)
    sol = solve_learning_rates(g, H, d3, damping_int=1.0)
    assert_cubic_optimal(sol, g, H, d3, 1.0)
    # the other stationary points: eta = g / (diag(H) + r/2), r = ‖eta‖, with r/2 < 1 (eta_1 < 0)
    others = []
    grid = torch.linspace(1e-6, 2.0 - 1e-6, 200001, dtype=f64)
    res = torch.linalg.vector_norm(g[:, None] / (torch.diag(H)[:, None] + grid[None, :] / 2), dim=0) - grid
    for i in torch.nonzero(res[:-1] * res[1:] < 0).flatten().tolist():
        r = float(grid[i])
        eta = g / (torch.diag(H) + r / 2)
        others.append(cubic_model(eta, g, H, torch.ones(2, dtype=f64), 1.0))
    assert len(others) >= 1
    assert all(cubic_model(sol.eta, g, H, torch.ones(2, dtype=f64), 1.0) < v - 1e-6 for v in others)
    assert sol.eta[0] > 0


def hard_case_instance(bottom_multiplicity=1, rest=(0.1, 0.1), seed=0):
    """H with eigenvalues (-2, ..., 1, 3) in a random basis Q, D = 2 I, g ⟂ the bottom eigenspace.

    In y = D eta: K = H / 4, κ = (-0.5, 0.25, 0.75), c = g / 2, σ = λ/2 = 0.5, μ_lo = 0.5; the hard
    case needs ‖b_rest / κ̂_rest‖ <= μ_lo / σ = 1 with κ̂_rest = (0.75, 1.25).
    """
    gen = torch.Generator().manual_seed(seed)
    m = bottom_multiplicity
    Q, _ = torch.linalg.qr(torch.randn(m + 2, m + 2, generator=gen, dtype=f64))
    kappa = torch.tensor([-2.0] * m + [1.0, 3.0], dtype=f64)
    H = Q @ torch.diag(kappa) @ Q.T
    g = Q[:, m:] @ (2.0 * torch.tensor(rest, dtype=f64))     # b = Qᵀ c = (0, ..., rest)
    d3 = torch.full((m + 2,), 8.0, dtype=f64)
    return g, H, d3, Q


@pytest.mark.parametrize("multiplicity", [1, 2])
def test_hard_case(multiplicity):
    g, H, d3, Q = hard_case_instance(multiplicity)
    sol = solve_learning_rates(g, H, d3, damping_int=1.0)
    D = assert_cubic_optimal(sol, g, H, d3, 1.0)
    assert sol.hard_case
    assert sol.radius == pytest.approx(1.0, rel=1e-12)             # ‖y‖ = μ_lo / σ
    # on the boundary: H + (λ/2) r D² is singular, its bottom eigenvalue 0 (multiplicity as K's)
    shifted = torch.linalg.eigvalsh(H + 0.5 * sol.radius * torch.diag(D ** 2))
    assert torch.allclose(shifted[:multiplicity], torch.zeros(multiplicity, dtype=f64), atol=1e-12)
    assert float(shifted[multiplicity]) > 0.5
    # the minimiser has a component along the bottom eigenspace, and its mirror image is as good
    y = D * sol.eta
    along = Q[:, :multiplicity].T @ y
    assert float(along.norm()) > 0.9
    mirror = (y - 2 * Q[:, :multiplicity] @ along) / D
    assert cubic_model(mirror, g, H, D, 1.0) == pytest.approx(cubic_model(sol.eta, g, H, D, 1.0), rel=1e-12)
    best = cubic_model(sol.eta, g, H, D, 1.0)
    for value, _ in local_minima(g, H, D, 1.0, sol.eta, n_starts=12):
        assert best <= value + 1e-10


@pytest.mark.parametrize("eps", [1e-4, 1e-8, 1e-11, 1e-14])
def test_near_hard_case_is_accurate_and_continuous(eps):
    """A small component of g along the bottom eigenvector: the root lies next to the pole; the
    solution must still satisfy the optimality conditions, and tend to the hard-case solution."""
    g, H, d3, Q = hard_case_instance()
    hard = solve_learning_rates(g, H, d3, damping_int=1.0)
    g_eps = g + eps * Q[:, 0]
    sol = solve_learning_rates(g_eps, H, d3, damping_int=1.0)
    assert_cubic_optimal(sol, g_eps, H, d3, 1.0)
    assert torch.allclose(sol.eta, hard.eta, atol=50 * math.sqrt(eps) + 1e-10)


def test_g_orthogonal_to_bottom_eigenvector_but_not_the_hard_case():
    g, H, d3, _ = hard_case_instance(rest=(1.0, 1.0))           # ‖b_rest/κ̂_rest‖ = 1.6 > 1
    sol = solve_learning_rates(g, H, d3, damping_int=1.0)
    assert_cubic_optimal(sol, g, H, d3, 1.0)
    assert not sol.hard_case and sol.radius > 1.0


def test_zero_gradient_indefinite_H_moves_along_negative_curvature():
    g = torch.zeros(3, dtype=f64)
    H = torch.diag(torch.tensor([1.0, -4.0, 2.0], dtype=f64))
    d3 = torch.ones(3, dtype=f64)
    sol = solve_learning_rates(g, H, d3, damping_int=2.0)
    assert sol.hard_case
    assert_cubic_optimal(sol, g, H, d3, 2.0)
    assert torch.allclose(sol.eta.abs(), torch.tensor([0.0, 4.0, 0.0], dtype=f64), atol=1e-14)   # 2|h|/(λ d³)
    assert cubic_model(sol.eta, g, H, torch.ones(3, dtype=f64), 2.0) < 0
    pd = solve_learning_rates(g, H.abs(), d3, damping_int=2.0)
    assert pd.ok and torch.equal(pd.eta, torch.zeros(3, dtype=f64)) and pd.radius == 0.0


@pytest.mark.parametrize("g, h, d3, lam", [
    (1.0, 2.0, 1.0, 1.0), (-0.3, 2.0, 5.0, 0.1), (1.0, -2.0, 1.0, 1.0), (-2.0, -0.5, -3.0, 4.0),
    (1e-6, 1e3, 1e-6, 1.0), (3.0, 0.0, 2.0, 1.0)])
def test_one_group_closed_form(g, h, d3, lam):
    """S = 1: g = h eta + (λ/2)|d3| |eta| eta, so eta = sign(g) (-h + sqrt(h² + 2λ|d3||g|)) / (λ|d3|)."""
    sol = solve_learning_rates(torch.tensor([g], dtype=f64), torch.tensor([[h]], dtype=f64),
                               torch.tensor([d3], dtype=f64), damping_int=lam)
    a = abs(d3) * lam
    root = math.sqrt(h * h + 2 * a * abs(g))
    # the same root without cancellation when h > 0: (root - h) / a = 2|g| / (root + h)
    expected = math.copysign(2 * abs(g) / (root + h) if h > 0 else (root - h) / a, g)
    assert float(sol.eta) == pytest.approx(expected, rel=1e-12)
    assert sol.radius == pytest.approx(abs(d3) ** (1 / 3) * abs(expected), rel=1e-12)
    assert not sol.hard_case


def test_one_group_hard_case():
    sol = solve_learning_rates(torch.zeros(1, dtype=f64), torch.tensor([[-3.0]], dtype=f64),
                               torch.tensor([2.0], dtype=f64), damping_int=0.5)
    assert sol.ok and sol.hard_case
    assert abs(float(sol.eta)) == pytest.approx(2 * 3.0 / (0.5 * 2.0), rel=1e-14)


@pytest.mark.parametrize("instance", ["indefinite", "singular_D", "hard"])
def test_invariance_under_group_rescaling(instance):
    """u_s -> c_s u_s: g -> Cg, H -> CHC, D3 -> C³D3 (D -> |C|D) gives eta -> C⁻¹ eta."""
    if instance == "hard":
        g, H, d3, Q = hard_case_instance()
        c = torch.tensor([1e3, -1e-2, 7.0], dtype=f64)
    else:
        g, H, d3 = random_instance(6, instance, 7)
        c = torch.tensor([100.0, -0.01, 1.0, -3.0, 7.0, 1e3], dtype=f64)
    sol = solve_learning_rates(g, H, d3, damping_int=1.0)
    scaled = solve_learning_rates(c * g, c[:, None] * H * c[None, :], c ** 3 * d3, damping_int=1.0)
    assert sol.ok and scaled.ok and sol.hard_case == scaled.hard_case == (instance == "hard")
    close = dict(rtol=1e-10, atol=1e-12 * float(sol.eta.abs().max()))
    if instance == "hard":
        # two global minimisers, y_rest ± τ q_1 (y = D eta, D = 2I): which one is picked is not
        # determined by the problem, so either counts
        y = 2.0 * sol.eta
        mirror = (y - 2 * Q[:, 0] * (Q[:, 0] @ y)) / 2.0
        assert not torch.allclose(mirror, sol.eta, **close)
        back = scaled.eta * c
        assert torch.allclose(back, sol.eta, **close) or torch.allclose(back, mirror, **close)
    else:
        assert torch.allclose(scaled.eta * c, sol.eta, **close)
    assert scaled.radius == pytest.approx(sol.radius, rel=1e-10)
    # a power of |D3| other than 1/3 would not be invariant: the check above can fail
    wrong = solve_learning_rates(c * g, c[:, None] * H * c[None, :], (c ** 3 * d3).abs() ** 3,
                                 damping_int=1.0)
    base = solve_learning_rates(g, H, d3.abs() ** 3, damping_int=1.0)
    assert not torch.allclose(wrong.eta * c, base.eta, rtol=1e-6)


def test_threshold_is_relative():
    g, H, d3 = random_instance(5, "singular_D", 3)
    d_small = d3.clone()
    d_small[:2] = 1e-12 * float(d3.abs().max())                  # |D_s| = 1e-4 max|D|
    zeroed = solve_learning_rates(g, H, d3, damping_int=1.0)
    thresholded = solve_learning_rates(g, H, d_small, damping_int=1.0, threshold=1e-3)
    assert torch.equal(thresholded.eta, zeroed.eta)
    kept = solve_learning_rates(g, H, d_small, damping_int=1.0, threshold=1e-5)
    assert_cubic_optimal(kept, g, H, d_small, 1.0)
    assert not torch.equal(kept.eta, zeroed.eta)
    # relative: rescaling every D3 by the same factor does not change which groups are singular
    scaled = solve_learning_rates(g, H, 1e9 * d_small, damping_int=1e-9, threshold=1e-3)
    assert torch.allclose(scaled.eta, zeroed.eta, rtol=1e-10)


def test_all_groups_quadratic():
    g, H, _ = random_instance(4, "pd", 1)
    sol = solve_learning_rates(g, H, torch.zeros(4, dtype=f64), damping_int=1.0)
    assert sol.ok and sol.radius == 0.0
    assert torch.allclose(sol.eta, torch.linalg.solve(H, g), rtol=1e-12)


def test_infeasible_when_H_not_pd_on_ker_D():
    g = torch.tensor([1.0, 0.2, -0.5], dtype=f64)
    H = torch.tensor([[-1.0, 0.3, 0.0], [0.3, 2.0, 0.1], [0.0, 0.1, 1.0]], dtype=f64)
    d3 = torch.tensor([0.0, 1.0, 2.0], dtype=f64)
    sol = solve_learning_rates(g, H, d3, damping_int=1.0)
    assert not sol.ok and sol.eta is None and math.isnan(sol.radius)
    assert "infeasible" in sol.reason and "ker D" in sol.reason
    # it is infeasible: m is unbounded below along e_0, where the cubic term vanishes
    D = cube_root_scale(d3)
    e0 = torch.tensor([1.0, 0.0, 0.0], dtype=f64)
    assert cubic_model(1e3 * e0, g, H, D, 1.0) < -4e5
    # a singular H_NN with g_N != 0 (m linear along e_0) and an all-zero D with H indefinite, too
    H_sing = H.clone()
    H_sing[0, :] = H_sing[:, 0] = 0.0
    assert "infeasible" in solve_learning_rates(g, H_sing, d3).reason
    assert "infeasible" in solve_learning_rates(g, H, torch.zeros(3, dtype=f64)).reason
    # the same H is fine once group 0 has a cubic term
    assert_cubic_optimal(solve_learning_rates(g, H, d3 + 1.0), g, H, d3 + 1.0, 1.0)


def test_damping_int_zero():
    g, H, d3 = random_instance(4, "pd", 2)
    sol = solve_learning_rates(g, H, d3, damping_int=0.0)
    assert sol.ok and torch.allclose(sol.eta, torch.linalg.solve(H, g), rtol=1e-12)
    g, H, d3 = random_instance(4, "indefinite", 2)
    assert float(torch.linalg.eigvalsh(H).min()) < 0
    sol = solve_learning_rates(g, H, d3, damping_int=0.0)
    assert not sol.ok and sol.eta is None and "positive definite" in sol.reason


def test_small_and_large_damping_limits():
    g, H, d3 = random_instance(5, "pd", 4)
    newton = torch.linalg.solve(H, g)
    near = solve_learning_rates(g, H, d3, damping_int=1e-9)
    assert torch.allclose(near.eta, newton, rtol=1e-6)
    far = solve_learning_rates(g, H, d3, damping_int=1e9)
    assert float(far.eta.norm()) < 1e-3 * float(newton.norm())
    assert_cubic_optimal(far, g, H, d3, 1e9)


# ------------------------------------------------------------------------------- newton and ridge
def test_newton_and_ridge_equal_a_dense_solve():
    for kind in ("pd", "indefinite"):
        g, H, d3 = random_instance(5, kind, 9)
        newton = solve_learning_rates(g, H, d3, regularization="newton")
        assert newton.ok and math.isnan(newton.radius) and not newton.hard_case
        assert torch.allclose(newton.eta, torch.linalg.solve(H, g), rtol=1e-12, atol=0)
        assert torch.allclose(solve_learning_rates(g, H, None, regularization="newton").eta, newton.eta,
                              rtol=0, atol=0)
        ridge = solve_learning_rates(g, H, None, regularization="ridge", ridge=0.7)
        dense = torch.linalg.solve(H + 0.7 * torch.eye(5, dtype=f64), g)
        assert torch.allclose(ridge.eta, dense, rtol=1e-12, atol=0)
    # Newton's first-order condition of the quadratic model, independently
    grad = model_gradient(newton.eta, g, H, torch.zeros(5, dtype=f64), 0.0)
    assert float(grad.norm()) < 1e-12 * float(g.norm() + torch.linalg.matrix_norm(H, 2) * newton.eta.norm())


def test_newton_singular_H_is_reported_and_ridge_fixes_it():
    v = torch.tensor([1.0, 2.0, -1.0], dtype=f64)
    H = torch.outer(v, v)                                            # rank 1
    g = torch.tensor([0.5, 0.1, 0.3], dtype=f64)
    sol = solve_learning_rates(g, H, None, regularization="newton")
    assert not sol.ok and sol.eta is None and sol.reason == "singular H"
    ridge = solve_learning_rates(g, H, None, regularization="ridge", ridge=0.1)
    assert ridge.ok
    assert torch.allclose((H + 0.1 * torch.eye(3, dtype=f64)) @ ridge.eta, g, rtol=1e-12, atol=1e-14)
    assert solve_learning_rates(g, H, None, regularization="ridge", ridge=0.0).reason == "singular H"


# ----------------------------------------------------------------------------- inputs and errors
def test_inputs_are_symmetrised_and_cast():
    g, H, d3 = random_instance(4, "indefinite", 5)
    skew = torch.randn(4, 4, dtype=f64, generator=torch.Generator().manual_seed(0))
    sym = solve_learning_rates(g, H, d3)
    asym = solve_learning_rates(g, H + skew - skew.T, d3)
    assert torch.allclose(asym.eta, sym.eta, rtol=1e-12)
    single = solve_learning_rates(g.float(), H.float(), d3.float())
    assert single.eta.dtype == f64
    assert_cubic_optimal(single, g.float().double(), H.float().double(), d3.float().double(), 1.0)
    assert isinstance(sym, LRSolution) and sym._replace(ok=False).ok is False


@pytest.mark.parametrize("where", ["g", "H", "d3"])
@pytest.mark.parametrize("bad", [math.nan, math.inf])
@pytest.mark.parametrize("regularization", ["cubic", "newton"])
def test_non_finite_input_is_reported(where, bad, regularization):
    g, H, d3 = random_instance(3, "pd", 0)
    {"g": g, "H": H, "d3": d3}[where][1:2] = bad
    sol = solve_learning_rates(g, H, d3, regularization=regularization)
    assert sol == LRSolution(None, False, "non-finite input", sol.radius, False) and math.isnan(sol.radius)


@pytest.mark.parametrize("kwargs, name", [
    ({"damping_int": -1.0}, "damping_int"), ({"damping_int": math.nan}, "damping_int"),
    ({"damping_int": math.inf}, "damping_int"), ({"damping_int": "x"}, "damping_int"),
    ({"ridge": -0.1}, "ridge"), ({"threshold": 1.0}, "threshold"), ({"threshold": -1e-3}, "threshold"),
    ({"regularization": "trust"}, "regularization"),
])
def test_invalid_settings_raise(kwargs, name):
    g, H, d3 = random_instance(3, "pd", 0)
    with pytest.raises(ValueError, match=name):
        solve_learning_rates(g, H, d3, **kwargs)


@pytest.mark.parametrize("args, name", [
    ((torch.zeros(3, dtype=f64), torch.eye(2, dtype=f64), torch.ones(3, dtype=f64)), "H"),
    ((torch.zeros(3, dtype=f64), torch.eye(3, dtype=f64), torch.ones(2, dtype=f64)), "d3"),
    ((torch.zeros(3, 1, dtype=f64), torch.eye(3, dtype=f64), torch.ones(3, dtype=f64)), "g"),
    ((torch.zeros(0, dtype=f64), torch.eye(0, dtype=f64), torch.ones(0, dtype=f64)), "g"),
    ((torch.zeros(3, dtype=f64), torch.eye(3, dtype=f64), None), "d3"),
])
def test_wrong_shapes_raise(args, name):
    with pytest.raises(ValueError, match=name):
        solve_learning_rates(*args)


def test_cubic_model_value():
    eta = torch.tensor([1.0, -2.0], dtype=f64)
    g = torch.tensor([0.5, 1.0], dtype=f64)
    H = torch.tensor([[2.0, 1.0], [1.0, 3.0]], dtype=f64)
    D = torch.tensor([1.0, 0.5], dtype=f64)
    # -(0.5 - 2) + ½(2 - 4 + 12) + (3/6)·(√2)³
    assert cubic_model(eta, g, H, D, 3.0) == pytest.approx(1.5 + 5.0 + 0.5 * 2 ** 1.5, rel=1e-15)
