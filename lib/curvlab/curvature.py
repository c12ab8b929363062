"""Matrix-free curvature products on a ``torch.func.functional_call`` view of a model.

The network is seen as a function ``f(theta) -> outputs`` of its trainable parameters on a fixed batch
(inputs, targets), and the batch loss as ``L(theta) = loss(f(theta), targets)``. With ``J`` the Jacobian
of the stacked outputs (N x C) with respect to theta (P entries) and ``H_L`` the Hessian of the
*batch* loss with respect to the outputs (the 1/N of a mean sits inside ``H_L``):

.. math::

    G = J^T H_L J                      (generalized Gauss-Newton, PSD for a convex loss)
    H = G + \\sum_i (dL/df_i) \\nabla^2 f_i   (the full Hessian)

A GGN-vector product is computed in three steps (v -> Jv -> H_L Jv -> J^T H_L Jv): a forward-mode
Jacobian-vector product, the closed-form loss Hessian on the outputs, and a reverse-mode
vector-Jacobian product. Nothing of size P x P or (N C) x P is ever formed.

Vectors are tuples of tensors shaped like the trainable parameters, in the order of
``model.named_parameters()`` (parameters with ``requires_grad=False`` and buffers are held fixed).
``flatten`` / ``unflatten_like`` convert to and from one flat vector. The model must return one
tensor and be deterministic (no dropout; BatchNorm in eval mode).

Loss conventions (``loss`` argument; ``N`` = batch size, ``C`` = output entries per sample):

==================== ============================================ ==========================
name                 L                                            H_L
==================== ============================================ ==========================
``cross_entropy``    (1/N) sum_i CE(softmax(f_i), y_i)            (diag(s_i) - s_i s_i^T)/N
``mse``              (1/(N C)) sum_{i,k} (f_ik - y_ik)^2          2 I / (N C)
``half_mse``         (1/(2 N C)) sum_{i,k} (f_ik - y_ik)^2        I / (N C)
``sum_squared``      (1/N) sum_i ||f_i - y_i||^2                  2 I / N
``half_sum_squared`` (1/(2 N)) sum_i ||f_i - y_i||^2              I / N
==================== ============================================ ==========================

``mse`` is ``torch.nn.functional.mse_loss`` (mean over all N C entries, no 1/2). It is the SGN reference
code's loss (Theano ``T.mean`` of the squared error) and so the one the SGN paper's loss values use;
for scalar regression (C = 1: Boston, sine) it equals ``sum_squared``. ``half_sum_squared`` is the
textbook Gauss-Newton convention (H_L = I/N). Cross-entropy targets are class indices (N,) or class
probabilities (N, C); logits must be (N, C).

Three ways to apply J to many vectors at one point (``GGNOperator(method=...)``):

* ``"traced"`` (default): the forward-mode Jacobian-vector product is traced once per model and input
  shape (``make_fx`` on fake tensors), split into the part that depends only on (theta, inputs) and
  the part linear in the tangent; the first runs once per linearisation point (together with the
  outputs and the reverse-mode graph), the second once per product. A product then costs the tangent
  pass and one backward pass, with no re-run of the primal network. Tracing costs 0.1-1 s once per
  input shape. Work on the zero tangent of the inputs (a full matmul or convolution of zeros in
  PyTorch's forward-mode rules) is removed from the trace. Models whose Python control flow depends
  on tensor values cannot be traced and fall back to ``"jvp"`` with a warning.
* ``"jvp"``: ``torch.func.jvp`` per product (re-runs the primal network each time) and a reusable
  ``torch.func.vjp`` function.
* ``"double_backward"``: J v obtained by differentiating the (linear in u) map u -> J^T u, whose graph
  is built once per point.

``benchmarks/sgn.py`` measures all three against a gradient step.

Outputs along a line (traced method): a line search needs f(theta + s Delta) for a few s, with Delta a
combination sum_k a_k v_k of the vectors the operator was applied to (a CG solution). The layers that
are affine in theta and read only the inputs (the first ``x W^T + b`` or convolution) move exactly as
``value + s * (J_layer Delta)``, and each product has already computed ``J_layer v_k``. So
``GGNOperator.record_step`` accumulates ``sum_k a_k J_layer v_k`` (pass it to ``conjugate_gradient``
as ``on_step``) and ``outputs_on_line`` runs the network from the moved first layer on.
"""
from __future__ import annotations

import warnings
import weakref
from typing import Callable, Mapping, NamedTuple, Sequence, Union

import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from .linalg import flatten, unflatten_like

Tensors = tuple[Tensor, ...]
ParamsLike = Union[Sequence[Tensor], Mapping[str, Tensor], None]
InputsLike = Union[Tensor, Sequence[Tensor]]

