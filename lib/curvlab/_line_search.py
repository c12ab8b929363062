"""Network outputs along a CG direction from the moved first layer: the line-search shortcut.

A line search after CG needs ``f(theta + s Delta)`` for a few step sizes s, with ``Delta = sum_k a_k
v_k`` a combination of the vectors CG applied the GGN to. With the traced linearisation
(:mod:`curvlab._traced`) the *frontier* values (the layers affine in theta that read only the
inputs, typically the first ``x W^T + b`` or convolution) move exactly as ``z(theta + s Delta) =
z(theta) + s sum_k a_k (J_z v_k)``, and every product already computes ``J_z v_k``. So
:class:`LineShortcut` accumulates ``sum_k a_k J_z v_k`` from the products and step lengths, and
evaluates the network at a trial point from the moved frontier on, skipping the first layer.

Contract:

- The products go through the shortcut (``line(v)``, the same ``G v`` as ``op(v)``) and every step
  ``x += a v`` of the solver is reported with ``line.record_step(a)`` right after the product of
  ``v`` (CG's ``on_step``). :attr:`LineShortcut.last_path` says which path the last
  :meth:`LineShortcut.outputs` took (``"shortcut"`` or ``"full"``), and ``shortcut_calls`` /
  ``full_calls`` count them.
- A product whose vector was not reported before the next product, or products of which none was
  reported (a warm-started CG applies A to ``x0`` and moves x by it without a step length), make the
  shortcut *refuse*: :attr:`applies` turns False and :meth:`outputs` runs the full network. A solver
  that reports its initial product (``record_step(1.0)`` after ``A x0``) keeps the shortcut.
  The one unreported product allowed is the last (CG stops on a breakdown without a step).
- Where the shortcut does not apply (other methods, models without a frontier, or refused), the
  outputs are those of a full forward pass through :func:`curvlab.curvature.model_function`:
  results do not differ.
- On every path (any method, shortcut or not) the output tangents are followed too: ``J Delta =
  sum_k a_k J v_k``, so :meth:`LineShortcut.step_curvature` gives ``Delta^T G Delta`` with no further
  product, and :meth:`LineShortcut.curvature` gives ``v^T G v`` from the tangent alone, for a CG
  iteration whose residual is not needed (its last).

The state lives here, not in the operator: one :class:`LineShortcut` per line search.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from .curvature import GGNOperator, model_function

__all__ = ["LineShortcut"]

Tensors = tuple[Tensor, ...]


class LineShortcut:
    """Follows ``Delta = sum_k a_k v_k`` at the frontier of ``op`` and evaluates outputs on the line.

    Args:
        op: the GGN operator at theta; the shortcut needs ``method="traced"`` and a model with a
            frontier (pure, with an affine first layer), and otherwise falls back to full passes.

    Example:
        >>> from curvlab.krylov import conjugate_gradient
        >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
        >>> x, y = torch.randn(5, 3), torch.tensor([0, 1, 1, 0, 1])
        >>> line = LineShortcut(GGNOperator(model, "cross_entropy", x, y))
        >>> delta, _ = conjugate_gradient(line, [-g for g in line.op.gradient], max_iter=2,
        ...                               on_step=line.record_step)
        >>> theta = [p.detach() for p in model.parameters()]
        >>> out = line.outputs([t + 0.5 * d for t, d in zip(theta, delta)], 0.5)
        >>> line.last_path, tuple(out.shape)
        ('shortcut', (5, 2))
    """

    def __init__(self, op: GGNOperator):
        self.op = op
        split = op.split if op.method == "traced" else None
        self._trial = split.trial if split is not None else None
        self.refused: str | None = None             # why the shortcut was refused, if it was
        self._step: list[Tensor] | None = None      # sum_k a_k (frontier tangent of v_k)
        self._pending: Tensors | None = None        # frontier tangent of the last, unreported product
        self._products = self._recorded = 0
        self._output_step: Tensor | None = None     # sum_k a_k J v_k (every method)
        self._pending_output: Tensor | None = None  # J v of the last, unreported product
        self._output_lost = False                   # a product was never reported: J Delta unknown
        self.last_path: str | None = None
        self.shortcut_calls = self.full_calls = 0

    @property
    def applies(self) -> bool:
        """Whether :meth:`outputs` will start from the moved frontier (see the module contract)."""
        return self._trial is not None and self.refused is None \
            and (self._recorded > 0 or self._products == 0)

    def _refuse(self, reason: str) -> None:
        self.refused = self.refused or reason
        self._step = self._pending = None

    def _tangent(self, vector: Sequence[Tensor]) -> Tensor:
        """``J v``, keeping it (and the frontier tangent, with the shortcut) for :meth:`record_step`."""
        if self._pending_output is not None:         # the previous product was never reported
            self._output_lost, self._output_step = True, None
            if self._trial is not None and self.refused is None:
                self._refuse("a product was not followed by record_step (e.g. CG's warm start A x0)")
        if self._trial is None or self.refused is not None:
            jv = self.op.jacobian_vector_product(vector)
        else:
            jv, self._pending = self.op.jacobian_vector_product_with_frontier(vector)
            self._products += 1
        self._pending_output = jv
        return jv

    def __call__(self, vector: Sequence[Tensor]) -> Tensors:
        """``G v = J^T H (J v)``, as ``op(v)``, keeping ``J v`` (and its frontier part) for record_step."""
        return self.op.vector_jacobian_product(self.op.loss_hessian_product(self._tangent(vector)))

    matvec = __call__

    def curvature(self, vector: Sequence[Tensor]) -> float:
        """``v^T G v = (J v)^T H (J v)``: the curvature along ``v`` without the backward pass.

        Kept for :meth:`record_step` like a product; pass it as ``conjugate_gradient(...,
        curvature=...)`` (plus any damping) so that CG's last iteration skips ``J^T``.
        """
        jv = self._tangent(vector)
        return float(torch.dot(jv.reshape(-1), self.op.loss_hessian_product(jv).reshape(-1)))

    def step_curvature(self) -> float:
        """``Delta^T G Delta = (J Delta)^T H (J Delta)`` for the recorded ``Delta = sum_k a_k v_k``.

        Exact for the direction CG returned (no conjugacy assumed), with no product: ``J Delta`` is
        accumulated from the products' tangents. 0 if nothing was recorded.

        Raises:
            RuntimeError: a product was not reported with :meth:`record_step` (``J Delta`` is unknown).
        """
        if self._output_lost:
            raise RuntimeError("a product was not followed by record_step: the step's curvature is unknown")
        if self._output_step is None:
            return 0.0
        jd = self._output_step
        return float(torch.dot(jd.reshape(-1), self.op.loss_hessian_product(jd).reshape(-1)))

    def record_step(self, a: float) -> None:
        """Note that the direction moved by ``a`` times the vector of the most recent product.

        Pass it as ``conjugate_gradient(..., on_step=line.record_step)``.

        Raises:
            RuntimeError: if no product is waiting to be recorded (the step would refer to nothing).
        """
        if self._pending_output is None:
            raise RuntimeError("record_step needs a product first (it refers to the last vector applied)")
        if self._output_step is None and not self._output_lost:
            self._output_step = self._pending_output * a
        elif self._output_step is not None:
            self._output_step.add_(self._pending_output, alpha=a)
        self._pending_output = None
        if self._trial is None or self.refused is not None:
            return
        if self._step is None:
            self._step = torch._foreach_mul(list(self._pending), a)
        else:
            torch._foreach_add_(self._step, list(self._pending), alpha=a)
        self._pending, self._recorded = None, self._recorded + 1   # do not hold it (conv: batch-sized)

    def outputs(self, params: Sequence[Tensor], s: float) -> Tensor:
        """Network outputs at ``params = theta + s * Delta``, ``Delta`` the recorded direction.

        ``params`` must be that point (in ``parameter_names`` order). With the shortcut, the frontier
        values are ``z(theta) + s sum_k a_k J_z v_k`` (exact up to round-off) and the rest of the
        network runs on ``params``; otherwise the whole network runs on ``params``. No autograd graph.
        """
        params = tuple(params)
        op = self.op
        with torch.no_grad():
            if not self.applies:
                self.last_path, self.full_calls = "full", self.full_calls + 1
                return model_function(op.model, op.inputs, op.names)(*params)
            self.last_path, self.shortcut_calls = "shortcut", self.shortcut_calls + 1
            moved = op.frontier if self._step is None else \
                torch._foreach_add(list(op.frontier), self._step, alpha=s)
            return self._trial(*params, *op.frozen, *op.inputs, *moved)
