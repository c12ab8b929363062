"""Exact Hessian products: in parameter space at one point, and per sample in input space.

Parameter space. With ``L(theta)`` the batch loss and ``g(theta) = nabla L(theta)``, the Hessian
product is the directional derivative of the gradient, ``H v = d/dt g(theta + t v)|_{t=0}``
(forward-over-reverse). :class:`HessianOperator` linearises ``g`` once at the point, so that each
product (``op(v)``) or block of products (``op.matmat(V)``) runs only the linear part.

Input space. With ``l_i(x_i) = loss(f(x_i), y_i)`` the loss of sample ``i`` alone (every convention
in :mod:`curvlab.losses` is a mean, ``L = (1/N) sum_i l_i``), :func:`input_gradient` returns
``nabla_x l_i`` and :func:`input_hessian_vector_product` returns ``nabla_x^2 l_i v_i`` for every
sample of the batch in one call. In eval mode the samples do not interact, so ``N L`` is a sum of
functions of disjoint inputs: its input gradient is ``(nabla l_1, ..., nabla l_N)`` and its input
Hessian is block diagonal with blocks ``nabla^2 l_i``. One gradient (or one forward-over-reverse
product) of ``N L`` with respect to the whole batch therefore gives all per-sample results at the
cost of one batched pass.

All evaluations run inside :func:`curvlab._exact.exact_derivatives` (through
:func:`curvlab.curvature.model_function` or directly), so layers with modified gradients contribute
their true derivatives.
"""
from __future__ import annotations

import contextlib
import warnings
from typing import Iterator, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call

from ._exact import exact_derivatives
from .curvature import (
    InputsLike,
    ParamsLike,
    Tensors,
    _as_inputs,
    _check_vector,
    _frozen_state,
    _resolve_params,
    model_function,
)
from .losses import check_loss, loss_function

__all__ = ["HessianOperator", "eval_mode", "hessian_vector_product", "input_gradient",
           "input_hessian_vector_product"]

HESSIAN_METHODS = ("linearize", "double_backward")