LOSSES = ("cross_entropy", "mse", "half_mse", "sum_squared", "half_sum_squared")
METHODS = ("traced", "jvp", "double_backward")

__all__ = [
    "LOSSES", "METHODS", "LossDerivatives", "loss_function", "loss_derivatives", "log_softmax_classes",
    "parameter_names",
    "model_function", "GGNOperator", "ggn_vector_product", "hessian_vector_product", "flatten",
    "unflatten_like", "clear_trace_cache",
]


# --------------------------------------------------------------------------------------------------
# Flat-vector helpers
# --------------------------------------------------------------------------------------------------

# --------------------------------------------------------------------------------------------------
# Losses: value, gradient and Hessian with respect to the network outputs, in closed form
# --------------------------------------------------------------------------------------------------

class LossDerivatives(NamedTuple):
    """The batch loss at the outputs and its first two derivatives with respect to them."""

    value: Tensor                                  # () the batch loss
    gradient: Tensor                               # like outputs: dL/df
    hessian_product: Callable[[Tensor], Tensor]    # v (like outputs) -> H_L v


def _check_loss(name: str) -> str:
    if name not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {name!r}")
    return name


def _squared_scale(name: str, outputs: Tensor) -> float:
    """s such that the squared-error loss is s * sum (f - y)^2."""
    n, numel = outputs.shape[0], outputs.numel()
    return {"mse": 1.0 / numel, "half_mse": 0.5 / numel,
            "sum_squared": 1.0 / n, "half_sum_squared": 0.5 / n}[name]


def _regression_targets(outputs: Tensor, targets: Tensor) -> Tensor:
    if targets.shape != outputs.shape:
        if targets.numel() != outputs.numel():
            raise ValueError(f"targets {tuple(targets.shape)} do not match outputs {tuple(outputs.shape)}")
        targets = targets.reshape(outputs.shape)        # e.g. (N,) targets for (N, 1) outputs
    return targets


def _check_logits(outputs: Tensor) -> None:
    if outputs.dim() != 2:
        raise ValueError(f"cross_entropy expects logits of shape (N, C), got {tuple(outputs.shape)}")


def log_softmax_classes(logits: Tensor) -> Tensor:
    """``log softmax`` over the classes (last dim) of (N, C) logits: ``torch.log_softmax(logits, -1)``.

    Same values up to rounding, computed along dim 0 of the transposed logits when C < 16 on the CPU:
    there torch's kernel along a short last dim takes a slow path whose cost grows with C (torch 2.13,
    float32, 1000 × 10 logits: about 115 µs, against 15 µs along dim 0 of a contiguous transpose;
    from C = 16 on the usual path is the faster one). Ten classes is the common case here, and SGN
    evaluates the loss twice per iteration.
    """
    if logits.dim() == 2 and logits.shape[-1] < 16 and logits.device.type == "cpu":
        return torch.log_softmax(logits.mT.contiguous(), dim=0).mT
    return torch.log_softmax(logits, dim=-1)


def _cross_entropy(outputs: Tensor, targets: Tensor) -> Tensor:
    """``F.cross_entropy`` (mean over the batch) through :func:`log_softmax_classes`."""
    log_s = log_softmax_classes(outputs)
    if targets.dim() == 1:                                                   # class indices
        return F.nll_loss(log_s, targets)
    return -(targets * log_s).sum(-1).mean()                                 # class probabilities


def loss_function(name: str) -> Callable[[Tensor, Tensor], Tensor]:
    """The scalar batch loss ``(outputs, targets) -> L`` under the convention ``name`` (see module doc).

    The same convention is used by every curvature product here, so a loss and its GGN always agree.
    """
    _check_loss(name)
    if name == "cross_entropy":
        def cross_entropy(outputs: Tensor, targets: Tensor) -> Tensor:
            _check_logits(outputs)
            return _cross_entropy(outputs, targets)
        return cross_entropy

    def squared_error(outputs: Tensor, targets: Tensor) -> Tensor:
        diff = outputs - _regression_targets(outputs, targets)
        if name == "mse":                              # exactly torch's mse_loss(reduction="mean")
            return diff.square().mean()
        return diff.square().sum() * _squared_scale(name, outputs)
    squared_error.__name__ = name
    return squared_error


