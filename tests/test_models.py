"""curvlab.models: parameter counts the papers state, shapes, errors."""
import pytest
import torch

from curvlab import models


@pytest.mark.parametrize("build,count", [
    (lambda: models.mlp([13, 100, 100, 1], "sigmoid"), 11_601),       # SGN Boston
    (lambda: models.mlp([1, 20, 20, 20, 1], "sigmoid"), 901),         # SGN sine
    (lambda: models.mlp([784, 20, 20, 20, 10], "sigmoid"), 16_750),   # SGN MNIST
    (models.sgn_arch_1, 44_426),                                       # SGN Fashion LeNet
    (models.sgn_arch_4, 122_570),                                      # SGN CIFAR net
])
def test_parameter_counts_match_the_papers(build, count):
    assert models.count_parameters(build()) == count


def test_shapes():
    assert models.mlp([784, 400, 400, 400, 400, 10])(torch.zeros(2, 28, 28)).shape == (2, 10)
    assert models.autoencoder()(torch.zeros(2, 784)).shape == (2, 784)
    assert models.sgn_arch_4()(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert models.resnet18(width=8)(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert sum(isinstance(m, torch.nn.Linear) for m in models.autoencoder().modules()) == 6


def test_errors():
    with pytest.raises(ValueError, match="activation"):
        models.mlp([2, 3, 2], "swish")
    with pytest.raises(ValueError, match="sizes"):
        models.mlp([3])
