"""ISAAC Newton: input-based approximate curvature (Petersen et al., ICLR 2023).

A linear layer z = a Wᵀ + bias keeps its forward pass and its exact input and bias gradients; only
the weight gradient Gᵀ A is replaced by the preconditioned direction ζ* (Theorem 3)::

    ζ* = Gᵀ A (I_n + AᵀA / (b·la))⁻¹  =  la · Gᵀ A (AᵀA/b + la·I_n)⁻¹  =  Gᵀ (I_b + AAᵀ / (b·la))⁻¹ A

with ``G`` (b, m) the gradient of the training loss w.r.t. the layer output (it already holds the
loss's 1/b) and ``A`` (b, n) the layer input. The optimizer only sees the modified ``.grad``, so SGD,
momentum, Adam and weight decay work on top (weight decay itself is not preconditioned).

Layout: the pure function :func:`isaac_weight_gradient`, a thin ``autograd.Function`` per layer kind,
the drop-in modules :class:`Linear` and :class:`Conv2d`, and :func:`apply_isaac` to swap layers of an
existing model. The finite-λ_g direction ζ and the K-FAC baseline live in ``curvlab.isaac_kfac``.

Shapes in comments: ``b`` rows given to the layer, ``n`` inputs, ``m`` outputs.
"""
from __future__ import annotations

import inspect
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._exact import exact_derivatives_active
from .linalg import check_damping, damped_gram_inverse, solve_spd

__all__ = ["isaac_weight_gradient", "solve_spd", "check_damping", "Linear", "Conv2d", "apply_isaac",
           "select_linear_layers"]


def isaac_weight_gradient(grad_output: Tensor, inputs: Tensor, la: float, *, form: str = "auto"
                          ) -> Tensor:
    """ISAAC direction ζ* for the weight (m, n) of a linear layer, from G (b, m) and A (b, n).

    ``ζ* = Gᵀ A (I_n + AᵀA/(b·la))⁻¹``. Two equal ways to compute it (``form``):

    - ``"batch"``: ``Gᵀ (I_b + AAᵀ/(b·la))⁻¹ A``, a b×b system, cost O(b²n + b²m + b³) on top of the
      O(bmn) of the plain gradient; cheaper when b < n (the mini-batch regime).
    - ``"input"``: an n×n system, cost O(bn² + n²m + n³); cheaper when b ≥ n.
    - ``"auto"`` (default): ``"batch"`` if b < n else ``"input"``, as the reference code does.

    Meaning of ``la`` (λ_a). With AᵀA/b = V diag(s_j) Vᵀ the result is
    ``Gᵀ A V diag(la/(la + s_j)) Vᵀ``: the gradient is damped along input directions of high second
    moment s_j, a regularised input whitening ("K-FAC with an identity output factor").
    ``la → ∞`` gives the plain gradient Gᵀ A; ``la → 0`` shrinks the step roughly in proportion to
    ``la`` (ζ* ≈ la·b·Gᵀ(AAᵀ)⁻¹A for b < n), so ``la`` and the learning rate interact: a smaller
    ``la`` needs a larger learning rate (the reference example pairs la=10 with lr=1 against lr=0.1
    for SGD). Always report (lr, la) together. Very small ``la`` makes the system ill-conditioned;
    the paper reports instability at la=0.01 on the auto-encoder.

    The b×b (or n×n) inverse P is formed explicitly by
    :func:`curvlab.linalg.damped_gram_inverse` (Cholesky in the input dtype when the system is well
    conditioned for it, otherwise in float64, with an eigendecomposition as the last resort, so any
    finite input works at any scale) and applied by matrix products, ``(Gᵀ P) A``, the cheapest
    order when m ≤ n. When P had to be computed in float64, P·A is formed in float64 and rounded
    back (batch form), so the m-wide product keeps the input dtype. float16/bfloat16 inputs are
    computed in float32 and the result cast back. An empty batch (b = 0) gives a zero direction, as the plain
    gradient Gᵀ A does. Non-finite inputs give a non-finite result. ``la`` must be finite and > 0.
    """
    la = check_damping(la, "la")
    if grad_output.dim() != 2 or inputs.dim() != 2 or grad_output.shape[0] != inputs.shape[0]:
        raise ValueError("need grad_output (b, m) and inputs (b, n) with the same b, got "
                         f"{tuple(grad_output.shape)} and {tuple(inputs.shape)}")
    if form not in ("auto", "batch", "input"):
        raise ValueError(f"form must be 'auto', 'batch' or 'input', got {form!r}")
    return _weight_gradient(grad_output, inputs, la, form)