def loss_derivatives(name: str, outputs: Tensor, targets: Tensor) -> LossDerivatives:
    """Loss value, dL/df and the product with d^2L/df^2, in closed form, at detached ``outputs``."""
    _check_loss(name)
    outputs = outputs.detach()
    if name == "cross_entropy":
        _check_logits(outputs)
        n = outputs.shape[0]
        log_s = log_softmax_classes(outputs)                                 # (N, C)
        s = log_s.exp()
        if targets.dim() == 1:                                               # class indices
            value = F.nll_loss(log_s, targets)                               # = loss_function's value
            gradient = s.clone()                                             # (s - onehot(y)) / N
            gradient.scatter_add_(1, targets[:, None], gradient.new_full((n, 1), -1.0)).div_(n)
            weight = None
        else:                                                                # class probabilities
            value = -(targets * log_s).sum(-1).mean()                        # = loss_function's value
            mass = targets.sum(-1, keepdim=True)                             # (N, 1), 1 for a distribution
            gradient = (s * mass - targets) / n
            weight = mass / n

        def hessian_product(v: Tensor) -> Tensor:
            # per sample (diag(s) - s s^T) v = s * v - s (s . v), times 1/N (times the target mass)
            sv = s * v
            hv = sv - s * sv.sum(-1, keepdim=True)
            return hv / n if weight is None else hv * weight
        return LossDerivatives(value, gradient, hessian_product)

    value = loss_function(name)(outputs, targets)
    targets = _regression_targets(outputs, targets)
    two_s = 2.0 * _squared_scale(name, outputs)
    gradient = (outputs - targets) * two_s
    return LossDerivatives(value, gradient, lambda v: v * two_s)


# --------------------------------------------------------------------------------------------------
# The functional view of a model
# --------------------------------------------------------------------------------------------------

def parameter_names(model: nn.Module) -> list[str]:
    """Names of the trainable parameters, in the order vectors use."""
    return [n for n, p in model.named_parameters() if p.requires_grad]


def _resolve_params(model: nn.Module, params: ParamsLike) -> tuple[list[str], Tensors]:
    names = parameter_names(model)
    if params is None:
        current = dict(model.named_parameters())
        return names, tuple(current[n].detach() for n in names)
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
    """``f(*params) -> outputs``: the model on ``inputs`` as a pure function of its trainable params."""
    names = list(parameter_names(model) if names is None else names)
    frozen = _frozen_state(model)
    inputs = _as_inputs(inputs)

    def f(*params: Tensor) -> Tensor:
        return functional_call(model, {**frozen, **dict(zip(names, params))}, inputs)
    return f


def _check_vector(vector: Sequence[Tensor], params: Tensors) -> Tensors:
    vector = tuple(vector)
    if len(vector) != len(params) or any(v.shape != p.shape for v, p in zip(vector, params)):
        raise ValueError("vector must be a sequence of tensors shaped like the trainable parameters")
    return vector


def _vjp(outputs: Tensor, leaves: Tensors, cotangent: Tensor) -> Tensors:
    """J^T w through the retained graph of ``outputs``."""
    return torch.autograd.grad(outputs, leaves, cotangent, retain_graph=True, allow_unused=True,
                               materialize_grads=True)


# --------------------------------------------------------------------------------------------------
# Trace once, split into a primal part (per point) and a tangent part (per product)
# --------------------------------------------------------------------------------------------------

aten = torch.ops.aten
_ZERO_SOURCES = {aten.zeros.default, aten.zeros_like.default, aten.new_zeros.default,
                 aten._efficientzerotensor.default}
_ZERO_IF_FIRST = {aten.expand.default, aten.view.default, aten._unsafe_view.default,
                  aten.reshape.default, aten.t.default, aten.transpose.int, aten.permute.default,
                  aten.alias.default, aten.unsqueeze.default, aten.squeeze.dim, aten.squeeze.default,
                  aten.clone.default, aten.neg.default, aten.detach.default}
_ZERO_IF_ANY = {aten.mm.default, aten.bmm.default, aten.mul.Tensor}


