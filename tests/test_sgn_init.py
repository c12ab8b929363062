"""The SGN reference initialisation: the reference's distributions, bounds, seeds and draws."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from curvlab import models
from curvlab.sgn import sgn_reference_init


@pytest.fixture(autouse=True)
def _float64(float64):
    """Every test here runs in float64 (conftest's ``float64`` fixture)."""
    yield


def test_reference_init_mlp():
    model = models.mlp([6, 5, 3], "sigmoid")
    sgn_reference_init(model)
    rng = np.random.RandomState(10)
    first, second = rng.standard_normal((6, 5)), rng.standard_normal((5, 3))
    torch.testing.assert_close(model[1].weight, torch.from_numpy(first.T))
    torch.testing.assert_close(model[3].weight, torch.from_numpy(second.T))
    assert torch.count_nonzero(model[1].bias) == 0 and torch.count_nonzero(model[3].bias) == 0
    again = sgn_reference_init(models.mlp([6, 5, 3], "sigmoid"))
    assert torch.equal(again[1].weight, model[1].weight)
    other = sgn_reference_init(models.mlp([6, 5, 3], "sigmoid"), seed=3)
    assert not torch.equal(other[1].weight, model[1].weight)


def test_reference_init_convnet_bounds():
    model = models.sgn_arch_1()
    sgn_reference_init(model)
    conv1, conv2 = model[0], model[3]
    fcs = [m for m in model if isinstance(m, nn.Linear)]
    assert conv1.weight.abs().max() <= math.sqrt(6 / (6 * 1 * 25))
    assert conv2.weight.abs().max() <= math.sqrt(6 / (16 * 6 * 25))
    assert conv2.weight.abs().max() > 0.9 * math.sqrt(6 / (16 * 6 * 25))
    for fc in fcs:                                              # the network's output size, 10
        bound = math.sqrt(6 / (fc.in_features + 10))
        assert bound * 0.9 < fc.weight.abs().max() <= bound
    rng = np.random.RandomState(1)
    torch.testing.assert_close(conv1.weight, torch.from_numpy(
        rng.uniform(-math.sqrt(6 / 150), math.sqrt(6 / 150), size=(6, 1, 5, 5))))
    with pytest.raises(ValueError):
        sgn_reference_init(models.resnet18(width=4))
