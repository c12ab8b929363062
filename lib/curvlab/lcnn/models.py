"""LCNN-family networks: ResNet-18/34, VGG-11 and the two-moons MLP, on one skeleton per architecture.

Each builder takes a ``variant`` (:data:`VARIANTS`, see :mod:`curvlab.lcnn.blocks`): ``"standard"``
(Softplus β=1000, affine-free BN), ``"lcnn"`` (centred softplus with a learnable β per use, Lipschitz
batch norm, convolutions and linear layers of spectral norm 1 on the true operator) or
``"softplus_wd"`` (Softplus β=10, the "Softplus + weight decay" baseline's architecture). The
regularised baselines (gradient norm, CURE, adversarial training) use the standard network and differ
only in the objective.

The ResNets are not torchvision's: no stem max-pool, the Lipschitz-preserving residual block
out = act(½(f(x/√2) + shortcut(x/√2))), and a head AdaptiveAvgPool → ``spectral_norm(Linear)`` (PyTorch's
spectral norm, in every variant, as in the reference). VGG-11 ends in a plain Linear.

``width`` scales every channel count c to max(1, round(c·width)); ``blocks`` overrides the number of
residual blocks per stage (e.g. ``(1, 1, 1, 1)`` at ci scale). ``input_size`` is the side of the square
input; it fixes the operator each conv is normalised on.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from curvlab.lcnn.activations import CenteredSoftplus
from curvlab.lcnn.batchnorm import LipschitzBatchNorm1d, LipschitzBatchNorm2d
from curvlab.lcnn.blocks import (
    VARIANTS,
    ConvBNBlock,
    LipschitzResidualBlock,
    check_variant,
    conv_output_size,
    make_activation,
    make_batchnorm,
    make_linear,
)

__all__ = ["VARIANTS", "LipschitzResNet", "VGG", "resnet18", "resnet34", "vgg11", "moons_mlp",
           "beta_modules", "lipschitz_bn_modules", "parameter_groups"]

_STAGE_CHANNELS = (64, 128, 256, 512)
_STAGE_STRIDES = (1, 2, 2, 2)
_VGG11 = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512)
_NO_DECAY = ("log_beta", "log_gamma")


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _scaled(channels: int, width: float) -> int:
    return max(1, round(channels * width))


def _check_width(width) -> float:
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not math.isfinite(width) \
            or width <= 0:
        raise ValueError(f"width must be a positive finite number, got {width!r}")
    return float(width)


class LipschitzResNet(nn.Module):
    """ResNet of :class:`~curvlab.lcnn.blocks.LipschitzResidualBlock` s for square images.

    stem = ConvBNBlock(3×3, stride 1) → act (no max-pool); four stages of ``blocks[i]`` residual blocks
    with 64/128/256/512 × width channels and strides 1/2/2/2 (the first block of a stage carries the
    stride); AdaptiveAvgPool(1) → flatten → fc, fc = PyTorch ``spectral_norm(Linear)`` in every variant.
    """

    def __init__(self, blocks: Sequence[int], num_classes: int, variant: str = "standard", width: float = 1.0,
                 in_channels: int = 3, input_size: int = 32):
        super().__init__()
        check_variant(variant)
        width = _check_width(width)
        _positive_int("num_classes", num_classes)
        _positive_int("in_channels", in_channels)
        size = _positive_int("input_size", input_size)
        blocks = tuple(blocks)
        if len(blocks) != len(_STAGE_CHANNELS):
            raise ValueError(f"blocks must give {len(_STAGE_CHANNELS)} stage lengths, got {blocks!r}")
        for b in blocks:
            _positive_int("blocks", b)
        self.variant, self.width, self.input_size = variant, width, size

        channels = _scaled(_STAGE_CHANNELS[0], width)
        self.stem = nn.Sequential(ConvBNBlock(in_channels, channels, variant, size), make_activation(variant))
        stages = []
        for c, stride, n in zip(_STAGE_CHANNELS, _STAGE_STRIDES, blocks):
            out = _scaled(c, width)
            stage = []
            for i in range(n):
                block = LipschitzResidualBlock(channels, out, variant, size, stride=stride if i == 0 else 1)
                stage.append(block)
                channels, size = out, block.output_size
            stages.append(nn.Sequential(*stage))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.utils.parametrizations.spectral_norm(nn.Linear(channels, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, H) -> logits (B, num_classes)."""
        return self.fc(torch.flatten(self.pool(self.stages(self.stem(x))), 1))


def resnet18(num_classes: int, variant: str = "standard", width: float = 1.0, in_channels: int = 3,
             input_size: int = 32, blocks: Sequence[int] | None = None) -> LipschitzResNet:
    """ResNet-18 (blocks 2/2/2/2) of the LCNN paper; ``blocks`` overrides the stage lengths."""
    return LipschitzResNet((2, 2, 2, 2) if blocks is None else blocks, num_classes, variant, width,
                           in_channels, input_size)


