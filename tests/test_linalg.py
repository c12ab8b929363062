"""Tests for curvlab.linalg: the damped Gram inverse against float64 references."""
import pytest
import torch

from curvlab.linalg import damped_gram_inverse, solve_spd

DT = torch.float64


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=DT)


def reference(A, c):
    A = A.double()
    return torch.linalg.inv(torch.eye(A.shape[0], dtype=DT) + A @ A.T / c)


@pytest.mark.parametrize("k,n", [(5, 9), (9, 5), (1, 3), (7, 7)])
def test_float64_equals_the_explicit_inverse(k, n):
    A = rand(k, n, seed=1)
    for c in (1e-3, 0.5, 1e3):
        P = damped_gram_inverse(A, c)
        torch.testing.assert_close(P, reference(A, c), rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(P, P.T)


def test_eigenvalues_are_damping_over_gram_eigenvalues_plus_damping():
    A = rand(6, 4, seed=2)                                       # rank 4 < 6: two eigenvalues are 1
    kappa = torch.linalg.eigvalsh(A @ A.T)
    expected = torch.sort(0.3 / (kappa.clamp(min=0) + 0.3)).values
    torch.testing.assert_close(torch.linalg.eigvalsh(damped_gram_inverse(A, 0.3)), expected)


@pytest.mark.parametrize("scale", [1e4, 1e-4, 1.0])
def test_float32_repeated_rows_fall_back_and_stay_accurate(scale, monkeypatch):
    A = (rand(8, 32, seed=3) * 100 * scale).float()
    A[5] = A[2]
    c = 8 * 1e-4 * scale ** 2
    P = damped_gram_inverse(A, c)
    assert P.dtype == DT and torch.isfinite(P).all()             # float32 cannot hold this system
    # P itself is ill-determined along the repeated-row direction only where the float32 Gram is
    # (the uᵀA = 0 direction); applied to A, as a caller does, it matches float64
    ref = reference(A, c) @ A.double()
    assert ((P.double() @ A.double() - ref).norm() / ref.norm()) < 1e-3


def test_fallback_is_taken_when_cholesky_fails(monkeypatch):
    A = rand(4, 6, seed=4)
    calls = []
    eigh = torch.linalg.eigh
    monkeypatch.setattr(torch.linalg, "eigh", lambda M: calls.append(M.dtype) or eigh(M))
    damped_gram_inverse(A, 1.0)
    assert calls == []                                           # Cholesky accepted
    real = torch.linalg.cholesky_ex
    monkeypatch.setattr(torch.linalg, "cholesky_ex",
                        lambda M: (real(M)[0], torch.tensor(1, dtype=torch.int32)))
    P = damped_gram_inverse(A.float(), 1.0)                      # float32, then float64, then eigh
    assert calls == [DT] and P.dtype == DT
    torch.testing.assert_close(P, reference(A.float(), 1.0))


def test_well_conditioned_float32_stays_float32():
    A = torch.rand(60, 400, generator=torch.Generator().manual_seed(8))
    P = damped_gram_inverse(A, 6.0)
    assert P.dtype == torch.float32
    torch.testing.assert_close(P.double(), reference(A, 6.0), rtol=1e-4, atol=1e-5)


def test_non_finite_input_gives_nan():
    A = rand(4, 6, seed=5)
    A[1, 2] = float("inf")
    assert torch.isnan(damped_gram_inverse(A, 1.0)).all()
    A[1, 2] = float("nan")
    assert torch.isnan(damped_gram_inverse(A.float(), 1.0)).all()


def test_solve_spd_left_and_right():
    M = rand(5, 5, seed=6)
    M = M @ M.T + torch.eye(5, dtype=DT)
    rhs = rand(5, 3, seed=7)
    torch.testing.assert_close(solve_spd(M, rhs), torch.linalg.solve(M, rhs))
    torch.testing.assert_close(solve_spd(M, rhs.T, left=False), torch.linalg.solve(M, rhs).T)
