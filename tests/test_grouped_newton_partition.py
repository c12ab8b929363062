import dataclasses

import pytest
import torch
from torch import nn

from curvlab.grouped_newton_partition import (
    PARTITION_KINDS,
    Partition,
    group_direction,
    make_partition,
    trainable_parameters,
)


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2))


def test_canonical_one_group_per_tensor_in_model_order():
    model = mlp()
    p = make_partition(model, "canonical")
    names = [n for n, _ in model.named_parameters()]
    assert p.names == tuple((n,) for n in names)
    assert p.labels == tuple(names)
    assert p.size == 6 and p.parameters == tuple(names)
    assert [p.group_of(n) for n in names] == list(range(6))


def test_trivial_is_one_group():
    model = mlp()
    p = make_partition(model, "trivial")
    assert p.size == 1 and p.labels == ("all",)
    assert p.names[0] == tuple(n for n, _ in model.named_parameters())


def test_weights_biases_puts_biases_and_one_dimensional_tensors_together():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 2))
    p = make_partition(model, "weights_biases")
    assert p.labels == ("weights", "biases")
    assert p.names == (("0.weight", "3.weight"), ("0.bias", "1.weight", "1.bias", "3.bias"))


def test_weights_biases_drops_an_empty_group():
    model = nn.Sequential(nn.Linear(3, 4, bias=False), nn.Tanh(), nn.Linear(4, 2, bias=False))
    p = make_partition(model, "weights_biases")
    assert p.labels == ("weights",) and p.names == (("0.weight", "2.weight"),)


def test_frozen_parameters_belong_to_no_group():
    model = mlp()
    model[0].weight.requires_grad_(False)
    for kind in PARTITION_KINDS:
        assert "0.weight" not in make_partition(model, kind).parameters
    assert list(trainable_parameters(model))[0] == "0.bias"
    with pytest.raises(ValueError, match="not trainable"):
        make_partition(model, {"a": ["0.weight"], "b": ["bias", "2.weight", "4.weight"]})


def test_dict_by_names_and_suffixes_keeps_the_dict_order():
    model = mlp()
    p = make_partition(model, {"biases": ["bias"], "last": ["4.weight"], "rest": ["0.weight", "2.weight"]})
    assert p.labels == ("biases", "last", "rest")
    assert p.names == (("0.bias", "2.bias", "4.bias"), ("4.weight",), ("0.weight", "2.weight"))


def test_suffix_matches_whole_name_components_only():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(2, 2)
            self.block = nn.Sequential(nn.Linear(2, 2))
    model = Net()
    # "0.weight" selects block.0.weight, never fc1.weight ("fc1.weight" does not end in ".0.weight")
    p = make_partition(model, {"a": ["0.weight", "0.bias"], "b": ["fc1.weight", "fc1.bias"]})
    assert p.names == (("block.0.weight", "block.0.bias"), ("fc1.weight", "fc1.bias"))
    with pytest.raises(ValueError, match="matches no parameter"):
        make_partition(model, {"a": ["1.weight"], "b": ["bias", "weight"]})


def test_dict_missing_and_duplicated_parameters_are_listed():
    model = mlp()
    with pytest.raises(ValueError, match=r"in no group: \['4.weight', '4.bias'\]"):
        make_partition(model, {"a": ["0.weight", "0.bias", "2.weight", "2.bias"]})
    with pytest.raises(ValueError, match=r"more than one group: \['0.bias', '4.weight'\]"):
        make_partition(model, {"w": ["weight", "0.bias"], "b": ["bias", "4.weight"]})


@pytest.mark.parametrize("kind", ["newton", 3, {}, {"a": []}, {"a": "0.weight"}, {1: ["weight"]}])
def test_invalid_kinds_raise(kind):
    with pytest.raises(ValueError, match="partition"):
        make_partition(mlp(), kind)


def test_model_without_trainable_parameters_raises():
    model = mlp().requires_grad_(False)
    with pytest.raises(ValueError, match="model"):
        make_partition(model)


def test_partition_is_validated_and_checked_against_the_model():
    model = mlp()
    with pytest.raises(ValueError, match="more than one group"):
        Partition(names=(("0.weight",), ("0.weight",)), labels=("a", "b"))
    with pytest.raises(ValueError, match="labels"):
        Partition(names=(("0.weight",),), labels=("a", "b"))
    with pytest.raises(ValueError, match="distinct"):
        Partition(names=(("0.weight",), ("0.bias",)), labels=("a", "a"))
    with pytest.raises(ValueError, match="non-empty"):
        Partition(names=(("0.weight",), ()), labels=("a", "b"))
    with pytest.raises(ValueError, match="names"):
        Partition(names="0.weight", labels=("a",))
    full = make_partition(model, "canonical")
    assert make_partition(model, full) is full
    partial = Partition(names=(("0.weight",), ("0.bias",)), labels=("a", "b"))
    with pytest.raises(ValueError, match="in no group"):
        make_partition(model, partial)
    with pytest.raises(ValueError, match="not trainable parameters of the model"):
        make_partition(model, Partition(names=(*full.names, ("9.weight",)), labels=(*full.labels, "x")))
    with pytest.raises(ValueError, match="in no group"):
        full.group_of("9.weight")
    with pytest.raises(dataclasses.FrozenInstanceError):
        full.names = ()


def test_group_direction_matches_by_name_not_by_position():
    model = mlp()
    params = trainable_parameters(model)
    u = {n: torch.full_like(p, float(i)) for i, (n, p) in enumerate(params.items())}
    reversed_u = dict(reversed(list(u.items())))          # insertion order must not matter
    p = make_partition(model, {"last": ["4.weight", "4.bias"], "middle": ["2.weight", "2.bias"],
                               "first": ["0.weight", "0.bias"]})
    grouped = group_direction(p, params, {**reversed_u, "extra": torch.zeros(1)})
    for group, tensors in zip(p.names, grouped):
        for name, t in zip(group, tensors):
            assert t is u[name]
    # the first group is the last layer: a positional pairing would have handed it u of 0.weight (0.0)
    assert float(grouped[0][0].flatten()[0]) == 4.0


def test_group_direction_errors():
    model = mlp()
    params = trainable_parameters(model)
    p = make_partition(model)
    u = {n: torch.zeros_like(t) for n, t in params.items()}
    with pytest.raises(ValueError, match=r"no tensor for parameters \['2.bias'\]"):
        group_direction(p, params, {n: t for n, t in u.items() if n != "2.bias"})
    with pytest.raises(ValueError, match=r"direction\['0.weight'\] must be a tensor of shape \(4, 3\)"):
        group_direction(p, params, {**u, "0.weight": torch.zeros(3, 4)})
    with pytest.raises(ValueError, match=r"direction\['0.bias'\]"):
        group_direction(p, params, {**u, "0.bias": [0.0] * 4})
    with pytest.raises(ValueError, match="dict"):
        group_direction(p, params, list(u.values()))
