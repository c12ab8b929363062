r"""The order-2 and order-3 summaries of GroupedNewton: derivatives of the loss restricted to S rates.

With the parameters split into groups T_1..T_S (:mod:`curvlab.grouped_newton_partition`) and a
direction u (one tensor per parameter, ``{name: tensor}``), the step theta_s <- theta_s - eta_s u_s
turns the batch loss into a function of S scalars,

.. math::

    \phi(\eta) = L(\theta - \textstyle\sum_s \eta_s u_s),

whose derivatives at eta = 0 are the summaries (u_s is u restricted to T_s, zero elsewhere):

* ``g``:  g_bar_s = -d phi / d eta_s = <grad_{T_s} L, u_s>,
* ``H``:  H_bar_st = d^2 phi / d eta_s d eta_t = u_s^T (nabla^2 L) u_t, the exact S x S restriction of
  the Hessian (symmetric, possibly indefinite; not a Gauss-Newton matrix),
* ``d3``: D3_s = nabla^3 L [u_s, u_s, u_s] = -d^3 phi / d eta_s^3, the diagonal of the order-3 tensor
  (GroupedNewton's cubic regulariser uses D_s = |D3_s|^(1/3)).

Second-order model: phi(eta) - phi(0) ~ -g_bar^T eta + eta^T H_bar eta / 2, minimised by the Newton
summary eta = H_bar^{-1} g_bar.

Three routes compute the same numbers (in float64 they agree to round-off):

* ``"nested"``: the reference's nested reverse mode, written faithfully as the cost baseline. One
  forward pass; one backward pass with ``create_graph=True`` gives grad L, contracted per group with u
  into g_bar (still attached to the graph); for s = 1..S, g_bar_s is differentiated with respect to the
  parameters of groups s..S only and contracted with u (row s of H_bar from the diagonal on, mirrored);
  then for s = 1..S, H_bar_ss is differentiated with respect to group s and contracted with u_s (D3_s).
  1 forward + 1 backward + 2S higher-order backward passes.
* ``"func"``: ``torch.func`` on phi itself, built with ``functional_call`` at theta - sum eta_s u_s:
  H_bar = ``hessian(phi)(0)`` (forward-over-reverse, vmapped), D3_s by three nested ``jvp`` along e_s.
  Short and transparent, for exposition and tests; far slower.
* ``"auto"`` (default): reverse mode on phi with the rates as S scalar leaves, which is the nested
  route's pass structure with three savings (``benchmarks/grouped_newton.py`` measures them):

  1. *Linear layers as tangents.* ``nn.Linear`` and ``nn.Conv*d`` are linear in their weight, so
     layer(x; W - eta_W u_W, b - eta_b u_b) = layer(x; W, b) - eta_W layer(x; u_W) - eta_b u_b exactly.
     Where the layer's input does not depend on eta (the first layer, on data), the right-hand side
     makes the rates enter as fixed tangents: every derivative with respect to eta_W becomes an
     elementwise contraction with layer(x; u_W), computed once, instead of a weight-gradient product
     (x^T delta) in every one of the 2S + 1 backward passes. Elsewhere the layer runs on the moved
     parameters, as in the nested route: there the tangent form trades each weight-gradient product
     for an input-gradient one through layer(x; u_W) and was measured slower (1 thread, CPU time of
     one call in gradients: MLP 4.6 against 4.2, LeNet-5 6.4 against 5.3).
  2. *Contraction inside the graph.* The derivative with respect to the leaf eta_s is already the
     contraction with u_s, so no parameter-sized gradient is materialised for the higher passes.
  3. *Shrinking sets, interleaved.* Row s differentiates only with respect to eta_t for groups t at or
     after s in the model's order (autograd prunes every layer before them), and D3_s follows row s
     from the same graph (D3_s = -d H_bar_ss / d eta_s), so each graph is dropped as soon as it has
     been used. Quantities that do not depend on eta (e.g. H_bar_ss of a last linear layer under a
     squared loss, whose D3_s is 0) are returned as zeros without a pass.

  Tensors tied between layers are moved as ordinary parameters; a tensor also read outside its
  layer's ``forward`` (a penalty on the weight, say) is detected (the loss's graph reaches the stand-in
  passed for it) and phi is rebuilt without the rewrite, so the result is always phi's derivatives.
  Measured (``benchmarks/grouped_newton.py``, 1 thread, CPU time): about 0.75-0.8x the nested route
  on the MNIST MLP 784-1024-200-100-10 and on LeNet-5, with or without order 3.

Every route evaluates the model through ``functional_call`` on detached copies inside
:func:`curvlab._exact.exact_derivatives` (layers with modified gradients contribute their true
derivatives); the model's parameters, ``.grad`` fields and buffers are left exactly as they were.
BatchNorm layers in training mode normalise with the batch statistics, which is what phi means on that
batch, and their running statistics are not updated. BatchNorm (training mode) and LayerNorm are
evaluated from primitives, because torch's fused kernels give wrong third derivatives
(:func:`_composite_norm`). The model must be deterministic (no dropout in training mode).
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator, NamedTuple, Sequence, Union

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.utils import parametrize

from ._exact import exact_derivatives
from .grouped_newton_partition import (
    Partition,
    PartitionLike,
    group_direction,
    make_partition,
    trainable_parameters,
)
from .losses import LOSSES, loss_function

__all__ = ["ROUTES", "Summaries", "summaries", "restricted_loss"]

ROUTES = ("auto", "nested", "func")

InputsLike = Union[Tensor, Sequence[Tensor]]
LossLike = Union[str, Callable[[Tensor, Tensor], Tensor]]


class Summaries(NamedTuple):
    """Derivatives of phi(eta) = L(theta - sum_s eta_s u_s) at eta = 0 (module docstring).

    All detached, in the model's dtype and on its device, groups in the partition's order.
    """

    g: Tensor      # (S,)   g_bar_s = -d phi/d eta_s = <grad_{T_s} L, u_s>
    H: Tensor      # (S, S) H_bar_st = d^2 phi/d eta_s d eta_t (diagonal only if diagonal=True)
    d3: Tensor     # (S,)   D3_s = -d^3 phi/d eta_s^3 (zeros if order3=False)
    loss: Tensor   # ()     L(theta) on the batch


# --------------------------------------------------------------------------------------------------
# The problem: phi's ingredients, validated once
# --------------------------------------------------------------------------------------------------

class _Problem:
    """Model, loss, batch, partition and direction of one call, checked and arranged by group."""

    def __init__(self, model: nn.Module, loss: LossLike, inputs: InputsLike, targets: Tensor,
                 direction, partition: PartitionLike):
        if isinstance(loss, str):
            if loss not in LOSSES:
                raise ValueError(f"loss must be one of {LOSSES} or a callable, got {loss!r}")
            self.loss_fn = loss_function(loss)
        elif callable(loss):
            self.loss_fn = loss
        else:
            raise ValueError(f"loss must be one of {LOSSES} or a callable, got {loss!r}")
        self.model = model
        self.partition: Partition = make_partition(model, partition)
        params = trainable_parameters(model)
        grouped = group_direction(self.partition, params, direction)
        self.names: list[str] = list(self.partition.parameters)
        self.group = {n: s for s, g in enumerate(self.partition.names) for n in g}
        self.point = {n: params[n].detach() for n in self.names}
        # the direction in each parameter's dtype and device (a no-op when they already match)
        self.u = {n: t.detach().to(dtype=self.point[n].dtype, device=self.point[n].device)
                  for g, ts in zip(self.partition.names, grouped) for n, t in zip(g, ts)}
        self.inputs = (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)
        self.targets = targets
        first = self.point[self.names[0]]
        self.dtype, self.device = first.dtype, first.device
        # model order of the groups: the first registered parameter of each (forward order for the
        # usual modules); rows over "this group and later ones" then skip the early layers
        position = {n: i for i, n in enumerate(params)}
        self.order = sorted(range(self.partition.size),
                            key=lambda s: min(position[n] for n in self.partition.names[s]))

    @property
    def size(self) -> int:
        return self.partition.size

    def loss_at(self, params: dict[str, Tensor]) -> Tensor:
        """L at the given parameter tensors (others as in the model), in the summary mode."""
        with exact_derivatives():
            outputs = functional_call(self.model, params, self.inputs)
        value = self.loss_fn(outputs, self.targets)
        if not (isinstance(value, Tensor) and value.dim() == 0):
            raise ValueError("loss must return a 0-d tensor")
        return value

    def zeros(self, *shape: int) -> Tensor:
        return torch.zeros(*shape, dtype=self.dtype, device=self.device)

    def moved(self, eta, names: Sequence[str] | None = None) -> dict[str, Tensor]:
        """The moved tensors theta_p - eta_s u_p of the grouped parameters p (in group s), default all.

        Written theta_p + u_p (-eta_s): the backward pass of a sum passes the gradient through, where a
        difference would negate a parameter-sized tensor in every pass (the negation is on a scalar).
        """
        names = self.names if names is None else names
        return {n: self.point[n] + self.u[n] * -eta[self.group[n]] for n in names}


def _normalise(x: Tensor, dims: Sequence[int], eps: float) -> Tensor:
    """(x - mean) / sqrt(var + eps) over ``dims`` (population variance), from differentiable primitives."""
    mean = x.mean(dim=tuple(dims), keepdim=True)
    centred = x - mean
    var = centred.square().mean(dim=tuple(dims), keepdim=True)
    return centred * torch.rsqrt(var + eps)


def _affine(y: Tensor, m: nn.Module, shape: Sequence[int]) -> Tensor:
    if m.weight is not None:
        y = y * m.weight.reshape(shape)
    if m.bias is not None:
        y = y + m.bias.reshape(shape)
    return y


def _composite_norm(m: nn.Module) -> Callable[[Tensor], Tensor] | None:
    """A normalisation layer's forward from primitives, where its fused kernel's derivatives are not exact.

    The fused ``native_batch_norm`` (training statistics) and ``native_layer_norm`` give correct
    derivatives up to order 2 only: their double backward treats the saved mean and inverse deviation
    as constants, so a third derivative through them is silently wrong (pytorch/pytorch#186256,
    #175754; torch 2.13, a Conv-BatchNorm net: D3 of the conv weight -890 instead of -1188), and
    torch.func's forward-over-reverse Hessian through batch norm is wrong as well (#196699). Written out
    as mean, variance and affine map, every derivative is exact. (``group_norm`` is exact as it is.)
    The weight and bias are read at call time, so ``functional_call`` substitutes them as usual.
    """
    kind = type(m).forward
    if kind is nn.modules.batchnorm._BatchNorm.forward:     # BatchNorm1d/2d/3d
        if not (m.training or (m.running_mean is None and m.running_var is None)):
            return None                                      # eval mode: an affine map, exact as it is

        def batch_norm(x: Tensor, m=m) -> Tensor:
            m._check_input_dim(x)
            shape = [1, -1] + [1] * (x.dim() - 2)
            return _affine(_normalise(x, [0, *range(2, x.dim())], m.eps), m, shape)
        return batch_norm
    if kind is nn.LayerNorm.forward:
        def layer_norm(x: Tensor, m=m) -> Tensor:
            k = len(m.normalized_shape)
            return _affine(_normalise(x, range(x.dim() - k, x.dim()), m.eps), m, m.normalized_shape)
        return layer_norm
    return None


@contextlib.contextmanager
def _summary_mode(model: nn.Module) -> Iterator[None]:
    """Grad enabled; normalisation layers computed from primitives (:func:`_composite_norm`).

    A training-mode BatchNorm then normalises with the batch statistics, as it would, without updating
    its running statistics (so the buffers are unchanged and ``torch.func`` transforms, which forbid
    such in-place updates, apply). The layers' own ``forward`` is restored on exit.
    """
    changed = []
    for m in model.modules():
        forward = None if "forward" in m.__dict__ else _composite_norm(m)
        if forward is not None:
            m.forward = forward
            changed.append(m)
    try:
        with torch.enable_grad():
            yield
    finally:
        for m in changed:
            del m.forward


def _dot(tensors: Sequence[Tensor], directions: Sequence[Tensor]) -> Tensor:
    """sum_p <t_p, u_p> (the contraction of a gradient with u on one group)."""
    return sum((t * u).sum() for t, u in zip(tensors, directions))


def _check_flags(route: str, order3, diagonal) -> None:
    if route not in ROUTES:
        raise ValueError(f"route must be one of {ROUTES}, got {route!r}")
    for name, value in (("order3", order3), ("diagonal", diagonal)):
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be True or False, got {value!r}")


def summaries(model: nn.Module, loss: LossLike, inputs: InputsLike, targets: Tensor, direction,
              partition: PartitionLike, *, route: str = "auto", order3: bool = True,
              diagonal: bool = False) -> Summaries:
    """g_bar, H_bar and diag D3 of phi(eta) = L(theta - sum_s eta_s u_s) at eta = 0, for one batch.

    Args:
        model: the network, evaluated as a function of its trainable parameters (never modified).
        loss: a name from :data:`curvlab.losses.LOSSES` (``"cross_entropy"``, ``"mse"``, ...) or a
            callable ``(outputs, targets) -> 0-d tensor``.
        inputs: a tensor, or a tuple of tensors passed positionally to the model.
        targets: what the loss compares the outputs with.
        direction: u as ``{parameter name: tensor}``, matched to the groups by name; names outside the
            partition are ignored.
        partition: a :class:`~curvlab.grouped_newton_partition.Partition` or anything
            :func:`~curvlab.grouped_newton_partition.make_partition` accepts (``"canonical"``, ...).
        route: ``"auto"`` (the cheapest), ``"nested"`` (the reference's nested reverse mode) or
            ``"func"`` (``torch.func`` on phi); see the module docstring.
        order3: compute D3 (else ``d3`` is zeros and the order-3 passes are skipped).
        diagonal: compute only the diagonal of H_bar (the ablation); off-diagonal entries are zeros.

    Returns:
        :class:`Summaries` ``(g, H, d3, loss)``.

    Raises:
        ValueError: an unknown route or loss, non-bool flags, an invalid partition, or a direction
            lacking a grouped parameter or with a wrong shape.

    Example:
        >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
        >>> x, y = torch.randn(8, 3), torch.randint(0, 2, (8,))
        >>> u = {n: p.detach().clone() for n, p in model.named_parameters()}
        >>> s = summaries(model, "cross_entropy", x, y, u, "canonical")
        >>> s.g.shape, s.H.shape, s.d3.shape, bool(torch.allclose(s.H, s.H.T))
        (torch.Size([4]), torch.Size([4, 4]), torch.Size([4]), True)
    """
    _check_flags(route, order3, diagonal)
    problem = _Problem(model, loss, inputs, targets, direction, partition)
    with _summary_mode(model):
        if route == "nested":
            return _nested(problem, order3, diagonal)
        if route == "func":
            return _func(problem, order3, diagonal)
        return _auto(problem, order3, diagonal)


def restricted_loss(model: nn.Module, loss: LossLike, inputs: InputsLike, targets: Tensor, direction,
                    partition: PartitionLike) -> Callable[[Tensor], Tensor]:
    """The restricted loss ``phi: eta (S,) -> L(theta - sum_s eta_s u_s)``, for ``torch.func`` transforms.

    Each call evaluates the model as :func:`summaries` does (inside
    :func:`curvlab._exact.exact_derivatives`, normalisation layers from primitives, no running-statistics
    update), so ``torch.func.hessian(phi)(eta)`` is H_bar at the moved point.

    Example:
        >>> model = torch.nn.Sequential(torch.nn.Linear(3, 2))
        >>> x, y = torch.randn(4, 3), torch.randint(0, 2, (4,))
        >>> u = {n: torch.ones_like(p) for n, p in model.named_parameters()}
        >>> phi = restricted_loss(model, "cross_entropy", x, y, u, "canonical")
        >>> torch.func.hessian(phi)(torch.zeros(2)).shape
        torch.Size([2, 2])
    """
    problem = _Problem(model, loss, inputs, targets, direction, partition)

    def phi(eta: Tensor) -> Tensor:
        with _summary_mode(model):
            return problem.loss_at(problem.moved(eta))
    return phi


# --------------------------------------------------------------------------------------------------
# Route "nested": the reference's nested reverse mode (the cost baseline)
# --------------------------------------------------------------------------------------------------

def _nested(problem: _Problem, order3: bool, diagonal: bool) -> Summaries:
    S, pn = problem.size, problem.partition.names
    leaves = {n: t.detach().requires_grad_(True) for n, t in problem.point.items()}
    groups = [[leaves[n] for n in g] for g in pn]
    dirs = [[problem.u[n] for n in g] for g in pn]
    L = problem.loss_at(leaves)
    g, H, d3 = problem.zeros(S), problem.zeros(S, S), problem.zeros(S)
    if not L.requires_grad:                                  # L does not depend on the parameters
        return Summaries(g, H, d3, L.detach())
    flat = [leaves[n] for n in problem.names]
    grads = torch.autograd.grad(L, flat, create_graph=True, allow_unused=True, materialize_grads=True)
    by_name = dict(zip(problem.names, grads))
    g_bar = [_dot([by_name[n] for n in grp], dirs[s]) for s, grp in enumerate(pn)]
    diag: list[Tensor | None] = [None] * S
    for s in range(S):
        if not g_bar[s].requires_grad:                       # phi is affine in eta_s
            continue
        later = range(s, s + 1) if diagonal else range(s, S)
        wrt = [p for t in later for p in groups[t]]
        parts = iter(torch.autograd.grad(g_bar[s], wrt, create_graph=order3, retain_graph=True,
                                         allow_unused=True, materialize_grads=True))
        for t in later:
            value = _dot([next(parts) for _ in groups[t]], dirs[t])
            if t == s:
                diag[s] = value
            H[s, t] = H[t, s] = value.detach()
    if order3:
        for s in range(S):
            if diag[s] is not None and diag[s].requires_grad:
                third = torch.autograd.grad(diag[s], groups[s], retain_graph=True, allow_unused=True,
                                            materialize_grads=True)
                d3[s] = _dot(third, dirs[s]).detach()
    g = torch.stack([v.detach() for v in g_bar])
    return Summaries(g, H, d3, L.detach())


# --------------------------------------------------------------------------------------------------
# Route "func": torch.func on phi
# --------------------------------------------------------------------------------------------------

def _func(problem: _Problem, order3: bool, diagonal: bool) -> Summaries:
    S = problem.size

    def phi(eta: Tensor) -> Tensor:
        return problem.loss_at(problem.moved(eta))

    eta0 = problem.zeros(S)
    loss = phi(eta0).detach()
    g = -torch.func.grad(phi)(eta0).detach()
    H = torch.func.hessian(phi)(eta0).detach()              # jacfwd(jacrev): forward-over-reverse
    if diagonal:
        H = torch.diag(H.diagonal())
    d3 = problem.zeros(S)
    if order3:
        for s in range(S):
            e = torch.zeros_like(eta0)
            e[s] = 1.0

            def d1(eta, e=e):
                return torch.func.jvp(phi, (eta,), (e,))[1]

            def d2(eta, e=e, d1=d1):
                return torch.func.jvp(d1, (eta,), (e,))[1]
            d3[s] = -torch.func.jvp(d2, (eta0,), (e,))[1].detach()
    return Summaries(g, H, d3, loss)


# --------------------------------------------------------------------------------------------------
# Route "auto": reverse mode on the S rates, linear layers on data entering as tangents
# --------------------------------------------------------------------------------------------------

_LINEAR_FORWARDS = {nn.Linear.forward: 0, nn.Conv1d.forward: 1, nn.Conv2d.forward: 2,
                    nn.Conv3d.forward: 3}


def _layer_function(module: nn.Module) -> Callable[[Tensor, Tensor, Tensor | None], Tensor]:
    """(x, weight, bias) -> the layer's output with those tensors (exactly its ``forward``)."""
    if isinstance(module, nn.Linear):
        return lambda x, w, b: torch.nn.functional.linear(x, w, b)
    return module._conv_forward


def _rewritable(model: nn.Module, grouped: set[str]) -> list[tuple[nn.Module, str, str]]:
    """(module, weight name, bias name) of the plain Linear/Conv layers whose own tensors are grouped.

    Excluded: subclasses with their own ``forward`` (e.g. layers with a modified backward), modules
    with an instance-level ``forward`` or a parametrization, and tensors registered more than once
    (tied weights), which must move wherever they are used.
    """
    count: dict[int, int] = {}
    for _, p in model.named_parameters(remove_duplicate=False):
        count[id(p)] = count.get(id(p), 0) + 1
    found = []
    for prefix, m in model.named_modules():
        plain = type(m).forward in _LINEAR_FORWARDS and "forward" not in m.__dict__
        if not plain or parametrize.is_parametrized(m):
            continue
        w, b = m._parameters.get("weight"), m._parameters.get("bias")
        if w is None or count.get(id(w)) != 1 or (b is not None and count.get(id(b)) != 1):
            continue
        w_name, b_name = f"{prefix}.weight" if prefix else "weight", f"{prefix}.bias" if prefix else "bias"
        if w_name in grouped or b_name in grouped:
            found.append((m, w_name, b_name))
    return found


@contextlib.contextmanager
def _as_tangents(problem: _Problem, eta: Sequence[Tensor], layers) -> Iterator[None]:
    """Within the block, the given layers compute their output at the moved parameters by linearity.

    With an input x that does not depend on eta: layer(x; W, b) - eta_W layer(x; u_W) - eta_b u_b
    (exact: the layer is linear in (W, b)); otherwise layer(x; W - eta_W u_W, b - eta_b u_b). Tensors
    not in the partition (frozen) stay as they are.
    """
    for m, w_name, b_name in layers:
        fn, spatial = _layer_function(m), _LINEAR_FORWARDS[type(m).forward]
        w0 = m.weight.detach()
        b0 = None if m.bias is None else m.bias.detach()
        moves_w, moves_b = w_name in problem.group, b0 is not None and b_name in problem.group
        eta_w = eta[problem.group[w_name]] if moves_w else None
        eta_b = eta[problem.group[b_name]] if moves_b else None
        u_w = problem.u[w_name] if moves_w else None
        u_b = problem.u[b_name].reshape(-1, *([1] * spatial)) if moves_b else None

        def forward(x: Tensor, fn=fn, w0=w0, b0=b0, eta_w=eta_w, eta_b=eta_b, u_w=u_w, u_b=u_b) -> Tensor:
            if x.requires_grad:                              # x depends on eta: move the parameters
                w = w0 if eta_w is None else w0 + u_w * -eta_w
                b = b0 if eta_b is None else b0 + u_b.reshape(-1) * -eta_b
                return fn(x, w, b)
            out = fn(x, w0, b0)
            # out + t * (-eta) rather than out - eta * t: no full-size negation in every backward pass
            if eta_w is not None:
                out = out + fn(x, u_w, None) * -eta_w        # layer(x; u_W): a constant tangent
            if eta_b is not None:
                out = out + u_b * -eta_b
            return out
        m.forward = forward
    try:
        yield
    finally:
        for m, _, _ in layers:
            del m.forward


def _reaches(root: Tensor, leaves: Sequence[Tensor]) -> bool:
    """Whether ``root``'s autograd graph accumulates into any of ``leaves``."""
    targets = {id(t) for t in leaves}
    stack, seen = [root.grad_fn], set()
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        variable = getattr(fn, "variable", None)
        if variable is not None and id(variable) in targets:
            return True
        stack.extend(nxt for nxt, _ in fn.next_functions)
    return False


def _phi_graph(problem: _Problem, eta: Sequence[Tensor], rewrite: bool) -> Tensor:
    """phi(eta) with autograd graph, the rewritable layers' rates entering as tangents."""
    layers = _rewritable(problem.model, set(problem.names)) if rewrite else []
    tangent_names = {n for _, w, b in layers for n in (w, b) if n in problem.group}
    if not tangent_names:
        return problem.loss_at(problem.moved(eta))
    # the rewritten layers' own tensors are passed as sentinels that require grad: if the loss's graph
    # reaches one, the tensor is also read outside its layer's forward, and the rewrite is not used
    sentinels = {n: problem.point[n].detach().requires_grad_(True) for n in tangent_names}
    params = {**problem.moved(eta, [n for n in problem.names if n not in sentinels]), **sentinels}
    with _as_tangents(problem, eta, layers):
        value = problem.loss_at(params)
    if value.requires_grad and _reaches(value, list(sentinels.values())):
        return _phi_graph(problem, eta, rewrite=False)
    return value


def _auto(problem: _Problem, order3: bool, diagonal: bool) -> Summaries:
    S, order = problem.size, problem.order
    eta = [torch.zeros((), dtype=problem.dtype, device=problem.device, requires_grad=True) for _ in range(S)]
    phi = _phi_graph(problem, eta, rewrite=True)
    g, H, d3 = problem.zeros(S), problem.zeros(S, S), problem.zeros(S)
    if not phi.requires_grad:
        return Summaries(g, H, d3, phi.detach())
    dphi = torch.autograd.grad(phi, eta, create_graph=True, allow_unused=True, materialize_grads=True)
    for k, s in enumerate(order):
        if not dphi[s].requires_grad:                        # phi is affine in eta_s
            continue
        later = [s] if diagonal else order[k:]
        row = torch.autograd.grad(dphi[s], [eta[t] for t in later], create_graph=order3, retain_graph=True,
                                  allow_unused=True, materialize_grads=True)
        for t, value in zip(later, row):
            H[s, t] = H[t, s] = value.detach()
        if order3 and row[0].requires_grad:                  # D3_s = -d H_ss / d eta_s, same graph
            d3[s] = -torch.autograd.grad(row[0], eta[s], retain_graph=True)[0].detach()
        del row
    g = -torch.stack([v.detach() for v in dphi])
    return Summaries(g, H, d3, phi.detach())