def _drop_zero_tangents(graph: torch.fx.Graph) -> None:
    """Remove work on tangents that are known to be zero (e.g. of the network input), and aliases.

    Forward-mode rules treat an input without tangent as a zero tensor and still multiply it
    (a full matmul or convolution on zeros for the first layer). Zero-valued nodes are tracked;
    ``a + zero`` is replaced by ``a`` when shapes and dtypes agree; dead code is then removed.
    """
    zero: set[torch.fx.Node] = set()

    def is_zero(a) -> bool:
        return isinstance(a, torch.fx.Node) and a in zero

    def replace(node: torch.fx.Node, keep) -> None:
        """Use ``keep`` (broadcast to the shape of ``node`` if needed) in place of ``node``."""
        if not isinstance(keep, torch.fx.Node):
            return
        vk, vn = keep.meta.get("val"), node.meta.get("val")
        if not (isinstance(vk, Tensor) and isinstance(vn, Tensor)) or vk.dtype != vn.dtype:
            return
        if vk.shape != vn.shape:
            if torch.broadcast_shapes(vk.shape, vn.shape) != vn.shape or any(
                    getattr(getattr(u.target, "_schema", None), "is_mutable", False) for u in node.users):
                return                                    # no in-place op may see an expanded view
            with graph.inserting_before(node):
                keep = graph.call_function(aten.expand.default, (keep, list(vn.shape)))
                keep.meta["val"] = vn
        node.replace_all_uses_with(keep)

    for node in list(graph.nodes):
        if node.op != "call_function":
            continue
        t, args = node.target, node.args
        if t == aten.alias.default and isinstance(args[0], torch.fx.Node) and not any(
                getattr(getattr(u.target, "_schema", None), "is_mutable", False) for u in node.users):
            node.replace_all_uses_with(args[0])           # an alias is its input (no op needed)
            continue
        if t in _ZERO_SOURCES or (t in _ZERO_IF_FIRST and is_zero(args[0])) \
                or (t in _ZERO_IF_ANY and any(is_zero(a) for a in args[:2])):
            zero.add(node)
        elif t == aten.convolution.default and args[2] is None and (is_zero(args[0]) or is_zero(args[1])):
            zero.add(node)
        elif t in (aten.add.Tensor, aten.sub.Tensor) and not node.kwargs:
            a, b = args[0], args[1]
            if is_zero(b):
                replace(node, a)
            elif t == aten.add.Tensor and is_zero(a):
                replace(node, b)
    graph.eliminate_dead_code()


# Ops whose value is linear in their first argument alone (views, copies, negation, scalar scaling).
_LINEAR_IN_FIRST = _ZERO_IF_FIRST | {aten.mul.Scalar, aten.div.Scalar}
_CONST, _PARAM, _AFFINE, _OTHER = "const", "param", "affine", "other"


def _affine_kinds(graph: torch.fx.Graph, param_nodes: set, data_nodes: set) -> dict:
    """Classify each node of the primal trace as a function of (params, data).

    ``const``: depends on data only; ``param``: an affine function of the parameters alone (views,
    sums, scalings); ``affine``: affine in the parameters with data-dependent coefficients, such as
    the first layer's ``x W^T + b`` or ``conv(x, W) + b``; ``other``: anything else (after a
    nonlinearity, or a product of two parameter-dependent factors). Only ``affine`` nodes can be
    moved along a line exactly by ``value(theta + s d) = value(theta) + s * (tangent along d)``.
    The rules are conservative; every candidate is also checked numerically before use.
    """
    kind: dict = {}

    def k(a):
        return kind.get(a, _CONST) if isinstance(a, torch.fx.Node) else _CONST

    for node in graph.nodes:
        if node.op == "placeholder":
            kind[node] = _PARAM if node in param_nodes else _CONST if node in data_nodes else _OTHER
            continue
        if node.op != "call_function":                   # get_attr: a constant of the trace
            kind[node] = _CONST if node.op == "get_attr" else _OTHER
            continue
        t, args = node.target, node.args
        tensor_args = node.all_input_nodes
        kinds = {k(a) for a in tensor_args}
        if kinds <= {_CONST}:
            kind[node] = _CONST
        elif t in _LINEAR_IN_FIRST:
            kind[node] = k(args[0]) if all(a is args[0] for a in tensor_args) else _OTHER
        elif t in (aten.add.Tensor, aten.sub.Tensor):
            kind[node] = _OTHER if _OTHER in kinds else _AFFINE if _AFFINE in kinds or _CONST in kinds \
                else _PARAM
        elif t in (aten.mm.default, aten.bmm.default, aten.mul.Tensor):
            a, b = k(args[0]), k(args[1])
            kind[node] = _AFFINE if {a, b} in ({_CONST, _PARAM}, {_CONST, _AFFINE}) else _OTHER
        elif t == aten.addmm.default:
            c, a, b = k(args[0]), k(args[1]), k(args[2])
            product = _AFFINE if {a, b} in ({_CONST, _PARAM}, {_CONST, _AFFINE}) else \
                _CONST if a == b == _CONST else _OTHER
            kind[node] = _OTHER if _OTHER in (c, product) else _AFFINE
        elif t == aten.convolution.default:
            x, w, bias = k(args[0]), k(args[1]), k(args[2])
            ok = x == _CONST and w in (_PARAM, _AFFINE) and bias in (_CONST, _PARAM, _AFFINE)
            kind[node] = _AFFINE if ok else _OTHER
        else:
            kind[node] = _OTHER
    return kind


