"""Building blocks shared by every LCNN-family network: the variant's layers, ConvBNBlock, the residual block.

A *variant* decides three things and nothing else, so that one skeleton serves all of them:

============  ==========================================  ===========================  ==============
variant       activation (a new instance per use)         batch norm (affine-free)     conv / linear
============  ==========================================  ===========================  ==============
standard      ``Softplus(β=1000)``, fixed (≈ ReLU)        ``BatchNorm(affine=False)``  plain
lcnn          ``CenteredSoftplus`` (own learnable β)      ``LipschitzBatchNorm``       spectral norm 1
softplus_wd   ``Softplus(β=10)``, fixed                   ``BatchNorm(affine=False)``  plain
============  ==========================================  ===========================  ==============

Every activation here is 1-Lipschitz (its derivative is a sigmoid). In the lcnn variant each conv is
divided by the power-iteration estimate of its spectral norm *on the true convolution operator at its
input size*, so a ConvBNBlock's Lipschitz constant is that of its batch norm, min(1/σ_min, γ) in eval
mode. Spatial sizes are tracked through the skeleton so that the normalisation is registered eagerly,
at construction, with the size the conv actually sees.

Shapes in comments: ``B`` batch, ``C`` channels, ``H`` the (square) spatial size.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from curvlab.lcnn.activations import CenteredSoftplus
from curvlab.lcnn.batchnorm import LipschitzBatchNorm1d, LipschitzBatchNorm2d
from curvlab.lcnn.spectral import conv_spectral_norm, linear_spectral_norm

VARIANTS = ("standard", "lcnn", "softplus_wd")

BETA_INIT = 5.0        # initial β of every centred softplus (reference: log_beta = log 5)
GAMMA_INIT = 10.0      # initial cap γ of every Lipschitz batch norm (reference: init_lipschitz = 10)
_FIXED_BETA = {"standard": 1000.0, "softplus_wd": 10.0}


def check_variant(variant: str) -> str:
    """Return ``variant`` if it is one of :data:`VARIANTS`, else raise ``ValueError`` naming it."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    return variant


def make_activation(variant: str) -> nn.Module:
    """A fresh activation module: ``Softplus(β)`` with β fixed, or a learnable ``CenteredSoftplus``."""
    if check_variant(variant) == "lcnn":
        return CenteredSoftplus(beta_init=BETA_INIT)
    return nn.Softplus(beta=_FIXED_BETA[variant])


def make_batchnorm(variant: str, num_features: int, dim: int = 2) -> nn.Module:
    """Affine-free batch norm over ``num_features`` channels; Lipschitz-capped at γ in the lcnn variant.

    ``dim=2`` for (B, C, H, W) feature maps, ``dim=1`` for (B, C) features.
    """
    if dim not in (1, 2):
        raise ValueError(f"dim must be 1 or 2, got {dim!r}")
    if check_variant(variant) == "lcnn":
        cls = LipschitzBatchNorm2d if dim == 2 else LipschitzBatchNorm1d
        return cls(num_features, gamma_init=GAMMA_INIT)
    cls = nn.BatchNorm2d if dim == 2 else nn.BatchNorm1d
    return cls(num_features, affine=False)


def make_linear(variant: str, in_features: int, out_features: int, bias: bool = True) -> nn.Linear:
    """``nn.Linear``, spectrally normalised to norm 1 in the lcnn variant."""
    linear = nn.Linear(in_features, out_features, bias=bias)
    return linear_spectral_norm(linear) if check_variant(variant) == "lcnn" else linear


def conv_output_size(size: int, kernel_size: int, stride: int, padding: int) -> int:
    """Spatial size after a convolution or pooling: ⌊(H + 2p − k)/s⌋ + 1 (raises if it would be < 1)."""
    out = (size + 2 * padding - kernel_size) // stride + 1
    if out < 1:
        raise ValueError(f"input_size {size} is too small for kernel {kernel_size}, stride {stride}, "
                         f"padding {padding}")
    return out


class ConvBNBlock(nn.Module):
    """Convolution followed by affine-free batch norm: x ↦ BN(conv(x)).

    In the lcnn variant the conv weight is W/σ̂, σ̂ the power-iteration estimate of the largest
    singular value of the conv operator on ``input_size`` × ``input_size`` inputs (registered here,
    eagerly, with its warm-up iterations), and the batch norm is a :class:`LipschitzBatchNorm2d`, so the
    block's eval-mode Lipschitz constant is ‖conv‖·min(1/σ_min, γ) ≈ min(1/σ_min, γ).

    Attributes:
        conv: the (possibly parametrised) ``nn.Conv2d``.
        bn: the batch norm.
        input_size: spatial size H the conv was normalised for.
        output_size: spatial size of the block's output.
    """

    def __init__(self, in_channels: int, out_channels: int, variant: str, input_size: int,
                 kernel_size: int = 3, stride: int = 1, padding: int = 1, bias: bool = False):
        super().__init__()
        check_variant(variant)
        self.input_size = int(input_size)
        self.output_size = conv_output_size(self.input_size, kernel_size, stride, padding)
        conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias)
        self.conv = conv_spectral_norm(conv, self.input_size) if variant == "lcnn" else conv
        self.bn = make_batchnorm(variant, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, H) -> (B, C_out, H', H')."""
        return self.bn(self.conv(x))


class LipschitzResidualBlock(nn.Module):
    """Basic residual block that does not grow the Lipschitz constant.

    out = act₂(½ · (conv₂(act₁(conv₁(x/√2))) + shortcut(x/√2))).

    This is the reference's half-channel construction written out: x ↦ (x, x)/√2 is an isometry, the
    residual branch f = conv₂∘act₁∘conv₁ and the shortcut s act on one copy each, and the halves are
    summed with weight ½. Hence Lip(block) ≤ Lip(act₂) · (Lip(f) + Lip(s)) / (2√2), which is 1/√2 when
    every piece is 1-Lipschitz. conv₁ and conv₂ are 3×3 :class:`ConvBNBlock` s (conv₁ carries the
    stride); the shortcut is the identity, or a 1×1 strided ConvBNBlock when the shape changes.
    act₁ and act₂ are separate instances, so in the lcnn variant each has its own β.
    """

    def __init__(self, in_channels: int, out_channels: int, variant: str, input_size: int, stride: int = 1):
        super().__init__()
        self.conv1 = ConvBNBlock(in_channels, out_channels, variant, input_size, stride=stride)
        self.act1 = make_activation(variant)
        self.conv2 = ConvBNBlock(out_channels, out_channels, variant, self.conv1.output_size)
        if stride != 1 or in_channels != out_channels:
            self.shortcut: nn.Module = ConvBNBlock(in_channels, out_channels, variant, input_size,
                                                   kernel_size=1, stride=stride, padding=0)
        else:
            self.shortcut = nn.Identity()
        self.act2 = make_activation(variant)
        self.input_size = int(input_size)
        self.output_size = self.conv2.output_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, H) -> (B, C_out, H/stride, H/stride)."""
        h = x / math.sqrt(2.0)
        residual = self.conv2(self.act1(self.conv1(h)))
        return self.act2(0.5 * (residual + self.shortcut(h)))
