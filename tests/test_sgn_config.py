"""SGNConfig: one frozen, validated value of every SGN hyperparameter, stored whole in a record."""
import dataclasses
import json
import math

import numpy as np
import pytest

from curvlab.sgn_config import SGNConfig


def test_defaults_are_the_published_settings():
    c = SGNConfig()
    assert (c.rho, c.rho_min, c.cg_warmup_iter, c.cg_warmup_steps, c.cg_tol) == (1e-4, 1e-6, 10, 9, 1e-6)
    assert c.trust_region and c.line_search and c.beta == 0.0 and not c.preconditioner
    assert (c.tr_lower, c.tr_upper, c.tr_factor, c.max_backtracks) == (0.25, 0.75, 1.5, 10)


def test_frozen():
    c = SGNConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.rho = 1.0


def test_round_trip_through_json():
    c = SGNConfig(rho=1e-3, cg_max_iter=3, beta=0.9, trust_region=False, rho_schedule="cos",
                  line_search_rule="reference", method="jvp")
    record = json.loads(json.dumps(c.as_dict()))
    assert SGNConfig.from_dict(record) == c
    assert set(record) == {f.name for f in dataclasses.fields(SGNConfig)}
    assert SGNConfig.from_dict({"cg_max_iter": 3}) == SGNConfig(cg_max_iter=3)   # the rest: defaults


def test_numpy_scalars_are_normalised():
    c = SGNConfig(rho=np.float32(0.5), cg_max_iter=np.int64(4), alpha=1)
    assert type(c.rho) is float and c.rho == float(np.float32(0.5))
    assert type(c.cg_max_iter) is int and c.cg_max_iter == 4
    assert type(c.alpha) is float
    json.dumps(c.as_dict())
    assert c == SGNConfig(rho=float(np.float32(0.5)), cg_max_iter=4)


def test_replace_validates_and_rejects_unknown_names():
    c = SGNConfig()
    assert c.replace(cg_max_iter=5).cg_max_iter == 5 and c.cg_max_iter == 10
    with pytest.raises(ValueError, match="cg_max_iter"):
        c.replace(cg_max_iter=0)
    with pytest.raises(TypeError, match="cg_iters"):
        c.replace(cg_iters=5)


def test_from_dict_rejects_unknown_keys_and_non_mappings():
    with pytest.raises(ValueError, match="cg_iters"):
        SGNConfig.from_dict({"cg_iters": 3})
    with pytest.raises(ValueError, match="mapping"):
        SGNConfig.from_dict([("rho", 1.0)])


def test_cg_iterations_at():
    c = SGNConfig(cg_max_iter=2, cg_warmup_iter=7, cg_warmup_steps=3)
    assert [c.cg_iterations_at(t) for t in range(1, 6)] == [7, 7, 7, 2, 2]
    assert SGNConfig(cg_max_iter=2, cg_warmup_steps=0).cg_iterations_at(1) == 2


@pytest.mark.parametrize("kwargs,name", [
    ({"rho": 0.0}, "rho"), ({"rho": -5.0}, "rho"), ({"rho": math.nan}, "rho"), ({"rho": math.inf}, "rho"),
    ({"rho": True}, "rho"), ({"rho": "1e-3"}, "rho"),
    ({"rho_min": -1.0}, "rho_min"), ({"rho": 1e-6, "rho_min": 1e-4}, "rho_min"),
    ({"cg_max_iter": 0}, "cg_max_iter"), ({"cg_max_iter": 2.5}, "cg_max_iter"),
    ({"cg_max_iter": True}, "cg_max_iter"), ({"cg_warmup_iter": 0}, "cg_warmup_iter"),
    ({"cg_warmup_steps": -1}, "cg_warmup_steps"), ({"cg_tol": -1.0}, "cg_tol"),
    ({"cg_tol": math.nan}, "cg_tol"),
    ({"precond_exponent": 2.0}, "precond_exponent"), ({"preconditioner": "yes"}, "preconditioner"),
    ({"trust_region": 1}, "trust_region"), ({"tr_lower": 0.8}, "tr_lower"), ({"tr_lower": -0.1}, "tr_lower"),
    ({"tr_factor": 1.0}, "tr_factor"), ({"rho_schedule": "exp"}, "rho_schedule"),
    ({"rho_schedule": "linear"}, "rho_schedule"),
    ({"trust_region": False, "schedule_steps": 0}, "schedule_steps"),
    ({"line_search": 1}, "line_search"), ({"line_search_rule": "wolfe"}, "line_search_rule"),
    ({"armijo_c": 0.0}, "armijo_c"), ({"armijo_c": 1.0}, "armijo_c"),
    ({"backtrack_factor": 1.0}, "backtrack_factor"), ({"backtrack_factor": 0.0}, "backtrack_factor"),
    ({"max_backtracks": -1}, "max_backtracks"), ({"alpha": 0.0}, "alpha"), ({"alpha": math.inf}, "alpha"),
    ({"beta": 1.0}, "beta"), ({"beta": -0.1}, "beta"), ({"prediction_rule": "x"}, "prediction_rule"),
    ({"reject_uphill": None}, "reject_uphill"), ({"method": "x"}, "method"),
])
def test_invalid_values_raise_naming_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        SGNConfig(**kwargs)
    with pytest.raises(ValueError, match=name):
        SGNConfig.from_dict(kwargs)


def test_every_problem_is_reported_at_once():
    with pytest.raises(ValueError) as err:
        SGNConfig(rho=-1.0, cg_max_iter=0, beta=2.0)
    message = str(err.value)
    assert "rho must" in message and "cg_max_iter" in message and "beta" in message