def _is_pure(node: torch.fx.Node) -> bool:
    """No mutation and no random numbers: the node can be re-run, or skipped, freely."""
    if node.op != "call_function":
        return True
    target = node.target
    schema = getattr(target, "_schema", None)
    if schema is not None and schema.is_mutable:
        return False
    return torch.Tag.nondeterministic_seeded not in getattr(target, "tags", ())


def _run(gm: torch.fx.GraphModule, args: Sequence[Tensor]) -> dict:
    """Every node's value for one evaluation of ``gm`` (build time only)."""
    env: dict = {}

    class Recorder(torch.fx.Interpreter):
        def run_node(self, n):
            env[n] = super().run_node(n)
            return env[n]

    with torch.no_grad():
        Recorder(gm).run(*args)
    return env


class _SplitLinearization:
    """Graph modules cut from one trace of the forward-mode linearisation:

    - ``primal(*params, *frozen, *inputs) -> (outputs, boundary, frontier)``;
    - ``tangent(*boundary, *tangents) -> J tangents``;
    - ``tangent_line(*boundary, *tangents) -> (J tangents, frontier tangents)``;
    - ``trial(*params, *frozen, *inputs, *frontier) -> outputs``, or None.

    The *frontier* (often just the first layer's ``x W^T + b``) are the intermediate values that are
    affine in the parameters and feed nonlinear work. Along a line theta + s d they move exactly as
    ``value + s * (their tangent along d)``, and the tangent pass computes those tangents anyway. So
    the network at a trial point of a line search costs the ``trial`` graph, which starts from the
    moved frontier and skips the first layer's matmul or convolution (for an MNIST MLP, the widest
    layer by far). Each frontier node is paired with its tangent node and checked numerically at
    build time; nodes that fail the check are left out.
    """

    def __init__(self, model: nn.Module, names: list[str], frozen_names: list[str],
                 example: Tensors, n_inputs: int):
        from torch.fx.experimental.proxy_tensor import make_fx
        n_p, n_f = len(names), len(frozen_names)

        def linearized(*args: Tensor):
            params, frozen = args[:n_p], args[n_p:n_p + n_f]
            inputs, tangents = args[n_p + n_f:n_p + n_f + n_inputs], args[n_p + n_f + n_inputs:]
            with fwAD.dual_level():
                duals = {n: fwAD.make_dual(p, t) for n, p, t in zip(names, params, tangents)}
                out = functional_call(model, {**dict(zip(frozen_names, frozen)), **duals}, inputs)
                primal, tangent = fwAD.unpack_dual(out)
                if tangent is None:                       # output does not depend on the params
                    tangent = torch.zeros_like(primal)
            return primal, tangent

        tangents = tuple(torch.zeros_like(p) for p in example[:n_p])
        # Fake tensors: no compute, and data-dependent Python control flow raises instead of being
        # baked into the graph (the caller then falls back to eager products).
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=DeprecationWarning)
            gm = make_fx(linearized, tracing_mode="fake")(*example, *tangents)
        graph = gm.graph
        _drop_zero_tangents(graph)

        placeholders = [n for n in graph.nodes if n.op == "placeholder"]
        tangent_inputs = placeholders[len(example):]
        in_tangent = set(tangent_inputs)                  # nodes that depend on the tangents
        for node in graph.nodes:
            if node.op not in ("placeholder", "output") and any(a in in_tangent for a in node.all_input_nodes):
                in_tangent.add(node)
        output = next(n for n in graph.nodes if n.op == "output")
        primal_out, tangent_out = output.args[0]
        boundary = [n for n in graph.nodes if n not in in_tangent and n.op != "output"
                    and any(u in in_tangent for u in n.users)]
        if tangent_out not in in_tangent and tangent_out not in boundary:
            boundary.append(tangent_out)                  # J = 0: the zero output comes from the primal

        primal_graph, env = torch.fx.Graph(), {}
        for node in graph.nodes:
            if node.op == "output" or node in in_tangent:
                continue
            env[node] = primal_graph.node_copy(node, lambda a: env[a])
        frontier, frontier_tangents = self._pair_frontier(gm, graph, example, n_p, in_tangent, primal_out)
        primal_graph.output((env[primal_out], tuple(env[b] for b in boundary),
                             tuple(env[f] for f in frontier)))

        def tangent_part(extra: list) -> torch.fx.Graph:
            """The nodes that depend on the tangents; returns J v (and the ``extra`` nodes' values)."""
            g, tenv = torch.fx.Graph(), {}
            for b in boundary:
                tenv[b] = g.placeholder(f"boundary_{b.name}")
            for node in graph.nodes:
                if node in in_tangent:
                    tenv[node] = g.node_copy(node, lambda a: tenv[a])
            g.output((tenv[tangent_out], tuple(tenv[q] for q in extra)) if extra is not None else tenv[tangent_out])
            return g

        tangent_graph, line_graph = tangent_part(None), tangent_part(frontier_tangents)

        trial_graph = None
        if frontier:
            trial_graph, renv = torch.fx.Graph(), {}
            for node in graph.nodes:                      # the primal placeholders first, in order
                if node.op == "placeholder" and node not in in_tangent:
                    renv[node] = trial_graph.node_copy(node, lambda a: renv[a])
            for i, f in enumerate(frontier):
                renv[f] = trial_graph.placeholder(f"frontier_{i}")
            for node in graph.nodes:
                if node.op in ("placeholder", "output") or node in in_tangent or node in renv:
                    continue
                renv[node] = trial_graph.node_copy(node, lambda a: renv[a])
            trial_graph.output(renv[primal_out])

        graphs = [g for g in (primal_graph, tangent_graph, line_graph, trial_graph) if g is not None]
        for g in graphs:
            g.eliminate_dead_code()
            for node in g.nodes:                          # do not keep trace-time tensors alive
                node.meta.pop("val", None)
                node.meta.pop("tensor_meta", None)
        self.primal = torch.fx.GraphModule(gm, primal_graph)
        self.tangent = torch.fx.GraphModule(gm, tangent_graph)
        self.tangent_line = torch.fx.GraphModule(gm, line_graph)
        self.trial = torch.fx.GraphModule(gm, trial_graph) if trial_graph is not None else None
        self.n_boundary = len(boundary)
        self.n_frontier = len(frontier)

    @staticmethod
    def _pair_frontier(gm: torch.fx.GraphModule, graph: torch.fx.Graph, example: Tensors, n_p: int,
                       in_tangent: set, primal_out: torch.fx.Node) -> tuple[list, list]:
        """Frontier nodes of the primal part and, for each, the tangent node that carries its tangent.

        Candidates come from :func:`_affine_kinds`. A pair (P, Q) is kept when, at the example point
        theta and a random direction d, ``P(theta + d) - P(theta)`` and ``P(theta + 2 d) - P(theta)``
        equal ``Q(d)`` and ``2 Q(d)`` (affinity and pairing both checked). Models with in-place or
        random ops get no frontier: skipping part of them could change what they compute.
        """
        nodes = list(graph.nodes)
        placeholders = [n for n in nodes if n.op == "placeholder"]
        params, data = set(placeholders[:n_p]), set(placeholders[n_p:len(example)])
        if not all(_is_pure(n) for n in nodes):
            return [], []
        kind = _affine_kinds(graph, params, data)
        frontier = [n for n in nodes if n not in in_tangent and kind.get(n) == _AFFINE
                    and (n is primal_out or any(kind.get(u) == _OTHER for u in n.users if u not in in_tangent))]
        if not frontier:
            return [], []
        gen = torch.Generator().manual_seed(0)                # a local generator: global RNG untouched
        point = list(example)
        direction = [torch.randn(p.shape, generator=gen, dtype=p.dtype).to(p.device)
                     * (float(p.detach().abs().mean()) + 0.1) for p in example[:n_p]]
        try:
            at = [_run(gm, [*[p + c * d for p, d in zip(point[:n_p], direction)], *point[n_p:], *direction])
                  for c in (0.0, 1.0, 2.0)]
        except Exception:                                 # e.g. an op without a real kernel here
            return [], []
        candidates = [q for q in nodes if q in in_tangent and q.op == "call_function"]
        kept, tangents = [], []
        for f in frontier:
            v0, v1, v2 = (at[i].get(f) for i in range(3))
            if not all(isinstance(v, Tensor) for v in (v0, v1, v2)):
                continue
            diff, scale = v1 - v0, float(v0.abs().max() + (v1 - v0).abs().max()) + 1e-30
            tol = 1e-4 * scale if v0.dtype == torch.float64 else 2e-3 * scale
            if not float((v2 - v0 - 2 * diff).abs().max()) <= 2 * tol:
                continue                                  # not affine after all
            for q in candidates:
                vq = at[0].get(q)
                if isinstance(vq, Tensor) and vq.shape == diff.shape and vq.dtype == diff.dtype \
                        and float((vq - diff).abs().max()) <= tol:
                    kept.append(f)
                    tangents.append(q)
                    break
        return kept, tangents