def _weight_gradient(G: Tensor, A: Tensor, la: float, form: str = "auto") -> Tensor:
    """:func:`isaac_weight_gradient` without argument checks (the layers' backward pass)."""
    b, n = A.shape
    m = G.shape[1]
    dtype = A.dtype
    if b == 0:
        return A.new_zeros(m, n)
    if dtype in _HALF:                                   # LAPACK has no half kernels on CPU
        G, A = G.float(), A.float()
    if form == "auto":
        form = "batch" if b < n else "input"
    P = damped_gram_inverse(A if form == "batch" else A.T, b * la)   # (I + AAᵀ/(b·la))⁻¹ or n×n
    if P.dtype != A.dtype and form == "batch":
        # ill-conditioned for A's dtype: P·A in float64 (b²n flops) is well determined once
        # computed, so it can be rounded back; the m-wide product stays in A's dtype
        out = G.T @ (P @ A.to(P.dtype)).to(A.dtype)
    elif P.dtype != A.dtype:                             # input form: all in float64
        out = (G.T.to(P.dtype) @ A.to(P.dtype)) @ P
    elif form == "batch":
        # (P G)ᵀ A, not (Gᵀ P) A: the same flops, but the m-wide product then reads a transposed
        # contiguous operand, the layout of the plain gradient's Gᵀ A, which BLAS runs ~10 % faster
        out = (P @ G).T @ A if m <= n else G.T @ (P @ A)                 # (m, b)(b, n)
    else:
        out = (G.T @ A) @ P                                              # (m, n)(n, n)
    return out if out.dtype == dtype else out.to(dtype)


_HALF = (torch.float16, torch.bfloat16)


class _LinearFunction(torch.autograd.Function):
    """y = x Wᵀ + bias; backward: exact input and bias gradients, ζ* for the weight.

    ``forward`` + ``setup_context`` so that ``torch.func.grad`` / ``functional_call`` work. No vmap
    rule: under vmap each mapped slice would be preconditioned as its own batch, which is a
    different method, and the solve inspects values (``info``), which vmap cannot trace.
    """

    @staticmethod
    def forward(input, weight, bias, la):
        return F.linear(input, weight, bias)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, weight, bias, la = inputs
        ctx.save_for_backward(input, weight)
        ctx.la = la
        ctx.has_bias = bias is not None

    @staticmethod
    def backward(ctx, grad_output):                              # grad_output: (..., m)
        input, weight = ctx.saved_tensors
        m, n = weight.shape
        G = grad_output.reshape(-1, m)                           # (b, m), b = prod(leading dims)
        grad_input = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_input = grad_output @ weight                    # (..., n)
        if ctx.needs_input_grad[1]:
            grad_weight = _weight_gradient(G, input.reshape(-1, n), ctx.la)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = G.sum(0)
        return grad_input, grad_weight, grad_bias, None


# Function.apply binds the arguments to forward's signature on every call when setup_context is
# defined; inspect.signature returns a stored __signature__ at once instead of rebuilding it
# (about 10 µs per layer per step).
_LinearFunction.forward.__signature__ = inspect.signature(_LinearFunction.forward)

_C_APPLY = getattr(torch._C, "_FunctionBase", None) and torch._C._FunctionBase.__dict__.get("apply")


def _direct_apply(function: type) -> Callable[..., Tensor]:
    """``function.apply`` without ``torch.autograd.Function.apply``'s Python preamble, when idle.

    The preamble binds the arguments to ``forward``'s signature (a no-op for our all-positional,
    default-free calls) and unwraps dead ``torch.func`` wrappers (there are none unless an argument
    is a ``torch.func`` tensor), then calls the C++ ``apply``, which runs ``forward`` and
    ``setup_context``. It costs about 18 µs per call (one thread, AMD EPYC, torch 2.13: 224 against
    206 µs for a 400→400 layer's forward at batch 60), about 2 % of a 5×400 MLP step per layer.
    Under an active ``torch.func`` transform, or for a wrapped argument, the public ``apply`` is
    used, so ``torch.func.grad`` / ``functional_call`` work as before.
    """
    public = function.apply
    if _C_APPLY is None:                                   # another torch: keep the public path
        return public
    direct = _C_APPLY.__get__(None, function)
    transforms_active = torch._C._are_functorch_transforms_active
    wrapped = torch._C._functorch.is_functorch_wrapped_tensor

    def apply(*args):
        if transforms_active() or any(isinstance(a, Tensor) and wrapped(a) for a in args):
            return public(*args)
        return direct(*args)
    return apply


