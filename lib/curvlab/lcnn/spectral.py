"""Spectral normalisation on the true operator of a convolution (and of a linear layer).

A convolution with kernel W acting on C_in × H × W inputs is a linear map A_W : R^{C_in H W} →
R^{C_out H' W'} (bias aside). Its Lipschitz constant is the largest singular value σ(A_W), which is
not the norm of the kernel reshaped to a C_out × (C_in k k) matrix (what ``torch.nn.utils.spectral_norm``
normalises). Here the weight is reparametrised as

    W ↦ W / σ̂,   σ̂ = ⟨u, A_W v⟩,

with unit vectors u (an output map, 1 × C_out × H' × W') and v (an input map, 1 × C_in × H × W) from
the power iteration on A_Wᵀ A_W:

    v ← A_Wᵀ u / ‖A_Wᵀ u‖,    u ← A_W v / ‖A_W v‖.

A_W is ``conv2d`` and its adjoint A_Wᵀ is ``conv_transpose2d`` with the same stride, padding,
dilation and groups, and with ``output_padding`` chosen so that A_Wᵀ u has exactly the input shape
H × W (the rows and columns a strided convolution never reads get zero). u and v therefore keep
fixed shapes: a state dict loads into a freshly built layer without a forward first.

Schedule: ``warmup`` iterations at registration (15 by default), then ``n_power_iterations`` per
forward in training mode and none in eval mode, so an evaluated network is a fixed function. The
iteration runs without gradient; σ̂ = ⟨u, A_W v⟩ is then recomputed with u and v as constants, so the
gradient reaches the original weight only through W / σ̂ (including its dependence on W through σ̂).
The normalisation is exact, not a clip: the normalised operator has σ(A_{W/σ̂}) = σ(A_W) / σ̂ → 1 as
the iteration converges (and ⟨u, A v⟩ ≤ σ for unit u, v, so it is ≥ 1 before that). If σ̂ < 1e-12 the
weight is returned unchanged.

Like torch's batch norm, a training-mode forward updates buffers in place, so it cannot run inside a
``torch.func`` transform (``grad``, ``jvp``, ``vmap``); in eval mode nothing is mutated and every
transform applies (input Hessians of a normalised network are taken in eval mode).

For a linear layer the same parametrisation uses A_W v = W v and A_Wᵀ u = Wᵀ u.
:func:`conv_operator_matrix` and :func:`operator_norm` give the dense operator and its exact norm
(SVD), for tests and small demonstrations.
"""
from __future__ import annotations

import numbers
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

__all__ = ["ConvSpectralNorm", "LinearSpectralNorm", "conv_spectral_norm", "linear_spectral_norm",
           "spectral_estimate", "conv_operator_matrix", "operator_norm"]

SizeLike = Union[int, Sequence[int]]
_TINY = 1e-12