class HessianOperator:
    """The Hessian ``H = nabla^2 L(theta)`` of the batch loss at one point, for many products.

    ``method="linearize"`` (default): ``torch.func.linearize`` of ``torch.func.grad`` traces the
    forward-over-reverse linearisation of the gradient once (about 0.3-0.5 s for the MNIST MLP);
    each product then runs only the tangent half. ``method="double_backward"``: the gradient is
    built once with ``create_graph=True`` and ``H v`` is one more backward pass through it (no trace;
    reverse-over-reverse, the same numbers up to round-off).

    Blocks (:meth:`matmat`): measured with 1 thread (``benchmarks/hessian.py``: torch 2.13, CPU,
    float32, 8 vectors, two runs on a shared machine), ``torch.vmap`` over the linearised product
    wins on the MLP and loses on the CNN. MNIST MLP 784-20-20-20-10, batch 1000 (gradient 5.9-7.0
    ms): looped 37-52 ms, vmapped 16-20 ms. CNN conv(1->8, 5x5)-tanh-pool-linear on 28x28, batch 256
    (gradient 24-53 ms): looped 138-258 ms, vmapped 397-711 ms. So the block is vmapped for models
    without convolutions and looped otherwise (``vmap=`` overrides). Double backward was no faster
    looped, nor batched (``is_grads_batched``); ``jvp`` of ``grad`` without a reused linearisation
    was the slowest (MLP: 84-197 ms looped, 21-58 ms vmapped). The linearize trace costs 0.3-0.7 s
    per point, so for a handful of products at a point ``double_backward`` is cheaper overall.

    Args:
        model: the network (never modified).
        loss: a name from :data:`curvlab.losses.LOSSES`.
        inputs: a tensor or a tuple of tensors passed positionally to the model.
        targets: targets as the loss expects them.
        params: the point (default: the model's current parameters).
        method: ``"linearize"`` or ``"double_backward"``.

    Raises:
        ValueError: for an unknown ``loss`` or ``method``, or a vector of the wrong shapes.

    Example:
        >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
        >>> x, y = torch.randn(5, 3), torch.tensor([0, 1, 1, 0, 1])
        >>> op = HessianOperator(model, "cross_entropy", x, y)
        >>> [tuple(t.shape) for t in op([torch.ones_like(p) for p in model.parameters()])]
        [(4, 3), (4,), (2, 4), (2,)]
    """

    def __init__(self, model: nn.Module, loss: str, inputs: InputsLike, targets: Tensor,
                 params: ParamsLike = None, method: str = "linearize"):
        check_loss(loss)
        if method not in HESSIAN_METHODS:
            raise ValueError(f"method must be one of {HESSIAN_METHODS}, got {method!r}")
        self.method = method
        self._vmap = not any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules())
        self.names, point = _resolve_params(model, params)
        self.params: Tensors = tuple(p.detach() for p in point)
        f, loss_fn = model_function(model, inputs, self.names), loss_function(loss)

        def batch_loss(*p: Tensor) -> Tensor:
            return loss_fn(f(*p), targets)

        argnums = tuple(range(len(self.params)))
        if method == "linearize":
            with warnings.catch_warnings():                # torch's own const-folding pass, harmless
                warnings.filterwarnings("ignore", message="Attempted to insert a get_attr Node")
                gradient, self._linear = torch.func.linearize(
                    torch.func.grad(batch_loss, argnums=argnums), *self.params)
            self._gradient = tuple(t.detach() for t in gradient)
        else:
            with torch.enable_grad():
                self._leaves = tuple(p.detach().requires_grad_(True) for p in self.params)
                self._graph_gradient = torch.autograd.grad(batch_loss(*self._leaves), self._leaves,
                                                           create_graph=True, allow_unused=True,
                                                           materialize_grads=True)
            self._gradient = tuple(t.detach() for t in self._graph_gradient)

    def gradient(self) -> Tensors:
        """``g = nabla L(theta)`` at the point (computed at construction)."""
        return self._gradient

    def __call__(self, vector: Sequence[Tensor]) -> Tensors:
        """``H v``, shaped like the parameters."""
        vector = _check_vector(vector, self.params)
        if self.method == "linearize":
            return tuple(t.detach() for t in self._linear(*vector))
        differentiable = [i for i, g in enumerate(self._graph_gradient) if g.requires_grad]
        if not differentiable:                             # L is affine in theta
            return tuple(torch.zeros_like(p) for p in self.params)
        with torch.enable_grad():
            hv = torch.autograd.grad([self._graph_gradient[i] for i in differentiable], self._leaves,
                                     [vector[i] for i in differentiable], retain_graph=True,
                                     allow_unused=True, materialize_grads=True)
        return tuple(t.detach() for t in hv)

    matvec = __call__

    def matmat(self, block: Tensor | Sequence[Tensor], vmap: bool | None = None) -> Tensor | Tensors:
        """``H V`` for a block of k vectors: vmapped or column by column (the faster, see above).

        Args:
            block: a flat (P, k) matrix, or tensors shaped (k, *p.shape) per parameter.
            vmap: ``torch.vmap`` over the linearised product (``method="linearize"`` only); default:
                vmapped unless the model has convolutions.

        Returns:
            ``H V`` in the same layout as ``block``.
        """
        if isinstance(block, Tensor):
            if block.dim() != 2 or block.shape[0] != sum(p.numel() for p in self.params):
                raise ValueError(f"block must be (P, k) with P = {sum(p.numel() for p in self.params)}, "
                                 f"got {tuple(block.shape)}")
            if block.shape[1] == 0:
                return block.clone()
            parts = tuple(t.movedim(-1, 0) for t in unflatten_like_block(block, self.params))
            rows = self.matmat(parts, vmap)
            return torch.cat([r.reshape(r.shape[0], -1) for r in rows], dim=1).T
        block = tuple(block)
        if (self._vmap if vmap is None else vmap) and self.method == "linearize" and block:
            _check_vector([b[0] for b in block], self.params)
            return tuple(t.detach() for t in torch.vmap(self._linear)(*block))
        if len(block) != len(self.params) or any(b.shape[1:] != p.shape for b, p in zip(block, self.params)) \
                or len({b.shape[0] for b in block}) > 1:
            raise ValueError("block must hold tensors shaped (k, *p.shape), one per trainable parameter")
        k = block[0].shape[0] if block else 0
        columns = [self([b[j] for b in block]) for j in range(k)]
        return tuple(torch.stack([c[i] for c in columns]) if columns else b.clone()
                     for i, b in enumerate(block))


def unflatten_like_block(block: Tensor, like: Sequence[Tensor]) -> Tensors:
    """Split a (P, k) block into tensors shaped (*p.shape, k), one per tensor of ``like``."""
    sizes = [t.numel() for t in like]
    return tuple(c.reshape(*t.shape, block.shape[1]) for c, t in zip(torch.split(block, sizes), like))


def hessian_vector_product(model: nn.Module, loss: str, inputs: InputsLike, targets: Tensor,
                           vector: Sequence[Tensor], params: ParamsLike = None) -> Tensors:
    """``H v`` of the batch loss, by forward-over-reverse (``jvp`` of ``torch.func.grad``).

    One product from scratch (no trace): for many products at one point use :class:`HessianOperator`.
    """
    check_loss(loss)
    names, point = _resolve_params(model, params)
    vector = _check_vector(vector, point)
    f, loss_fn = model_function(model, inputs, names), loss_function(loss)

    def batch_loss(*p: Tensor) -> Tensor:
        return loss_fn(f(*p), targets)
    gradient = torch.func.grad(batch_loss, argnums=tuple(range(len(point))))
    return tuple(torch.func.jvp(gradient, tuple(p.detach() for p in point), vector)[1])


