"""Multiply-adds of a forward pass: how a paper-scale estimate scales ci clocks to a larger network."""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn


def multiply_adds(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-adds of one forward pass on one input of ``input_shape`` (convolutions and linear layers).

    A conv layer costs out_numel · (C_in / groups) · k_h · k_w, a linear one in · out; activations,
    normalisation and pooling are not counted. The model runs once in eval mode, its mode restored.
    """
    total = [0]

    def count(m, inputs, output):
        if isinstance(m, nn.Conv2d):
            total[0] += output.numel() * m.in_channels // m.groups * math.prod(m.kernel_size)
        elif isinstance(m, nn.Linear):
            total[0] += m.in_features * m.out_features

    was = model.training
    hooks = [m.register_forward_hook(count) for m in model.modules()]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *input_shape))
    finally:
        for h in hooks:
            h.remove()
        model.train(was)
    return total[0]
