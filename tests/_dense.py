"""Dense float64 references shared by the tests: the GGN from explicit Jacobians."""
import torch

from curvlab import curvature as cv


def dense_ggn(model, loss, x, y):
    """``(J^T H_L J, params)``: J from ``jacrev``, H_L from ``torch.func.hessian`` of the loss (not the
    closed form), for the outputs of ``model`` on ``x`` with the registry's ``loss``."""
    names, params = cv._resolve_params(model, None)
    f = cv.model_function(model, x, names)
    out = f(*params).detach()
    jac = torch.func.jacrev(f, argnums=tuple(range(len(params))))(*params)       # per param (N, C, *shape)
    J = torch.cat([j.reshape(out.numel(), -1) for j in jac], dim=1)              # (N C, P)
    loss_fn = cv.loss_function(loss)
    H = torch.func.hessian(lambda o: loss_fn(o.reshape(out.shape), y))(out.reshape(-1))  # (N C, N C)
    return J.T @ H @ J, params