def resnet34(num_classes: int, variant: str = "standard", width: float = 1.0, in_channels: int = 3,
             input_size: int = 32, blocks: Sequence[int] | None = None) -> LipschitzResNet:
    """ResNet-34 (blocks 3/4/6/3) of the LCNN paper; ``blocks`` overrides the stage lengths."""
    return LipschitzResNet((3, 4, 6, 3) if blocks is None else blocks, num_classes, variant, width,
                           in_channels, input_size)


class VGG(nn.Module):
    """VGG-11: [64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512] (× width) → flatten → Linear.

    Each number is a ConvBNBlock (3×3, padding 1, bias, as in the reference) followed by an activation;
    M is MaxPool(2). Four pools need ``input_size`` ≥ 16; the head is a plain Linear (no spectral
    norm) from 512·width·(H/16)² features, 512·4 for 32×32 inputs.

    ``shared_beta=False`` (default) gives every activation position its own instance, hence its own β
    in the lcnn variant. ``shared_beta=True`` is the reference's behaviour: one activation instance
    reused at all 8 positions, a single β that the per-use β penalty counts 8 times.
    """

    def __init__(self, num_classes: int, variant: str = "standard", width: float = 1.0, in_channels: int = 3,
                 input_size: int = 32, shared_beta: bool = False):
        super().__init__()
        check_variant(variant)
        width = _check_width(width)
        _positive_int("num_classes", num_classes)
        _positive_int("in_channels", in_channels)
        size = _positive_int("input_size", input_size)
        if size < 16:
            raise ValueError(f"input_size must be at least 16 for VGG-11's four 2x2 max-pools, got {size}")
        self.variant, self.width, self.input_size = variant, width, size
        shared = make_activation(variant) if shared_beta else None
        layers: list[nn.Module] = []
        channels = in_channels
        for item in _VGG11:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
                size = conv_output_size(size, 2, 2, 0)
                continue
            out = _scaled(item, width)
            block = ConvBNBlock(channels, out, variant, size, bias=True)
            layers += [block, shared if shared is not None else make_activation(variant)]
            channels, size = out, block.output_size
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(channels * size * size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, H) -> logits (B, num_classes)."""
        return self.fc(torch.flatten(self.features(x), 1))


def vgg11(num_classes: int, variant: str = "standard", width: float = 1.0, in_channels: int = 3,
          input_size: int = 32, shared_beta: bool = False) -> VGG:
    """VGG-11 of the LCNN paper (see :class:`VGG`; ``shared_beta=True`` is the reference's single β)."""
    return VGG(num_classes, variant, width, in_channels, input_size, shared_beta)


def moons_mlp(variant: str = "standard", hidden: Sequence[int] = (64, 64, 64)) -> nn.Sequential:
    """Two-moons classifier 2 → hidden → 2: each hidden layer is Linear → affine-free BN1d → activation.

    Standard: plain Linear, ``BatchNorm1d(affine=False)``, Softplus β=1000. LCNN: every Linear
    (the output layer too) of spectral norm 1, :class:`LipschitzBatchNorm1d`, a centred softplus with
    its own β per layer. The output is raw logits for cross-entropy.
    """
    check_variant(variant)
    hidden = tuple(hidden)
    if not hidden:
        raise ValueError("hidden must list at least one layer width")
    for h in hidden:
        _positive_int("hidden", h)
    layers: list[nn.Module] = []
    previous = 2
    for h in hidden:
        layers += [make_linear(variant, previous, h), make_batchnorm(variant, h, dim=1),
                   make_activation(variant)]
        previous = h
    layers.append(make_linear(variant, previous, 2))
    return nn.Sequential(*layers)


def beta_modules(model: nn.Module) -> Iterator[CenteredSoftplus]:
    """The centred softplus modules of ``model``, once per position in the network.

    A module registered at several positions (VGG-11 with ``shared_beta=True``) is yielded once per
    position, so Σβ over this iterator is the reference's per-call β penalty. Empty for the standard
    and softplus_wd variants.
    """
    for _, module in model.named_modules(remove_duplicate=False):
        if isinstance(module, CenteredSoftplus):
            yield module


def lipschitz_bn_modules(model: nn.Module) -> Iterator[nn.Module]:
    """The Lipschitz batch norms (1d and 2d) of ``model``, once per position; empty for non-lcnn variants."""
    for _, module in model.named_modules(remove_duplicate=False):
        if isinstance(module, (LipschitzBatchNorm1d, LipschitzBatchNorm2d)):
            yield module


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """``torch.optim`` parameter groups: L2 ``weight_decay`` on all weights, none on log β and log γ.

    β and γ are controlled by their own penalties (reg_β Σβ, reg_γ Σ|log γ|), not by weight decay, as
    in the reference's training script. Spectrally normalised weights decay through their
    unnormalised ``original``. Empty groups are left out.
    """
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) \
            or not math.isfinite(weight_decay) or weight_decay < 0:
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        (no_decay if name.rsplit(".", 1)[-1] in _NO_DECAY else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": float(weight_decay)},
              {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]