def _check_count(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _input_size(input_size: SizeLike) -> tuple[int, int]:
    if isinstance(input_size, numbers.Integral) and not isinstance(input_size, bool):
        size = (int(input_size), int(input_size))
    elif isinstance(input_size, Sequence) and not isinstance(input_size, str) and len(input_size) == 2:
        size = tuple(input_size)
    else:
        raise ValueError(f"input_size must be an int or a pair (H, W), got {input_size!r}")
    if any(isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1 for s in size):
        raise ValueError(f"input_size must hold positive integers, got {input_size!r}")
    return int(size[0]), int(size[1])


def _unit(x: Tensor) -> Tensor:
    """Return x / ‖x‖, the norm over all entries (the whole single-image tensor)."""
    return x / x.norm().clamp_min(_TINY)


class _PowerIterationNorm(nn.Module):
    """Parametrisation W ↦ W / ⟨u, A_W v⟩ for a linear operator A_W (``_apply_op``, ``_adjoint_op``)."""

    def __init__(self, weight: Tensor, u_shape: tuple[int, ...], v_shape: tuple[int, ...],
                 n_power_iterations: int):
        super().__init__()
        self.n_power_iterations = n_power_iterations
        opts = dict(dtype=weight.dtype, device=weight.device)
        self.register_buffer("_u", _unit(torch.randn(u_shape, **opts)))
        self.register_buffer("_v", _unit(torch.randn(v_shape, **opts)))

    def _apply_op(self, v: Tensor, weight: Tensor) -> Tensor:
        raise NotImplementedError

    def _adjoint_op(self, u: Tensor, weight: Tensor) -> Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def _iterate(self, weight: Tensor, steps: int) -> None:
        u, v = self._u, self._v
        for _ in range(steps):
            v = _unit(self._adjoint_op(u, weight))
            u = _unit(self._apply_op(v, weight))
        self._u.copy_(u)
        self._v.copy_(v)

    def sigma(self, weight: Tensor) -> Tensor:
        """σ̂ = ⟨u, A_W v⟩ with the stored u, v as constants (0-dim, differentiable w.r.t. W)."""
        # Clones: a later training forward updates the buffers in place while this graph may live on.
        u, v = self._u.clone(), self._v.clone()
        return (u * self._apply_op(v, weight)).sum()

    def normalised(self, weight: Tensor) -> Tensor:
        """Return W / σ̂ with the stored u, v (W itself if σ̂ < 1e-12); never iterates."""
        sigma = self.sigma(weight)
        safe = torch.where(sigma > _TINY, sigma, torch.ones_like(sigma))
        return weight / safe

    def forward(self, weight: Tensor) -> Tensor:
        """Return W / σ̂; in training mode the power iteration advances first."""
        if self.training and self.n_power_iterations > 0:
            self._iterate(weight.detach(), self.n_power_iterations)
        return self.normalised(weight)

    def right_inverse(self, value: Tensor) -> Tensor:
        """Assigning ``module.weight = W`` stores W itself as the unnormalised weight."""
        return value


class ConvSpectralNorm(_PowerIterationNorm):
    """W ↦ W / σ̂ for a ``Conv2d`` at a fixed input size (see the module docstring).

    Args:
        conv: the convolution (zero padding, numeric padding); its weight seeds the warm-up.
        input_size: (H, W) of the inputs the layer sees.
        n_power_iterations: iterations per training forward (>= 1).
        warmup: iterations at construction (>= 0).
    """

    def __init__(self, conv: nn.Conv2d, input_size: tuple[int, int], n_power_iterations: int, warmup: int):
        out, extra = [], []
        for n, k, s, p, d in zip(input_size, conv.kernel_size, conv.stride, conv.padding, conv.dilation):
            span = n + 2 * p - d * (k - 1) - 1
            if span < 0:
                raise ValueError(f"input_size {tuple(input_size)} is smaller than the kernel's reach")
            out.append(span // s + 1)
            extra.append(span % s)  # output_padding: conv_transpose2d then returns exactly n rows
        u_shape, v_shape = (1, conv.out_channels, *out), (1, conv.in_channels, *input_size)
        super().__init__(conv.weight, u_shape, v_shape, n_power_iterations)
        self.stride, self.padding = tuple(conv.stride), tuple(conv.padding)
        self.dilation, self.groups = tuple(conv.dilation), conv.groups
        self.input_size, self.output_size, self.output_padding = tuple(input_size), tuple(out), tuple(extra)
        self._iterate(conv.weight.detach(), warmup)

    def _apply_op(self, v: Tensor, weight: Tensor) -> Tensor:
        return F.conv2d(v, weight, None, self.stride, self.padding, self.dilation, self.groups)

    def _adjoint_op(self, u: Tensor, weight: Tensor) -> Tensor:
        return F.conv_transpose2d(u, weight, None, self.stride, self.padding, self.output_padding,
                                  self.groups, self.dilation)

    def extra_repr(self) -> str:
        """Input size and iterations per training forward."""
        return f"input_size={self.input_size}, n_power_iterations={self.n_power_iterations}"


class LinearSpectralNorm(_PowerIterationNorm):
    """W ↦ W / σ̂ for a ``Linear`` layer, σ̂ = uᵀ W v from the power iteration on WᵀW.

    Args:
        linear: the linear layer; its weight seeds the warm-up.
        n_power_iterations: iterations per training forward (>= 1).
        warmup: iterations at construction (>= 0).
    """

    def __init__(self, linear: nn.Linear, n_power_iterations: int, warmup: int):
        out_features, in_features = linear.weight.shape
        super().__init__(linear.weight, (out_features,), (in_features,), n_power_iterations)
        self._iterate(linear.weight.detach(), warmup)

    def _apply_op(self, v: Tensor, weight: Tensor) -> Tensor:
        return weight @ v

    def _adjoint_op(self, u: Tensor, weight: Tensor) -> Tensor:
        return weight.T @ u

    def extra_repr(self) -> str:
        """Iterations per training forward."""
        return f"n_power_iterations={self.n_power_iterations}"


def _find(module: nn.Module) -> Optional[_PowerIterationNorm]:
    if not parametrize.is_parametrized(module, "weight"):
        return None
    found = [p for p in module.parametrizations.weight if isinstance(p, _PowerIterationNorm)]
    return found[0] if found else None


def _current_weight(module: nn.Module) -> Tensor:
    """The weight the module computes with now, read without advancing a power iteration."""
    norm = _find(module)
    if norm is None:
        return module.weight.detach()
    with torch.no_grad():
        return norm.normalised(module.parametrizations.weight.original)


def _register(module: nn.Module, norm: _PowerIterationNorm) -> None:
    if _find(module) is not None:
        raise ValueError("the module's weight is already spectrally normalised")
    parametrize.register_parametrization(module, "weight", norm)


def conv_spectral_norm(conv: nn.Conv2d, input_size: SizeLike, n_power_iterations: int = 1,
                       warmup: int = 15) -> nn.Conv2d:
    """Normalise ``conv`` to operator norm 1 on (C_in, H, W) inputs, in place; returns ``conv``.

    Registers :class:`ConvSpectralNorm` on ``conv.weight`` through ``torch.nn.utils.parametrize``; the
    unnormalised weight lives on as ``conv.parametrizations.weight.original`` (the same Parameter
    object, so an optimizer built before still trains it).

    Args:
        conv: a ``Conv2d`` with zero padding given as numbers (not "same"/"valid").
        input_size: H or (H, W) of the inputs the layer will see.
        n_power_iterations: power iterations per training-mode forward, >= 1.
        warmup: power iterations at registration, >= 0 (15 as in the reference).

    Raises:
        TypeError: if ``conv`` is not an ``nn.Conv2d``.
        ValueError: for a bad ``input_size``, ``n_power_iterations`` or ``warmup``, a padding mode
            other than zeros, string padding, or a weight that is already normalised.
    """
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"conv must be an nn.Conv2d, got {type(conv).__name__}")
    size = _input_size(input_size)
    n_power_iterations = _check_count("n_power_iterations", n_power_iterations, 1)
    warmup = _check_count("warmup", warmup, 0)
    if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        raise ValueError("conv_spectral_norm needs zero padding given as numbers "
                         f"(padding={conv.padding!r}, padding_mode={conv.padding_mode!r})")
    _register(conv, ConvSpectralNorm(conv, size, n_power_iterations, warmup))
    return conv


def linear_spectral_norm(linear: nn.Linear, n_power_iterations: int = 1, warmup: int = 15) -> nn.Linear:
    """Normalise ``linear`` to spectral norm 1, in place; returns ``linear`` (see :func:`conv_spectral_norm`).

    Raises:
        TypeError: if ``linear`` is not an ``nn.Linear``.
        ValueError: for a bad ``n_power_iterations`` or ``warmup``, or a weight already normalised.
    """
    if not isinstance(linear, nn.Linear):
        raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
    n_power_iterations = _check_count("n_power_iterations", n_power_iterations, 1)
    warmup = _check_count("warmup", warmup, 0)
    _register(linear, LinearSpectralNorm(linear, n_power_iterations, warmup))
    return linear


def spectral_estimate(module: nn.Module) -> float:
    """The current estimate σ̂ = ⟨u, A_W v⟩ of the norm of the **unnormalised** weight's operator.

    Raises:
        ValueError: if ``module`` carries no normalisation from this module.
    """
    norm = _find(module)
    if norm is None:
        raise ValueError("module's weight is not normalised by conv_spectral_norm / linear_spectral_norm")
    with torch.no_grad():
        return float(norm.sigma(module.parametrizations.weight.original))


def conv_operator_matrix(conv: nn.Conv2d, input_size: SizeLike, weight: Optional[Tensor] = None) -> Tensor:
    """Dense matrix M (C_out H' W', C_in H W) of x ↦ conv2d(x, W) without bias, at ``input_size``.

    Rows and columns follow the C-order flattening of (C, H, W). ``weight`` defaults to the layer's
    current (normalised, if registered) weight, read without advancing the power iteration even in
    training mode; pass ``conv.parametrizations.weight.original`` to see the unnormalised operator.
    Costs one convolution of a batch of C_in H W basis images: meant for small inputs.
    """
    if isinstance(conv.padding, str) or conv.padding_mode != "zeros":
        raise ValueError("conv_operator_matrix needs zero padding given as numbers")
    h, w = _input_size(input_size)
    weight = _current_weight(conv) if weight is None else weight.detach()
    n = conv.in_channels * h * w
    with torch.no_grad():
        basis = torch.eye(n, dtype=weight.dtype, device=weight.device).reshape(n, conv.in_channels, h, w)
        columns = F.conv2d(basis, weight, None, conv.stride, conv.padding, conv.dilation, conv.groups)
    return columns.reshape(n, -1).T


def operator_norm(module: nn.Module, input_size: Optional[SizeLike] = None) -> float:
    """Exact largest singular value of the module's current weight operator (dense SVD).

    For a ``Conv2d`` the operator at ``input_size`` (required); for a ``Linear`` the weight matrix.
    A normalised weight is read as W / σ̂ without advancing its power iteration.
    """
    if isinstance(module, nn.Conv2d):
        if input_size is None:
            raise ValueError("input_size is required for a Conv2d")
        matrix = conv_operator_matrix(module, input_size)
    elif isinstance(module, nn.Linear):
        matrix = _current_weight(module)
    else:
        raise TypeError(f"module must be an nn.Conv2d or nn.Linear, got {type(module).__name__}")
    return float(torch.linalg.matrix_norm(matrix, ord=2))
