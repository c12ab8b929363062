"""The traced forward-mode linearisation of a model, split into a per-point and a per-product part.

Contract. For a model ``m``, trainable-parameter names ``names``, frozen state (buffers and frozen
parameters) and inputs of fixed shapes, :func:`split_linearization` returns a cached
:class:`SplitLinearization` (or ``None`` when the model cannot be traced: data-dependent Python
control flow, exotic ops; a warning is issued once per model). Its graph modules compute, with
``theta`` the parameters, ``f`` the network and ``J = df/dtheta``:

- ``primal(*theta, *frozen, *inputs) -> (f(theta), boundary, frontier)``: run once per point, under
  autograd if the caller wants ``J^T`` by backward through ``f(theta)``; ``boundary`` are the
  intermediate values the tangent part reads (detach them before use);
- ``tangent(*boundary, *v) -> J v``: run once per product, with no re-run of the primal network;
- ``tangent_line(*boundary, *v) -> (J v, frontier tangents along v)``;
- ``trial(*theta', *frozen, *inputs, *frontier') -> f(theta')`` (or ``None``), where ``frontier'``
  are the frontier values at ``theta'``: the network from the moved frontier on.

The *frontier* are intermediate values affine in theta whose users are nonlinear (often just the
first layer's ``x W^T + b``). Along a line ``theta + s d`` they move exactly as ``value + s * (their
tangent along d)``, so a line search can skip the first layer (``curvlab._line_search``).

Guarantees: the products equal ``torch.func.jvp`` of the network up to round-off (the trace records
the same aten ops, minus work on zero tangents and aliases, see :func:`_drop_zero_tangents`); the
trace is taken inside :func:`curvlab._exact.exact_derivatives`, so layers with modified gradients
contribute their true derivatives; frontier nodes are paired with their tangents and checked
numerically at build time, and models with in-place or random ops get no frontier. Tracing runs on
fake tensors (0.1-1 s once per model, mode and input shape); the cache key holds the training mode
and every tensor's shape, dtype and device, and entries vanish with the model. A model whose code
changes must be forgotten with :func:`clear_trace_cache`.
"""
from __future__ import annotations

import warnings
import weakref
from typing import Sequence

import torch
import torch.autograd.forward_ad as fwAD
from torch import Tensor, nn
from torch.func import functional_call

from ._exact import exact_derivatives

__all__ = ["SplitLinearization", "split_linearization", "clear_trace_cache"]

Tensors = tuple[Tensor, ...]

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


class SplitLinearization:
    """Graph modules cut from one trace of the forward-mode linearisation.

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
            with exact_derivatives():                     # the network function's true derivatives
                gm = make_fx(linearized, tracing_mode="fake")(*example, *tangents)
        graph = gm.graph
        _drop_zero_tangents(graph)

        placeholders = [n for n in graph.nodes if n.op == "placeholder"]
        tangent_inputs = placeholders[len(example):]
        in_tangent = set(tangent_inputs)                  # nodes that depend on the tangents
        for node in graph.nodes:
            if node.op not in ("placeholder", "output") \
                    and any(a in in_tangent for a in node.all_input_nodes):
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
            g.output((tenv[tangent_out], tuple(tenv[q] for q in extra)) if extra is not None
                     else tenv[tangent_out])
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
                    and (n is primal_out
                         or any(kind.get(u) == _OTHER for u in n.users if u not in in_tangent))]
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


# model -> {signature: SplitLinearization}; entries vanish with the model.
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
    return tuple((t.shape, t.dtype, t.device) for t in tensors)      # torch.Size is a hashable tuple


def split_linearization(model: nn.Module, names: list[str], frozen: dict[str, Tensor],
                         params: Tensors, inputs: Tensors) -> SplitLinearization | None:
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
            per_model[key] = SplitLinearization(model, names, frozen_names, example, len(inputs))
        except Exception as err:                          # data-dependent control flow, exotic ops
            warnings.warn(f"could not trace the linearisation of {type(model).__name__} "
                          f"({type(err).__name__}: {err}); falling back to method='jvp'", stacklevel=3)
            _TRACE_FAILED.add(model)
            return None
    return per_model[key]