# --------------------------------------------------------------------------------------------------
# Input space, per sample
# --------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Every submodule in eval mode within the block; each one's own previous mode restored after."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


def _summed_loss(model: nn.Module, loss: str, inputs: InputsLike, targets: Tensor):
    """``(x -> N L(x), x)`` with the parameters held fixed: the sum of the per-sample losses."""
    xs = _as_inputs(inputs)
    if not xs or any(x.dim() == 0 for x in xs):
        raise ValueError("inputs must be batched tensors (N, ...)")
    n = xs[0].shape[0]
    if n == 0:
        raise ValueError("inputs hold an empty batch")
    state = {**_frozen_state(model), **{k: p.detach() for k, p in model.named_parameters()}}
    loss_fn = loss_function(loss)

    def summed(*x: Tensor) -> Tensor:
        with exact_derivatives():
            return loss_fn(functional_call(model, state, x), targets) * n
    return summed, tuple(x.detach() for x in xs)


def _like_inputs(result: Tensors, inputs: InputsLike) -> Tensor | Tensors:
    return result[0] if isinstance(inputs, Tensor) else result


def input_gradient(model: nn.Module, loss: str, inputs: InputsLike, targets: Tensor) -> Tensor | Tensors:
    """Per-sample input gradients ``nabla_x l_i(x_i)``, for the whole batch in one backward pass.

    ``l_i`` is the loss of sample ``i`` alone (the loss on a batch of one); the result stacks them,
    shaped like ``inputs``: ``nabla_x (N L) = (nabla_x l_1, ..., nabla_x l_N)`` (module docstring).
    The model runs in eval mode, every module's previous mode is restored afterwards.

    Args:
        model: the network; its parameters are held fixed.
        loss: a name from :data:`curvlab.losses.LOSSES`.
        inputs: a batch (N, ...) or a tuple of batches passed positionally.
        targets: targets of the batch.

    Returns:
        A tensor like ``inputs`` (a tuple, one per input, for a tuple of inputs).

    Raises:
        ValueError: for an unknown loss or an empty batch.
    """
    check_loss(loss)
    with eval_mode(model):
        summed, xs = _summed_loss(model, loss, inputs, targets)
        grads = torch.func.grad(summed, argnums=tuple(range(len(xs))))(*xs)
    return _like_inputs(tuple(grads), inputs)


def input_hessian_vector_product(model: nn.Module, loss: str, inputs: InputsLike, targets: Tensor,
                                 v: InputsLike) -> Tensor | Tensors:
    """Per-sample input Hessian products ``nabla_x^2 l_i(x_i) v_i`` for the whole batch, in one call.

    ``v`` holds one direction per sample, shaped like ``inputs``. As ``N L = sum_i l_i(x_i)`` has a
    block-diagonal input Hessian in eval mode, one forward-over-reverse product of ``N L`` with the
    stacked directions is exactly the stack of the per-sample products:
    ``nabla_x^2 (N L) v = (nabla^2 l_1 v_1, ..., nabla^2 l_N v_N)``. This is what a per-sample power
    method needs (each sample's own direction, all samples at once). The model runs in eval mode,
    every module's previous mode is restored afterwards. Models whose samples interact in eval mode
    (attention across the batch, batch statistics) break the block structure and are not supported.

    Args:
        model: the network; its parameters are held fixed.
        loss: a name from :data:`curvlab.losses.LOSSES`.
        inputs: a batch (N, ...) or a tuple of batches passed positionally.
        targets: targets of the batch.
        v: per-sample directions, shaped like ``inputs``.

    Returns:
        A tensor like ``inputs`` (a tuple, one per input, for a tuple of inputs).

    Raises:
        ValueError: for an unknown loss, an empty batch, or ``v`` not shaped like ``inputs``.
    """
    check_loss(loss)
    directions = _as_inputs(v)
    with eval_mode(model):
        summed, xs = _summed_loss(model, loss, inputs, targets)
        if len(directions) != len(xs) or any(d.shape != x.shape for d, x in zip(directions, xs)):
            raise ValueError("v must be shaped like inputs (one direction per sample)")
        gradient = torch.func.grad(summed, argnums=tuple(range(len(xs))))
        products = torch.func.jvp(gradient, xs, tuple(d.to(x.dtype) for d, x in zip(directions, xs)))[1]
    return _like_inputs(tuple(products), inputs)