_linear_apply = _direct_apply(_LinearFunction)


class Linear(nn.Linear):
    """Drop-in ``nn.Linear`` whose weight gradient is the ISAAC direction ζ*.

    See :func:`isaac_weight_gradient` for ``la``. Same parameters, names and initialisation as
    ``nn.Linear``; the input and bias gradients stay exact, so earlier layers see true backprop.

    Inputs (B, T, ..., n) are flattened to b = B·T·... rows. The loss's own reduction is carried by
    G, as for 2-D inputs; the 1/b inside AᵀA/b is over rows, so AᵀA/b is the per-row (per-token)
    second moment and ``la`` keeps the same scale whatever the sequence length. (Using b = B instead
    would grow AᵀA/b with T and silently change what a given ``la`` means.) This is an extension:
    the reference accepts 2-D inputs only.

    Works under ``torch.func.grad`` / ``functional_call``; ``torch.func.vmap`` is not supported (it
    raises), because mapping over examples would precondition each slice as its own batch.
    """

    def __init__(self, in_features: int, out_features: int, la: float, bias: bool = True,
                 device=None, dtype=None):
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self.la = la

    @property
    def la(self) -> float:
        """The damping λ_a (finite, > 0; checked on assignment)."""
        return self._la

    @la.setter
    def la(self, value: float) -> None:
        self._la = check_damping(value, "la")

    def forward(self, input: Tensor) -> Tensor:
        """``F.linear``; its backward gives ζ* for the weight (plain inside ``exact_derivatives()``)."""
        if exact_derivatives_active():                   # curvature products: the true function
            return F.linear(input, self.weight, self.bias)
        return _linear_apply(input, self.weight, self.bias, self._la)

    def extra_repr(self) -> str:  # noqa: D102 (nn.Module's)
        return f"{super().extra_repr()}, la={self._la:g}"


class _Conv2dFunction(torch.autograd.Function):
    """2-D convolution with ζ* on the unfolded patches: each of the B·L patches is a row of A."""

    @staticmethod
    def forward(input, weight, bias, la, stride, padding, dilation):
        return F.conv2d(input, weight, bias, stride, padding, dilation)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, weight, bias, la, stride, padding, dilation = inputs
        ctx.save_for_backward(input, weight)
        ctx.la, ctx.stride, ctx.padding, ctx.dilation = la, stride, padding, dilation
        ctx.has_bias = bias is not None

    @staticmethod
    def backward(ctx, grad_output):                              # grad_output: (B, O, H', W')
        input, weight = ctx.saved_tensors
        out_channels = weight.shape[0]
        grad_input = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_input = torch.nn.grad.conv2d_input(input.shape, weight, grad_output, ctx.stride,
                                                    ctx.padding, ctx.dilation)
        if ctx.needs_input_grad[1]:
            patches = F.unfold(input, weight.shape[2:], ctx.dilation, ctx.padding, ctx.stride)
            A = patches.transpose(1, 2).reshape(-1, patches.shape[1])    # (B·L, C·kh·kw)
            G = grad_output.flatten(2).transpose(1, 2).reshape(-1, out_channels)  # (B·L, O)
            grad_weight = _weight_gradient(G, A, ctx.la).reshape(weight.shape)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad_output.sum((0, 2, 3))
        return grad_input, grad_weight, grad_bias, None, None, None, None


