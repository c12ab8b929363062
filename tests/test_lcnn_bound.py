import math

import pytest
import torch
from torch import nn

from curvlab.lcnn import models as M
from curvlab.lcnn.bound import chain_bound, layer_terms

pytestmark = pytest.mark.usefixtures("float64", "one_thread")


def test_chain_bound_is_the_chain_rule_sum():
    terms = [(2.0, 0.0), (1.0, 0.5), (3.0, 0.0), (1.0, 0.25)]
    # κ_2 (L_1)² L_3 L_4 + κ_4 (L_1 L_2 L_3)²
    assert chain_bound(terms) == pytest.approx(0.5 * 4 * 3 + 0.25 * 36)
    assert chain_bound([(5.0, 0.0)]) == 0.0                           # linear maps have no curvature


@pytest.mark.parametrize("variant", ["standard", "lcnn"])
def test_bound_holds_for_the_two_moons_mlps_and_reads_each_layer(variant):
    torch.manual_seed(0)
    net = M.moons_mlp(variant, hidden=(8, 8)).double().train()
    x = torch.randn(64, 2)
    with torch.no_grad():
        for _ in range(5):
            net(x)
    terms = layer_terms(net)
    assert len(terms) == len(net) and all(L > 0 and k >= 0 for L, k in terms)
    net.eval()
    H = torch.vmap(torch.func.hessian(lambda z: net(z[None])[0, 0]))(x)
    assert float(torch.linalg.matrix_norm(H, ord=2).max()) <= chain_bound(terms)


def test_unknown_layer_is_an_error():
    with pytest.raises(TypeError, match="Tanh"):
        layer_terms([nn.Tanh()])


def test_multiply_adds_counts_conv_and_linear():
    from curvlab.repro._cost import multiply_adds
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 8 * 8, 5)).train()
    assert multiply_adds(model, (3, 8, 8)) == 4 * 8 * 8 * 3 * 9 + 256 * 5
    assert model.training                                               # its mode is restored
    assert math.isclose(multiply_adds(nn.Linear(7, 2), (7,)), 14)
