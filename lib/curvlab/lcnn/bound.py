"""The data-free curvature bound of a feed-forward chain from its layers' slopes and curvatures.

For f = f_n ∘ … ∘ f_1 with Lipschitz constants L_i (slopes) and curvatures κ_i = sup ‖∇²f_i‖, the
chain rule gives (this is the form the specification states; the paper's exact theorem is [PDF]):

    ‖∇²f‖ ≤ Σ_i κ_i · (Π_{j<i} L_j)² · Π_{j>i} L_j.

Linear layers and batch norm have κ = 0; a softplus of curvature β has κ = sup s″ = β/4 and L = 1. With
spectrally normalised linear layers (L = 1) only the activations' β and the batch norms' γ remain,
which is what the LCNN penalties pull down.
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import torch
from torch import nn

from .activations import CenteredSoftplus
from .batchnorm import LipschitzBatchNorm1d, LipschitzBatchNorm2d
from .spectral import operator_norm

__all__ = ["layer_terms", "chain_bound"]


def layer_terms(layers: Iterable[nn.Module]) -> list[tuple[float, float]]:
    """(L_i, κ_i) of each layer of a chain, in order (eval-mode constants, from the current weights).

    Linear: (‖W‖₂, 0); centred softplus and torch's Softplus: (1, β/4); Lipschitz batch norm:
    (min(1/σ_min, γ), 0); plain batch norm: (1/σ_min, 0). Anything else raises ``TypeError``.
    """
    terms = []
    for m in layers:
        if isinstance(m, nn.Linear):
            terms.append((operator_norm(m), 0.0))
        elif isinstance(m, CenteredSoftplus):
            terms.append((1.0, float(m.beta.detach()) / 4))
        elif isinstance(m, nn.Softplus):
            terms.append((1.0, m.beta / 4))
        elif isinstance(m, (LipschitzBatchNorm1d, LipschitzBatchNorm2d)):
            terms.append((float(m.lipschitz().detach()), 0.0))
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            terms.append((float(1 / torch.sqrt(m.running_var.min() + m.eps)), 0.0))
        else:
            raise TypeError(f"no (L, κ) for {type(m).__name__}")
    return terms


def chain_bound(terms: Sequence[tuple[float, float]]) -> float:
    """Σ_i κ_i (Π_{j<i} L_j)² Π_{j>i} L_j for the (L_i, κ_i) of :func:`layer_terms`."""
    slopes = [t[0] for t in terms]
    return sum(k * math.prod(slopes[:i]) ** 2 * math.prod(slopes[i + 1:]) for i, (_, k) in enumerate(terms))
