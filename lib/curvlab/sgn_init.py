"""The SGN reference code's initialisation (``gmatilde/SGN``), for reproductions that start where it did."""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["sgn_reference_init"]


def sgn_reference_init(model: nn.Module, seed: Optional[int] = None) -> nn.Module:
    """Initialise ``model`` in place as the SGN reference code does; returns the model.

    * MLP (only ``nn.Linear`` layers): every weight ~ N(0, 1) (not scaled by fan-in), biases 0, drawn
      from ``numpy.random.RandomState(seed)`` with seed 10 by default (the reference seeds its MLP
      internally, so every run starts from the same weights). SGD's weak MNIST baselines depend on
      this init.
    * ConvNet (``nn.Conv2d`` then ``nn.Linear`` layers): ``RandomState(seed)`` with seed 1 by default;
      conv weights ~ U(+-sqrt(6 / (n_filters n_in k_h k_w))); FC weights ~ U(+-sqrt(6 / (fan_in +
      n_classes))) with n_classes the *network's* output size for every FC layer; biases 0.

    Draw order (our reading of the reference; the distributions, bounds and seeds are as specified):
    layers in registration order, convs before FC layers, one array per weight, FC weights drawn in the
    Theano layout (fan_in, fan_out) and transposed into PyTorch's (fan_out, fan_in); biases not drawn.
    Other parameterised layers raise ``ValueError``.
    """
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    covered = {id(p) for m in linears + convs for p in m.parameters(recurse=False)}
    others = [n for n, p in model.named_parameters() if id(p) not in covered]
    if others or not linears:
        raise ValueError("sgn_reference_init supports networks of nn.Linear (and nn.Conv2d) layers only"
                         + (f"; other parameters: {others}" if others else ""))
    rng = np.random.RandomState(seed if seed is not None else (1 if convs else 10))

    def assign(param: Tensor, values: np.ndarray) -> None:
        with torch.no_grad():
            param.copy_(torch.from_numpy(np.ascontiguousarray(values)).to(param.dtype))

    n_classes = linears[-1].out_features
    for conv in convs:
        n_filters, n_in, kh, kw = conv.weight.shape
        bound = math.sqrt(6.0 / (n_filters * n_in * kh * kw))
        assign(conv.weight, rng.uniform(-bound, bound, size=(n_filters, n_in, kh, kw)))
        if conv.bias is not None:
            nn.init.zeros_(conv.bias)
    for lin in linears:
        fan_in, fan_out = lin.in_features, lin.out_features
        if convs:
            bound = math.sqrt(6.0 / (fan_in + n_classes))
            w = rng.uniform(-bound, bound, size=(fan_in, fan_out))
        else:
            w = rng.standard_normal((fan_in, fan_out))
        assign(lin.weight, w.T)
        if lin.bias is not None:
            nn.init.zeros_(lin.bias)
    return model