# model -> {signature: _SplitLinearization}; entries vanish with the model.
_TRACE_CACHE: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()
_TRACE_FAILED: "weakref.WeakSet[nn.Module]" = weakref.WeakSet()


def clear_trace_cache(model: nn.Module | None = None) -> None:
    """Forget traced linearisations (of one model, or all). Needed only if a model's code changes."""
    if model is None:
        _TRACE_CACHE.clear()
    else:
        _TRACE_CACHE.pop(model, None)
        _TRACE_FAILED.discard(model)


def _signature(tensors: Sequence[Tensor]) -> tuple:
    return tuple((tuple(t.shape), t.dtype, t.device) for t in tensors)


def _split_linearization(model: nn.Module, names: list[str], frozen: dict[str, Tensor],
                         params: Tensors, inputs: Tensors) -> _SplitLinearization | None:
    """The cached split trace for this model and these shapes, or None if tracing is impossible."""
    if model in _TRACE_FAILED:
        return None
    frozen_names = list(frozen)
    key = (model.training, tuple(names), tuple(frozen_names), _signature(params),
           _signature(list(frozen.values())), _signature(inputs))
    per_model = _TRACE_CACHE.setdefault(model, {})
    if key not in per_model:
        # fresh tensors (not views of a larger buffer): only their metadata enters the trace
        example = tuple(t.detach().clone() for t in (*params, *frozen.values(), *inputs))
        try:
            per_model[key] = _SplitLinearization(model, names, frozen_names, example, len(inputs))
        except Exception as err:                          # data-dependent control flow, exotic ops
            warnings.warn(f"could not trace the linearisation of {type(model).__name__} "
                          f"({type(err).__name__}: {err}); falling back to method='jvp'", stacklevel=3)
            _TRACE_FAILED.add(model)
            return None
    return per_model[key]