_Conv2dFunction.forward.__signature__ = inspect.signature(_Conv2dFunction.forward)
_conv2d_apply = _direct_apply(_Conv2dFunction)


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` (groups=1, zero padding) whose weight gradient is ζ* over unfolded patches.

    An extension beyond the paper and its code: with ``F.unfold`` each of the B·L receptive fields
    (L output positions) is one row of A (B·L, C·kh·kw), G is reshaped to (B·L, O), and ζ* is
    computed exactly as for :class:`Linear` on those rows, then reshaped to the kernel. Input and
    bias gradients stay exact. The unfolded matrix is kh·kw times the input size, built in the
    backward pass only. ``padding`` must be an int or a pair (no ``"same"``/``"valid"`` strings).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, la: float, stride=1,
                 padding=0, dilation=1, bias: bool = True, device=None, dtype=None):
        if isinstance(padding, str):
            raise ValueError(f"padding must be an int or a pair of ints, got {padding!r}")
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups=1, bias=bias, padding_mode="zeros", device=device, dtype=dtype)
        self.la = la

    la = Linear.la

    def forward(self, input: Tensor) -> Tensor:
        """``F.conv2d``; its backward gives ζ* for the weight (plain inside ``exact_derivatives()``)."""
        unbatched = input.dim() == 3
        x = input.unsqueeze(0) if unbatched else input           # (B, C, H, W)
        if exact_derivatives_active():                           # curvature products: the true function
            out = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation)
            return out.squeeze(0) if unbatched else out
        out = _conv2d_apply(x, self.weight, self.bias, self._la, self.stride, self.padding, self.dilation)
        return out.squeeze(0) if unbatched else out

    def extra_repr(self) -> str:  # noqa: D102 (nn.Module's)
        return f"{super().extra_repr()}, la={self._la:g}"


def select_linear_layers(model: nn.Module, layers: int | str | Iterable[int | str]
                         ) -> list[tuple[str, nn.Linear]]:
    """The ``nn.Linear`` modules of ``model`` chosen by 1-based position or by name.

    Positions count the ``nn.Linear`` modules (subclasses included) in ``model.modules()`` order,
    as in the paper's figures: for the 5-layer MLP, ``{1, 2, 3, 4, 5}`` is every layer, ``{3, 4, 5}``
    the last three. Names are those of ``model.named_modules()`` (e.g. ``"fc"``, ``"3"``). Returns
    ``(name, module)`` pairs in model order; raises ``ValueError`` for an empty selection, a position
    out of range, an unknown name or a name that is not an ``nn.Linear``.
    """
    linear = [(name, mod) for name, mod in model.named_modules() if isinstance(mod, nn.Linear)]
    named = dict(model.named_modules())
    if isinstance(layers, (int, str)):
        layers = [layers]
    layers = list(layers)
    if not layers:
        raise ValueError("layers is empty: give 1-based positions among the nn.Linear layers or "
                         "module names")
    chosen = set()
    for key in layers:
        if isinstance(key, str):
            if key not in named:
                raise ValueError(f"no module named {key!r}; nn.Linear layers are "
                                 f"{[name for name, _ in linear]}")
            if not isinstance(named[key], nn.Linear):
                raise ValueError(f"module {key!r} is a {type(named[key]).__name__}, not nn.Linear")
            chosen.add(key)
        elif isinstance(key, int) and not isinstance(key, bool):
            if not 1 <= key <= len(linear):
                raise ValueError(f"layer position {key} out of range: positions are 1-based and "
                                 f"the model has {len(linear)} nn.Linear layers")
            chosen.add(linear[key - 1][0])
        else:
            raise ValueError(f"layers must hold ints (1-based positions) or str (names), got {key!r}")
    return [(name, mod) for name, mod in linear if name in chosen]


def apply_isaac(model: nn.Module, la: float, layers: int | str | Iterable[int | str]) -> nn.Module:
    """Replace the chosen ``nn.Linear`` layers of ``model`` in place by :class:`Linear` and return it.

    ``layers``: 1-based positions among the model's ``nn.Linear`` modules and/or module names, see
    :func:`select_linear_layers`. The new layers take over the old ``Parameter`` objects (values,
    ``requires_grad`` and identity kept, so an optimizer built before the swap still works) and the
    training mode; hooks on the old modules are not carried over, and no random numbers are drawn.
    Only layers called through their ``forward`` are affected (e.g. not the ``out_proj`` of
    ``nn.MultiheadAttention``, which reads its weight directly).
    """
    la = check_damping(la, "la")
    for name, old in select_linear_layers(model, layers):
        if name == "":
            raise ValueError("model itself is an nn.Linear; build isaac.Linear directly instead")
        new = Linear(old.in_features, old.out_features, la, bias=old.bias is not None,
                     device="meta")                              # meta: no init, no RNG draws
        new.weight = old.weight
        new.bias = old.bias
        new.train(old.training)
        # every place the layer is used: _modules, not named_children(), which lists a module
        # registered twice in one parent (nn.Sequential(shared, act, shared)) only once
        for parent in list(model.modules()):
            for key, child in list(parent._modules.items()):
                if child is old:
                    setattr(parent, key, new)
    return model
