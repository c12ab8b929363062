import math

import pytest
import torch

from curvlab import krylov as K
from curvlab.batched_power import batched_power_iteration


def symmetric_batch(n, d, seed=0):
    """N random symmetric matrices with a clear gap at the top |eigenvalue| (sign varies by row)."""
    g = torch.Generator().manual_seed(seed)
    mats = []
    for i in range(n):
        q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
        eig = torch.linspace(-1.0, 1.0, d, dtype=torch.float64)
        eig[0 if i % 2 else -1] = 4.0 * (-1) ** i          # dominant eigenvalue +4 or -4
        mats.append(q @ torch.diag(eig) @ q.T)
    return torch.stack(mats)


def test_batched_power_iteration_matches_eigvalsh_per_row_with_signs():
    A = symmetric_batch(5, 6)
    v0 = torch.randn(5, 2, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)

    def matvec(v):
        return (A @ v.reshape(5, 6, 1)).reshape(5, 2, 3)
    eig, vec, info = batched_power_iteration(matvec, v0, iters=200, tol=1e-12)
    ev = torch.linalg.eigvalsh(A)
    top = ev.gather(1, ev.abs().argmax(1, keepdim=True)).squeeze(1)
    torch.testing.assert_close(eig, top, rtol=1e-9, atol=0)
    assert eig[0] > 0 and eig[1] < 0
    assert info.converged.all() and info.iterations < 200          # stopped once every row converged
    torch.testing.assert_close(vec.reshape(5, -1).norm(dim=1), torch.ones(5, dtype=torch.float64))
    assert (info.residual_norm < 1e-5).all()
    torch.testing.assert_close(info.magnitude, top.abs(), rtol=1e-6, atol=0)


def test_batched_power_iteration_rows_are_independent_and_match_the_scalar_method():
    A = symmetric_batch(3, 5, seed=1)
    v0 = torch.randn(3, 5, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    eig, vec, info = batched_power_iteration(lambda v: (A @ v[..., None])[..., 0], v0, iters=7, tol=0.0)
    assert info.iterations == 7 and not info.converged.any()         # tol = 0 never flags
    for i in range(3):
        e, u, pinfo = K.power_iteration(lambda x, i=i: A[i] @ x, v0[i], max_iter=7, tol=0.0)
        assert math.isclose(float(eig[i]), e, rel_tol=1e-12)
        torch.testing.assert_close(vec[i], u, rtol=1e-10, atol=1e-12)
        assert math.isclose(float(info.relative_change[i]), pinfo.relative_change, rel_tol=1e-9)
    # scaling one row's operator changes only that row
    B = A.clone()
    B[1] *= 10.0
    eig_b, _, _ = batched_power_iteration(lambda v: (B @ v[..., None])[..., 0], v0, iters=7, tol=0.0)
    torch.testing.assert_close(eig_b[[0, 2]], eig[[0, 2]], rtol=0, atol=0)
    torch.testing.assert_close(eig_b[1], 10.0 * eig[1], rtol=1e-12, atol=0)


def test_batched_power_iteration_zero_operator_row_and_first_step_change():
    A = torch.stack([torch.zeros(3, 3, dtype=torch.float64), torch.eye(3, dtype=torch.float64) * 2.0])
    v0 = torch.ones(2, 3, dtype=torch.float64)
    eig, vec, info = batched_power_iteration(lambda v: (A @ v[..., None])[..., 0], v0, iters=5, tol=1e-8)
    torch.testing.assert_close(eig, torch.tensor([0.0, 2.0], dtype=torch.float64))
    assert info.iterations == 2 and info.converged.all()             # exact eigenpairs: no change
    assert torch.isfinite(vec).all() and (info.residual_norm < 1e-14).all()
    _, _, one = batched_power_iteration(lambda v: (A @ v[..., None])[..., 0], v0, iters=1)
    assert one.iterations == 1 and torch.isinf(one.relative_change).all() and not one.converged.any()


@pytest.mark.parametrize("kwargs,name", [({"iters": 0}, "iters"), ({"iters": 2.0}, "iters"),
                                         ({"iters": True}, "iters"), ({"tol": -1.0}, "tol"),
                                         ({"tol": math.nan}, "tol")])
def test_batched_power_iteration_invalid_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        batched_power_iteration(lambda v: v, torch.ones(2, 3), **kwargs)


def test_batched_power_iteration_invalid_start_and_matvec():
    with pytest.raises(ValueError, match="zero row"):
        batched_power_iteration(lambda v: v, torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="v0"):
        batched_power_iteration(lambda v: v, torch.ones(2, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="v0"):
        batched_power_iteration(lambda v: v, torch.ones(0, 3))
    with pytest.raises(ValueError, match="matvec"):
        batched_power_iteration(lambda v: v[:, :2], torch.ones(2, 3))
