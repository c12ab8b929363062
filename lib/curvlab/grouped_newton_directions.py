"""Update directions for GroupedNewton: torch's SGD (momentum) and Adam, returning the step, not taking it.

GroupedNewton moves each parameter group T_s by theta_s <- theta_s - lr_s u_s, where u is the step a
base optimizer would take with learning rate 1. The classes here compute that u from the gradients,
keyed by parameter name (as in ``model.named_parameters()``), with the exact recursions of
``torch.optim.SGD`` and ``torch.optim.Adam`` (no weight decay, no AMSGrad), so that applying
``-lr * u`` every step reproduces those optimizers with learning rate ``lr``.

A direction never touches the model. ``propose(grads)`` computes u and the state it would move to
without changing anything; ``commit`` adopts that state; ``update`` does both. The split lets the
optimizer drop a step whose direction is not finite without corrupting the running averages.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Mapping, Optional

import torch
from torch import Tensor

__all__ = ["SGDMomentumDirection", "AdamDirection", "DIRECTIONS", "make_direction"]

DIRECTIONS = ("sgd_momentum", "adam")

Named = dict[str, Tensor]


def _real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))


def _check_grads(grads: Mapping[str, Tensor]) -> None:
    if not isinstance(grads, Mapping) or not grads:
        raise ValueError("grads must be a non-empty dict {parameter name: gradient tensor}")
    for name, g in grads.items():
        if not (isinstance(g, Tensor) and g.is_floating_point()):
            raise ValueError(f"grads[{name!r}] must be a floating-point tensor")


def _check_named(value: Any, entry: str, like: Optional[Mapping[str, Tensor]] = None) -> Named:
    """A dict of finite floating tensors (an entry of a state dict); shapes as ``like`` if given."""
    if not isinstance(value, Mapping):
        raise ValueError(f"{entry} in the state dict must be a dict of tensors, got {type(value).__name__}")
    for name, t in value.items():
        if not (isinstance(name, str) and isinstance(t, Tensor) and t.is_floating_point()):
            raise ValueError(f"{entry}[{name!r}] in the state dict must be a floating tensor")
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{entry}[{name!r}] in the state dict has non-finite entries")
    if like is not None:
        if set(value) != set(like):
            raise ValueError(f"{entry} in the state dict has names {sorted(value)}, expected {sorted(like)}")
        for name, t in value.items():
            if t.shape != like[name].shape:
                raise ValueError(f"{entry}[{name!r}] in the state dict has shape {tuple(t.shape)}, "
                                 f"expected {tuple(like[name].shape)}")
    return {name: t.detach().clone() for name, t in value.items()}


class SGDMomentumDirection:
    """The step of ``torch.optim.SGD(lr=1, momentum, dampening, nesterov)``: u = b or g + mu b.

    Momentum buffer b (per parameter): b_1 = g_1, then b_t = mu b_{t-1} + (1 - tau) g_t, with mu the
    momentum and tau the dampening. The direction is u_t = b_t, or g_t + mu b_t with Nesterov
    momentum; with mu = 0 it is the gradient itself. With tau = mu the buffer is an (un-debiased)
    exponential average of the gradients, the reference's 2024 setting (mu = tau = 0.9).

    Args:
        momentum: mu >= 0 (0.9, the published runs).
        dampening: tau in [0, 1] (0).
        nesterov: Nesterov momentum (needs mu > 0 and tau = 0, as in torch).

    Raises:
        ValueError: an invalid argument (named).

    Example:
        >>> import torch
        >>> d = SGDMomentumDirection(momentum=0.5)
        >>> d.update({"w": torch.tensor([1.0])})["w"], d.update({"w": torch.tensor([1.0])})["w"]
        (tensor([1.]), tensor([1.5000]))
    """

    def __init__(self, momentum: float = 0.9, dampening: float = 0.0, nesterov: bool = False):
        if not (_real(momentum) and momentum >= 0):
            raise ValueError(f"momentum must be a finite number >= 0, got {momentum!r}")
        if not (_real(dampening) and 0 <= dampening <= 1):
            raise ValueError(f"dampening must be in [0, 1], got {dampening!r}")
        if not isinstance(nesterov, bool):
            raise ValueError(f"nesterov must be a bool, got {nesterov!r}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("nesterov=True needs momentum > 0 and dampening = 0")
        self.momentum, self.dampening, self.nesterov = float(momentum), float(dampening), nesterov
        self._buffers: Named = {}

    def propose(self, grads: Mapping[str, Tensor]) -> tuple[Named, Named]:
        """``(u, new_buffers)`` for these gradients, leaving the state unchanged."""
        _check_grads(grads)
        mu, tau = self.momentum, self.dampening
        if mu == 0:
            return {n: g.detach().clone() for n, g in grads.items()}, {}
        buffers = {}
        for name, g in grads.items():
            old = self._buffers.get(name)
            # torch starts the buffer at g itself (no dampening on the first step), then
            # b <- mu b + (1 - tau) g, in the same order of operations
            g = g.detach()
            buffers[name] = g.clone() if old is None else torch.add(old * mu, g, alpha=1 - tau)
        if self.nesterov:
            return {n: torch.add(g.detach(), buffers[n], alpha=mu) for n, g in grads.items()}, buffers
        return {n: b.clone() for n, b in buffers.items()}, buffers

    def commit(self, buffers: Named) -> None:
        """Adopt the state computed by ``propose``."""
        self._buffers.update(buffers)

    def update(self, grads: Mapping[str, Tensor]) -> Named:
        """The direction u for these gradients (lr 1); advances the momentum buffers."""
        u, buffers = self.propose(grads)
        self.commit(buffers)
        return u

    def state_dict(self) -> dict[str, Any]:
        """``{"momentum_buffer": {name: tensor}}`` (copies)."""
        return {"momentum_buffer": {n: b.clone() for n, b in self._buffers.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore ``state_dict()`` output (checked before anything is assigned).

        Raises:
            ValueError: a missing entry or a buffer that is not a finite floating tensor.
        """
        if not isinstance(state, Mapping) or "momentum_buffer" not in state:
            raise ValueError("state dict lacks 'momentum_buffer'")
        self._buffers = _check_named(state["momentum_buffer"], "momentum_buffer")