# --------------------------------------------------------------------------------------------------
# The GGN at one point, for many products
# --------------------------------------------------------------------------------------------------

class GGNOperator:
    """The GGN ``G = J^T H_L J`` of ``loss`` at one point (params, inputs, targets), for many products.

    One construction runs the network forward once, keeping what the products need; ``loss``,
    ``outputs`` and ``gradient`` (``g = J^T dL/df``, computed on first access) come from the same pass.
    Each ``op(v)`` then costs one forward-mode tangent pass and one backward pass.

    Args:
        model: the network; it is called through ``torch.func.functional_call`` and never modified.
        loss: a name from ``LOSSES`` (conventions in the module docstring).
        inputs: a tensor, or a tuple of tensors passed positionally to the model.
        targets: class indices / probabilities (``cross_entropy``) or regression targets.
        params: the point, as tensors in ``parameter_names(model)`` order or a name -> tensor mapping;
            default: the model's current parameters.
        method: ``"traced"`` (default), ``"jvp"`` or ``"double_backward"``; see the module docstring.
            ``"traced"`` falls back to ``"jvp"`` (with a warning) for models ``make_fx`` cannot trace.

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
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        self.names, point = _resolve_params(model, params)
        self.params: Tensors = tuple(p.detach() for p in point)
        inputs = _as_inputs(inputs)
        frozen = _frozen_state(model)
        split = _split_linearization(model, self.names, frozen, self.params, inputs) \
            if method == "traced" else None
        self.method = "jvp" if method == "traced" and split is None else method
        self._gradient: Tensors | None = None
        self._trial = split.trial if split is not None else None
        self._trial_args = (tuple(frozen.values()), inputs)
        self._model = model
        self._frontier: Tensors = ()
        self._frontier_step: list[Tensor] | None = None       # sum_k a_k (tangent of v_k) at the frontier
        self._last_frontier: Tensors | None = None

        with torch.enable_grad():
            if self.method == "jvp":
                self._f = model_function(model, inputs, self.names)
                outputs, self._vjp_fn = torch.func.vjp(self._f, *self.params)
            else:
                self._leaves = tuple(p.detach().requires_grad_(True) for p in self.params)
                if self.method == "traced":
                    outputs, boundary, frontier = split.primal(*self._leaves, *frozen.values(), *inputs)
                    self._boundary = tuple(b.detach() for b in boundary)
                    self._frontier = tuple(f.detach() for f in frontier)
                    self._tangent = split.tangent_line if self._trial is not None else split.tangent
                else:
                    outputs = model_function(model, inputs, self.names)(*self._leaves)
            self._graph_outputs = outputs
            self.outputs = outputs.detach()
            derivatives = loss_derivatives(loss, self.outputs, targets)
            self.loss: Tensor = derivatives.value
            self._output_gradient = derivatives.gradient
            self._hessian_product = derivatives.hessian_product
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
                if self._trial is None:
                    return self._tangent(*self._boundary, *vector)
                jv, self._last_frontier = self._tangent(*self._boundary, *vector)
                return jv
        if self.method == "jvp":
            return torch.func.jvp(self._f, self.params, vector)[1]
        if not self._jtu:
            return torch.zeros_like(self.outputs)
        with torch.enable_grad():
            return torch.autograd.grad(self._jtu, self._u, [vector[i] for i in self._jtu_index],
                                       retain_graph=True)[0]

    def vector_jacobian_product(self, cotangent: Tensor) -> Tensors:
        """``J^T w`` for ``w`` shaped like the outputs."""
        if self.method == "jvp":
            return tuple(self._vjp_fn(cotangent))
        with torch.enable_grad():
            return _vjp(self._graph_outputs, self._leaves, cotangent)

    def __call__(self, vector: Sequence[Tensor]) -> Tensors:
        """``G v = J^T (H_L (J v))``."""
        jv = self.jacobian_vector_product(vector)                  # (N, C)
        return self.vector_jacobian_product(self._hessian_product(jv))

    matvec = __call__

    # ------------------------------------------------------------------ outputs along a line
    @property
    def has_line_shortcut(self) -> bool:
        """Whether :meth:`outputs_on_line` skips the affine first layers (traced method, pure model)."""
        return self._trial is not None

    def record_step(self, a: float) -> None:
        """Note that the line's direction moved by ``a`` times the vector of the most recent product.

        Pass it as ``conjugate_gradient(..., on_step=op.record_step)``: then the direction
        ``Delta = sum_k a_k v_k`` of the CG solution is known at the frontier without a product.
        A no-op without the shortcut.
        """
        if self._trial is None:
            return
        if self._last_frontier is None:
            raise RuntimeError("record_step needs a product first (it refers to the last vector applied)")
        if self._frontier_step is None:
            self._frontier_step = torch._foreach_mul(list(self._last_frontier), a)
        else:
            torch._foreach_add_(self._frontier_step, list(self._last_frontier), alpha=a)
        self._last_frontier = None                        # recorded; do not hold it (conv: batch-sized)

    def outputs_on_line(self, params: Sequence[Tensor], s: float) -> Tensor:
        """Network outputs at ``params = theta + s * Delta``, ``Delta`` the recorded direction.

        ``params`` must be that point (in ``parameter_names`` order); ``Delta = sum_k a_k v_k`` from
        :meth:`record_step` (zero if nothing was recorded). With the shortcut, the frontier values
        (first layers, affine in theta) are ``value(theta) + s * sum_k a_k (J_frontier v_k)``, exact up
        to round-off, and the rest of the network runs on ``params``; otherwise the whole network
        runs on ``params``. No autograd graph is built.
        """
        params = tuple(params)
        frozen, inputs = self._trial_args
        with torch.no_grad():
            if self._trial is None:
                return model_function(self._model, inputs, self.names)(*params)
            if self._frontier_step is None:
                moved = self._frontier
            else:
                moved = torch._foreach_add(list(self._frontier), self._frontier_step, alpha=s)
            return self._trial(*params, *frozen, *inputs, *moved)


def ggn_vector_product(model: nn.Module, loss: str, inputs: InputsLike, targets: Tensor,
                       vector: Sequence[Tensor], params: ParamsLike = None, method: str = "traced") -> Tensors:
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
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method != "jvp":
        return GGNOperator(model, loss, inputs, targets, params=params, method=method)(vector)
    names, point = _resolve_params(model, params)
    vector = _check_vector(vector, point)
    f = model_function(model, inputs, names)
    leaves = tuple(p.detach().requires_grad_(True) for p in point)
    with torch.enable_grad():
        outputs, jv = torch.func.jvp(f, leaves, vector)
        w = loss_derivatives(loss, outputs, targets).hessian_product(jv.detach())
        return torch.autograd.grad(outputs, leaves, w, allow_unused=True, materialize_grads=True)


def hessian_vector_product(model: nn.Module, loss: str, inputs: InputsLike, targets: Tensor,
                           vector: Sequence[Tensor], params: ParamsLike = None) -> Tensors:
    """``H v`` of the batch loss, by forward-over-reverse (``jvp`` of ``torch.func.grad``)."""
    names, point = _resolve_params(model, params)
    vector = _check_vector(vector, point)
    f, loss_fn = model_function(model, inputs, names), loss_function(loss)

    def batch_loss(*p: Tensor) -> Tensor:
        return loss_fn(f(*p), targets)
    gradient = torch.func.grad(batch_loss, argnums=tuple(range(len(point))))
    return tuple(torch.func.jvp(gradient, tuple(p.detach() for p in point), vector)[1])
