"""What SGN refuses: empty batches, random or stateful modules in training mode, invalid checkpoints."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from curvlab.sgn_checks import check_batch, check_deterministic, check_state, nondeterministic_modules


def test_check_batch():
    check_batch((torch.zeros(3, 2),), torch.zeros(3))
    check_batch((torch.zeros(3, 2), torch.zeros(3, 4)), torch.zeros(3))
    for inputs, targets in (((torch.zeros(0, 2),), torch.zeros(0)), ((torch.zeros(3, 2),), torch.zeros(0)),
                            ((torch.zeros(3, 2), torch.zeros(0, 4)), torch.zeros(3))):
        with pytest.raises(ValueError, match="non-empty batch"):
            check_batch(inputs, targets)


def test_nondeterministic_modules_lists_each_by_name():
    model = nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4), nn.Dropout(0.5), nn.RReLU(),
                          nn.Sequential(nn.Dropout2d(0.1), nn.InstanceNorm1d(4)), nn.Dropout(0.0),
                          nn.BatchNorm1d(4, track_running_stats=False))
    assert nondeterministic_modules(model) == ["1 (BatchNorm1d)", "2 (Dropout)", "3 (RReLU)",
                                               "4.0 (Dropout2d)"]
    with pytest.raises(ValueError, match=r"1 \(BatchNorm1d\), 2 \(Dropout\)"):
        check_deterministic(model)
    model.eval()
    assert nondeterministic_modules(model) == []
    check_deterministic(model)
    model[2].train()                                        # one module back in training mode
    assert nondeterministic_modules(model) == ["2 (Dropout)"]


def test_attention_dropout_and_a_bare_module():
    attention = nn.MultiheadAttention(4, 2, dropout=0.1)
    assert nondeterministic_modules(attention) == ["<model> (MultiheadAttention)"]
    assert nondeterministic_modules(nn.MultiheadAttention(4, 2)) == []
    assert nondeterministic_modules(nn.Dropout(0.3)) == ["<model> (Dropout)"]


def good_state(n=3):
    return {"step": 4, "rho": 1e-3, "momentum": torch.ones(n), "momentum_steps": 4}


def test_check_state_accepts_and_normalises():
    step, rho, momentum, momentum_steps = check_state({**good_state(), "step": np.int64(5)}, 3)
    assert (type(step), step, rho, momentum_steps) == (int, 5, 1e-3, 4)
    assert torch.equal(momentum, torch.ones(3))
    assert check_state({**good_state(), "momentum": None, "momentum_steps": 0}, 3)[2] is None


@pytest.mark.parametrize("entry,value", [
    ("rho", math.nan), ("rho", -5.0), ("rho", 0.0), ("rho", -math.inf), ("rho", None), ("rho", True),
    ("step", -1), ("step", 2.0), ("step", True), ("momentum_steps", 5), ("momentum_steps", -1),
    ("momentum", torch.ones(4)), ("momentum", torch.ones(3, 1)),
    ("momentum", torch.ones(3, dtype=torch.int64)),
    ("momentum", torch.tensor([1.0, math.inf, 0.0])), ("momentum", [1.0, 1.0, 1.0]),
])
def test_check_state_rejects_naming_the_entry(entry, value):
    with pytest.raises(ValueError, match=entry):
        check_state({**good_state(), entry: value}, 3)


def test_check_state_needs_a_complete_dict():
    with pytest.raises(ValueError, match="lacks"):
        check_state({"step": 1}, 3)
    with pytest.raises(ValueError, match="dict"):
        check_state([1, 2], 3)