class AdamDirection:
    """The step of ``torch.optim.Adam(lr=1, betas, eps)``: u = m_hat / (sqrt(v_hat) + eps).

    Per parameter, with beta_1, beta_2 the betas and t the step count:
    m_t = beta_1 m_{t-1} + (1 - beta_1) g_t, v_t = beta_2 v_{t-1} + (1 - beta_2) g_t^2 (from 0),
    u_t = (m_t / (1 - beta_1^t)) / (sqrt(v_t / (1 - beta_2^t)) + eps). As in torch, eps is not scaled
    by the learning rate, so lr u_t is exactly Adam's step for any lr.

    Args:
        betas: (beta_1, beta_2), each in [0, 1) ((0.9, 0.999)).
        eps: eps >= 0 (1e-8).

    Raises:
        ValueError: an invalid argument (named).

    Example:
        >>> import torch
        >>> d = AdamDirection(eps=0.0)
        >>> u = d.update({"w": torch.tensor([-3.0])})["w"]     # the first step is sign(g)
        >>> round(float(u), 6)
        -1.0
    """

    def __init__(self, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2
                and all(_real(b) and 0 <= b < 1 for b in betas)):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
        if not (_real(eps) and eps >= 0):
            raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
        self.betas, self.eps = (float(betas[0]), float(betas[1])), float(eps)
        self._step = 0
        self._exp_avg: Named = {}
        self._exp_avg_sq: Named = {}

    def propose(self, grads: Mapping[str, Tensor]) -> tuple[Named, dict[str, Any]]:
        """``(u, new_state)`` for these gradients, leaving the state unchanged."""
        _check_grads(grads)
        (b1, b2), t = self.betas, self._step + 1
        correction1, correction2_sqrt = 1 - b1 ** t, (1 - b2 ** t) ** 0.5
        m, v, u = {}, {}, {}
        for name, g in grads.items():
            g = g.detach()
            m_old = self._exp_avg.get(name, torch.zeros_like(g))
            v_old = self._exp_avg_sq.get(name, torch.zeros_like(g))
            # the operations of torch's single-tensor Adam: lerp for m, mul + addcmul for v
            m[name] = torch.lerp(m_old, g, 1 - b1)
            v[name] = torch.addcmul(v_old * b2, g, g, value=1 - b2)
            denom = (v[name].sqrt() / correction2_sqrt).add_(self.eps)
            u[name] = m[name].div(denom).div_(correction1)
        return u, {"step": t, "exp_avg": m, "exp_avg_sq": v}

    def commit(self, state: Mapping[str, Any]) -> None:
        """Adopt the state computed by ``propose``."""
        self._step = state["step"]
        self._exp_avg.update(state["exp_avg"])
        self._exp_avg_sq.update(state["exp_avg_sq"])

    def update(self, grads: Mapping[str, Tensor]) -> Named:
        """The direction u for these gradients (lr 1); advances the moment estimates."""
        u, state = self.propose(grads)
        self.commit(state)
        return u

    def state_dict(self) -> dict[str, Any]:
        """``{"step": t, "exp_avg": {name: m}, "exp_avg_sq": {name: v}}`` (copies)."""
        return {"step": self._step, "exp_avg": {n: t.clone() for n, t in self._exp_avg.items()},
                "exp_avg_sq": {n: t.clone() for n, t in self._exp_avg_sq.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore ``state_dict()`` output (checked before anything is assigned).

        Raises:
            ValueError: a missing entry, a step that is not an int >= 0, moments that are not finite
                floating tensors with matching names and shapes, or a negative second moment.
        """
        if not isinstance(state, Mapping):
            raise ValueError(f"state must be a dict, got {type(state).__name__}")
        missing = {"step", "exp_avg", "exp_avg_sq"} - set(state)
        if missing:
            raise ValueError(f"state dict lacks {sorted(missing)}")
        step = state["step"]
        if not (isinstance(step, numbers.Integral) and not isinstance(step, bool) and step >= 0):
            raise ValueError(f"step in the state dict must be an int >= 0, got {step!r}")
        m = _check_named(state["exp_avg"], "exp_avg")
        v = _check_named(state["exp_avg_sq"], "exp_avg_sq", like=m)
        if any(bool((t < 0).any()) for t in v.values()):
            raise ValueError("exp_avg_sq in the state dict has negative entries")
        if step == 0 and m:
            raise ValueError("step 0 in the state dict but the moments are not empty")
        self._step, self._exp_avg, self._exp_avg_sq = int(step), m, v


def make_direction(name: str, *, momentum: float = 0.9, dampening: float = 0.0, nesterov: bool = False,
                   betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8
                   ) -> SGDMomentumDirection | AdamDirection:
    """The direction called ``name`` (one of :data:`DIRECTIONS`) with its own arguments.

    Raises:
        ValueError: an unknown name, or an invalid argument of that direction.
    """
    if name == "sgd_momentum":
        return SGDMomentumDirection(momentum=momentum, dampening=dampening, nesterov=nesterov)
    if name == "adam":
        return AdamDirection(betas=betas, eps=eps)
    raise ValueError(f"direction must be one of {DIRECTIONS}, got {name!r}")
