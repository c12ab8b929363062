"""Reference architectures used by the papers.

Plain ``torch.nn`` modules, built from a few explicit arguments so that a notebook's parameters cell
can say exactly which network it trains. No torchvision: the ResNet below is written out here.

Shapes in comments: ``B`` batch, ``C`` channels, ``H, W`` image size.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

_ACTIVATIONS = {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
    "identity": nn.Identity,
}


def activation(name: str) -> nn.Module:
    """Return a fresh activation module by name (``relu``, ``sigmoid``, ``tanh``, ``softplus``)."""
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {name!r}") from None


def mlp(sizes: Sequence[int], activation_name: str = "relu", bias: bool = True,
        flatten: bool = True) -> nn.Sequential:
    """Multi-layer perceptron ``sizes[0] -> sizes[1] -> ... -> sizes[-1]``.

    The activation follows every linear layer except the last, so the output is raw (logits or a
    regression value). ``flatten=True`` puts an ``nn.Flatten`` first, so images (B, H, W) or
    (B, C, H, W) go in directly.

    Example: the ISAAC 5x400 MNIST network is ``mlp([784, 400, 400, 400, 400, 10])``
    (5 linear layers); the SGN MNIST net is ``mlp([784, 20, 20, 20, 10], "sigmoid")``.
    """
    if len(sizes) < 2:
        raise ValueError(f"sizes needs at least an input and an output size, got {list(sizes)}")
    if any(int(s) <= 0 for s in sizes):
        raise ValueError(f"sizes must be positive, got {list(sizes)}")
    layers: list[nn.Module] = [nn.Flatten()] if flatten else []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out, bias=bias))
        if i < len(sizes) - 2:
            layers.append(activation(activation_name))
    return nn.Sequential(*layers)


def autoencoder(sizes: Sequence[int] = (784, 1000, 500, 30), activation_name: str = "relu"
                ) -> nn.Sequential:
    """Deep auto-encoder, mirrored: ``784-1000-500-30-500-1000-784`` by default.

    The standard deep auto-encoder benchmark (used by ISAAC Figures 2, 3 and 7). The code layer
    (30) is linear; every other hidden layer has the activation; the output is raw and is compared
    with the (flattened) input by MSE.
    """
    sizes = list(sizes)
    full = sizes + sizes[-2::-1]                    # 784 1000 500 30 500 1000 784
    layers: list[nn.Module] = [nn.Flatten()]
    code = len(sizes) - 2                           # index of the layer that outputs the code
    for i, (n_in, n_out) in enumerate(zip(full[:-1], full[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i != code and i < len(full) - 2:
            layers.append(activation(activation_name))
    return nn.Sequential(*layers)


def conv_net(in_shape: Sequence[int], conv: Sequence[tuple[int, int]], fc: Sequence[int],
             n_classes: int = 10, activation_name: str = "relu", pool_after: Sequence[bool] | None = None,
             padding: int = 0) -> nn.Sequential:
    """Convolutional network: blocks ``conv(k x k) -> act [-> maxpool 2]``, then an MLP head.

    ``conv`` lists ``(out_channels, kernel_size)`` per block; ``pool_after[i]`` says whether block i
    ends in a 2x2 max-pool (default: every block). ``fc`` lists hidden widths of the head.
    The flattened size is computed by a dry run, so any input shape works.

    The SGN reference networks (``scripts/architectures``):
      arch_1 (Fashion LeNet): ``conv_net((1,28,28), [(6,5),(16,5)], [120,84])``       44,426 params
      arch_4 (CIFAR net):     ``conv_net((3,32,32), [(32,3),(64,3),(64,3)], [64],
                                         pool_after=[True,True,False])``             122,570 params
    """
    in_shape = tuple(int(s) for s in in_shape)
    if len(in_shape) != 3:
        raise ValueError(f"in_shape must be (C, H, W), got {in_shape}")
    pool_after = [True] * len(conv) if pool_after is None else list(pool_after)
    if len(pool_after) != len(conv):
        raise ValueError("pool_after must have one entry per conv block")
    layers: list[nn.Module] = []
    channels = in_shape[0]
    for (out_ch, k), pool in zip(conv, pool_after):
        layers += [nn.Conv2d(channels, out_ch, k, padding=padding), activation(activation_name)]
        if pool:
            layers.append(nn.MaxPool2d(2))
        channels = out_ch
    layers.append(nn.Flatten())
    with torch.no_grad():
        n_flat = nn.Sequential(*layers)(torch.zeros(1, *in_shape)).shape[1]
    widths = [n_flat, *fc, n_classes]
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(widths) - 2:
            layers.append(activation(activation_name))
    return nn.Sequential(*layers)


def sgn_arch_1(in_shape: Sequence[int] = (1, 28, 28), n_classes: int = 10) -> nn.Sequential:
    """SGN reference ``architecture_1`` (LeNet-5-like, Fashion-MNIST), ReLU."""
    return conv_net(in_shape, [(6, 5), (16, 5)], [120, 84], n_classes)


def sgn_arch_4(in_shape: Sequence[int] = (3, 32, 32), n_classes: int = 10) -> nn.Sequential:
    """SGN reference ``architecture_4`` (the CIFAR-10 network), ReLU."""
    return conv_net(in_shape, [(32, 3), (64, 3), (64, 3)], [64], n_classes,
                    pool_after=[True, True, False])


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs with batch norm, identity or 1x1 projection shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                          nn.BatchNorm2d(c_out))

    def forward(self, x):
        """relu(bn2(conv2(relu(bn1(conv1 x)))) + shortcut(x))."""
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR-style ResNet (3x3 stem, no initial max-pool), ``blocks`` per stage, ``width`` base channels.

    ``resnet18()`` is ``ResNet((2, 2, 2, 2), 64)`` with 11.2 M parameters; the final layer is
    ``self.fc`` (an ``nn.Linear``), the one ISAAC preconditions in Figures 6 and 8.
    """

    def __init__(self, blocks: Sequence[int] = (2, 2, 2, 2), width: int = 64, n_classes: int = 10,
                 in_channels: int = 3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU())
        stages, c = [], width
        for i, n in enumerate(blocks):
            c_out = width * 2 ** i
            for j in range(n):
                stages.append(BasicBlock(c, c_out, stride=2 if (i > 0 and j == 0) else 1))
                c = c_out
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, n_classes)

    def forward(self, x):                            # x: (B, C, H, W)
        """Class logits (B, n_classes): stem, residual stages, global average pool, linear."""
        h = self.pool(self.stages(self.stem(x)))     # (B, c, 1, 1)
        return self.fc(torch.flatten(h, 1))          # (B, n_classes)


def resnet18(n_classes: int = 10, width: int = 64, in_channels: int = 3) -> ResNet:
    """ResNet-18 for 32x32 inputs; ``width`` < 64 gives the reduced CPU variant."""
    return ResNet((2, 2, 2, 2), width, n_classes, in_channels)


def resnet34(n_classes: int = 10, width: int = 64, in_channels: int = 3) -> ResNet:
    """ResNet-34 for 32x32 inputs."""
    return ResNet((3, 4, 6, 3), width, n_classes, in_channels)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
