r"""Matrix-free curvature products on a ``torch.func.functional_call`` view of a model.

The network is seen as a function ``f(theta) -> outputs`` of its trainable parameters on a fixed batch
(inputs, targets), and the batch loss as ``L(theta) = loss(f(theta), targets)`` (conventions in
:mod:`curvlab.losses`). With ``J`` the Jacobian of the stacked outputs (N x C) with respect to theta
(P entries) and ``H_L`` the Hessian of the *batch* loss with respect to the outputs:

.. math::

    G = J^T H_L J                      (generalized Gauss-Newton, PSD for a convex loss)
    H = G + \sum_i (dL/df_i) \nabla^2 f_i   (the full Hessian)

A GGN-vector product is computed in three steps (v -> Jv -> H_L Jv -> J^T H_L Jv): a forward-mode
Jacobian-vector product, the closed-form loss Hessian on the outputs, and a reverse-mode
vector-Jacobian product. Nothing of size P x P or (N C) x P is ever formed. Hessian products
(:class:`HessianOperator`) linearise the gradient instead (forward-over-reverse); the input-space
products (:func:`input_gradient`, :func:`input_hessian_vector_product`) differentiate each sample's
loss with respect to its own input.

Vectors are tuples of tensors shaped like the trainable parameters, in the order of
``model.named_parameters()`` (parameters with ``requires_grad=False`` and buffers are held fixed).
``flatten`` / ``unflatten_like`` convert to and from one flat vector. The model must return one
tensor and be deterministic (no dropout; BatchNorm in eval mode).

Every evaluation that is differentiated here runs inside :func:`curvlab._exact.exact_derivatives`:
layers whose backward is a method's preconditioned direction (``curvlab.isaac``) then contribute
the network function's true derivatives.

Three ways to apply J to many vectors at one point (``GGNOperator(method=...)``):

* ``"traced"`` (default): the forward-mode Jacobian-vector product is traced once per model and input
  shape and split into a part that depends only on (theta, inputs), run once per point together with
  the outputs and the reverse-mode graph, and a part linear in the tangent, run once per product
  (:mod:`curvlab._traced`, which states the contract). A product then costs the tangent pass and one
  backward pass. Models whose Python control flow depends on tensor values cannot be traced and
  fall back to ``"jvp"`` with a warning.
* ``"jvp"``: ``torch.func.jvp`` per product (re-runs the primal network each time) and a reusable
  ``torch.func.vjp`` function.
* ``"double_backward"``: J v obtained by differentiating the (linear in u) map u -> J^T u, whose graph
  is built once per point.

``benchmarks/sgn.py`` measures all three against a gradient step. Outputs along a line for a line
search (from the moved first layer) are :class:`curvlab._line_search.LineShortcut`'s concern.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence, Union

import torch
from torch import Tensor, nn
from torch.func import functional_call

from . import _traced
from ._exact import exact_derivatives
from ._traced import clear_trace_cache
from .linalg import flatten, unflatten_like
from .losses import (  # noqa: F401
    LOSSES,
    LossDerivatives,
    _check_logits,
    _check_loss,
    _cross_entropy,
    _regression_targets,
    _squared_scale,
    log_softmax_classes,
    loss_derivatives,
    loss_function,
)

Tensors = tuple[Tensor, ...]
ParamsLike = Union[Sequence[Tensor], Mapping[str, Tensor], None]
InputsLike = Union[Tensor, Sequence[Tensor]]

METHODS = ("traced", "jvp", "double_backward")
_TRACE_CACHE = _traced._TRACE_CACHE                    # the trace cache, for inspection in tests

__all__ = [
    "LOSSES", "METHODS", "LossDerivatives", "loss_function", "loss_derivatives", "log_softmax_classes",
    "parameter_names", "model_function", "GGNOperator", "ggn_vector_product", "flatten",
    "unflatten_like", "clear_trace_cache",
    # re-exported from curvlab.hessian on first access (module __getattr__ below)
    "HessianOperator", "hessian_vector_product", "input_gradient", "input_hessian_vector_product",  # noqa: F822
]


# --------------------------------------------------------------------------------------------------
# The functional view of a model
# --------------------------------------------------------------------------------------------------

def parameter_names(model: nn.Module) -> list[str]:
    """Names of the trainable parameters, in the order vectors use."""
    return [n for n, p in model.named_parameters() if p.requires_grad]


def _resolve_params(model: nn.Module, params: ParamsLike) -> tuple[list[str], Tensors]:
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]   # one module walk
    names = [n for n, _ in trainable]
    if params is None:
        return names, tuple(p.detach() for _, p in trainable)
    if isinstance(params, Mapping):
        return names, tuple(params[n] for n in names)
    params = tuple(params)
    if len(params) != len(names):
        raise ValueError(f"got {len(params)} parameter tensors, the model has {len(names)} trainable ones")
    return names, params


def _frozen_state(model: nn.Module) -> dict[str, Tensor]:
    """Buffers and parameters that do not require grad: held fixed in every product."""
    state = {n: b for n, b in model.named_buffers()}
    state.update({n: p.detach() for n, p in model.named_parameters() if not p.requires_grad})
    return state


def _as_inputs(inputs: InputsLike) -> Tensors:
    return (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)


def model_function(model: nn.Module, inputs: InputsLike, names: Sequence[str] | None = None
                   ) -> Callable[..., Tensor]:
    """``f(*params) -> outputs``: the model on ``inputs`` as a pure function of its trainable params.

    Evaluated inside :func:`curvlab._exact.exact_derivatives`, so ``torch.func`` transforms of ``f``
    (``jacrev``, ``jvp``, ``hessian``) see the network function's true derivatives.
    """
    names = list(parameter_names(model) if names is None else names)
    frozen = _frozen_state(model)
    inputs = _as_inputs(inputs)

    def f(*params: Tensor) -> Tensor:
        with exact_derivatives():
            return functional_call(model, {**frozen, **dict(zip(names, params))}, inputs)
    return f


def _check_vector(vector: Sequence[Tensor], params: Tensors) -> Tensors:
    vector = tuple(vector)
    if len(vector) != len(params) or any(v.shape != p.shape for v, p in zip(vector, params)):
        raise ValueError("vector must be a sequence of tensors shaped like the trainable parameters")
    return vector


def _check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return method


def _vjp(outputs: Tensor, leaves: Tensors, cotangent: Tensor) -> Tensors:
    """J^T w through the retained graph of ``outputs``."""
    return torch.autograd.grad(outputs, leaves, cotangent, retain_graph=True, allow_unused=True,
                               materialize_grads=True)


# --------------------------------------------------------------------------------------------------
# The GGN at one point, for many products
# --------------------------------------------------------------------------------------------------

class GGNOperator:
    """The GGN ``G = J^T H_L J`` of ``loss`` at one point (params, inputs, targets), for many products.

    One construction runs the network forward once, keeping what the products need; ``loss``,
    ``outputs`` and ``gradient`` (``g = J^T dL/df``, computed on first access) come from the same pass.
    Each ``op(v)`` then costs one forward-mode tangent pass and one backward pass. The operator holds
    only its linearisation point: it is immutable once built.

    Args:
        model: the network; it is called through ``torch.func.functional_call`` and never modified.
        loss: a name from ``LOSSES`` (conventions in :mod:`curvlab.losses`).
        inputs: a tensor, or a tuple of tensors passed positionally to the model.
        targets: class indices / probabilities (``cross_entropy``) or regression targets.
        params: the point, as tensors in ``parameter_names(model)`` order or a name -> tensor mapping;
            default: the model's current parameters.
        method: ``"traced"`` (default), ``"jvp"`` or ``"double_backward"``; see the module docstring.
            ``"traced"`` falls back to ``"jvp"`` (with a warning) for models ``make_fx`` cannot trace.

    Raises:
        ValueError: for an unknown ``loss`` or ``method``.

    Example:
        >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
        >>> x, y = torch.randn(5, 3), torch.tensor([0, 1, 1, 0, 1])
        >>> op = GGNOperator(model, "cross_entropy", x, y)
        >>> gv = op([torch.ones_like(p) for p in model.parameters()])
        >>> [tuple(t.shape) for t in gv]
        [(4, 3), (4,), (2, 4), (2,)]
    """

    def __init__(self, model: nn.Module, loss: str, inputs: InputsLike, targets: Tensor,
                 params: ParamsLike = None, method: str = "traced"):
        _check_loss(loss)
        _check_method(method)
        self.names, point = _resolve_params(model, params)
        self.params: Tensors = tuple(p.detach() for p in point)
        self.inputs = _as_inputs(inputs)
        self.model = model
        frozen = _frozen_state(model)
        self.frozen: Tensors = tuple(frozen.values())
        self.split = _traced.split_linearization(model, self.names, frozen, self.params, self.inputs) \
            if method == "traced" else None
        self.method = "jvp" if method == "traced" and self.split is None else method
        self._gradient: Tensors | None = None
        self.frontier: Tensors = ()                        # frontier values at the point (traced)

        with torch.enable_grad():
            if self.method == "jvp":
                self._f = model_function(model, self.inputs, self.names)
                outputs, self._vjp_fn = torch.func.vjp(self._f, *self.params)
            else:
                self._leaves = tuple(p.detach().requires_grad_(True) for p in self.params)
                if self.method == "traced":
                    outputs, boundary, frontier = self.split.primal(*self._leaves, *self.frozen, *self.inputs)
                    self.boundary = tuple(b.detach() for b in boundary)
                    self.frontier = tuple(f.detach() for f in frontier)
                else:
                    outputs = model_function(model, self.inputs, self.names)(*self._leaves)
            self._graph_outputs = outputs
            self.outputs = outputs.detach()
            derivatives = loss_derivatives(loss, self.outputs, targets)
            self.loss: Tensor = derivatives.value
            self._output_gradient = derivatives.gradient
            self.loss_hessian_product = derivatives.hessian_product
            if self.method == "double_backward":
                # u -> J^T u is linear in u; its graph, built once, gives J v by one more backward.
                self._u = derivatives.gradient.clone().requires_grad_(True)
                jtu = torch.autograd.grad(outputs, self._leaves, self._u, create_graph=True,
                                          allow_unused=True, materialize_grads=True)
                self._gradient = tuple(t.detach() for t in jtu)
                self._jtu = tuple(t for t in jtu if t.requires_grad)
                self._jtu_index = [i for i, t in enumerate(jtu) if t.requires_grad]

    @property
    def gradient(self) -> Tensors:
        """``g = J^T dL/df``, the gradient of the batch loss (computed once)."""
        if self._gradient is None:
            if self.method == "jvp":
                self._gradient = tuple(self._vjp_fn(self._output_gradient))
            else:
                self._gradient = _vjp(self._graph_outputs, self._leaves, self._output_gradient)
        return self._gradient

    def jacobian_vector_product(self, vector: Sequence[Tensor]) -> Tensor:
        """``J v``, shaped like the outputs."""
        vector = _check_vector(vector, self.params)
        if self.method == "traced":
            with torch.no_grad():
                return self.split.tangent(*self.boundary, *vector)
        if self.method == "jvp":
            return torch.func.jvp(self._f, self.params, vector)[1]
        if not self._jtu:
            return torch.zeros_like(self.outputs)
        with torch.enable_grad():
            return torch.autograd.grad(self._jtu, self._u, [vector[i] for i in self._jtu_index],
                                       retain_graph=True)[0]

    def jacobian_vector_product_with_frontier(self, vector: Sequence[Tensor]) -> tuple[Tensor, Tensors]:
        """``(J v, frontier tangents along v)``: traced method with a frontier (:mod:`curvlab._traced`)."""
        if self.split is None or self.split.trial is None:
            raise RuntimeError("no frontier: needs method='traced' on a model with an affine first layer")
        vector = _check_vector(vector, self.params)
        with torch.no_grad():
            return self.split.tangent_line(*self.boundary, *vector)

    def vector_jacobian_product(self, cotangent: Tensor) -> Tensors:
        """``J^T w`` for ``w`` shaped like the outputs."""
        if self.method == "jvp":
            return tuple(self._vjp_fn(cotangent))
        with torch.enable_grad():
            return _vjp(self._graph_outputs, self._leaves, cotangent)

    def __call__(self, vector: Sequence[Tensor]) -> Tensors:
        """``G v = J^T (H_L (J v))``."""
        jv = self.jacobian_vector_product(vector)                  # (N, C)
        return self.vector_jacobian_product(self.loss_hessian_product(jv))

    matvec = __call__


def ggn_vector_product(model: nn.Module, loss: str, inputs: InputsLike, targets: Tensor,
                       vector: Sequence[Tensor], params: ParamsLike = None, method: str = "traced"
                       ) -> Tensors:
    """One GGN-vector product ``G v = J^T H_L J v`` at ``params`` (default: the model's current ones).

    ``method="traced"`` (default) builds a ``GGNOperator`` (the primal part of the traced linearisation
    under autograd, then its tangent part and one backward pass; the trace itself is cached per model
    and input shape). ``method="jvp"`` needs no trace: ``torch.func.jvp`` runs the network once with
    parameters that require grad, giving the outputs (with their reverse-mode graph) and ``J v``
    together; the closed-form loss Hessian maps ``J v`` to ``w``; one backward pass gives ``J^T w``.
    ``"double_backward"`` goes through ``GGNOperator`` too. For many products at one point build a
    ``GGNOperator`` once.
    """
    _check_loss(loss)
    if _check_method(method) != "jvp":
        return GGNOperator(model, loss, inputs, targets, params=params, method=method)(vector)
    names, point = _resolve_params(model, params)
    vector = _check_vector(vector, point)
    f = model_function(model, inputs, names)
    leaves = tuple(p.detach().requires_grad_(True) for p in point)
    with torch.enable_grad():
        outputs, jv = torch.func.jvp(f, leaves, vector)
        w = loss_derivatives(loss, outputs, targets).hessian_product(jv.detach())
        return torch.autograd.grad(outputs, leaves, w, allow_unused=True, materialize_grads=True)


_FROM_HESSIAN = {"HessianOperator", "hessian_vector_product", "input_gradient",
                 "input_hessian_vector_product"}


def __getattr__(name: str):
    """The Hessian and input-space products live in :mod:`curvlab.hessian` (built on this module)."""
    if name in _FROM_HESSIAN:
        from . import hessian
        return getattr(hessian, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
