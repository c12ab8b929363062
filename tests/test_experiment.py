"""curvlab.experiment: hashing, caching, atomic records, seeding, budgets."""
import json
import os

import pytest
import torch

from curvlab import experiment as E


def train_fn(cfg, ctx):
    # random init and shuffling both come from the seed
    w = torch.randn(3)
    order = torch.randperm(10, generator=ctx.generator)
    return {"metrics": {"w": w.tolist(), "order": order.tolist()}, "summary": {"n": 10}}


CFG = {"name": "toy", "seed": 3, "dataset": "fashion_mnist_32", "lr": 0.1, "budget": {"steps": 5}}


def test_config_hash_is_order_independent_and_sensitive():
    a = E.config_hash({"a": 1, "b": [1, 2]})
    assert a == E.config_hash({"b": [1, 2], "a": 1})
    assert a != E.config_hash({"a": 1, "b": [1, 3]})


def test_record_contents_and_stand_in_label():
    rec = E.run(train_fn, CFG, notebook="nb", scale="ci")
    assert rec["config"] == CFG and rec["status"] == "ok"
    assert rec["dataset"]["stand_in_for"] == "CIFAR-10" and "stand-in" in rec["dataset"]["label"]
    env = rec["environment"]
    assert env["torch"] == torch.__version__ and env["threads"] == torch.get_num_threads()
    path = E.record_path(CFG, "nb", "ci")
    assert path.exists() and path.parent == E.results_dir() / "ci" / "nb"


def test_cache_hit_returns_identical_record_without_rerunning():
    first = E.run(train_fn, CFG, notebook="nb", scale="ci")
    calls = []
    second = E.run(lambda c, x: calls.append(1) or train_fn(c, x), CFG, notebook="nb", scale="ci")
    assert second == first and calls == []
    forced = E.run(lambda c, x: calls.append(1) or train_fn(c, x), CFG, notebook="nb", scale="ci", force=True)
    assert calls == [1] and forced["metrics"] == first["metrics"]


def test_same_seed_same_metrics_different_seed_different_metrics():
    a = E.run(train_fn, CFG, notebook="nb", scale="ci")
    b = E.run(train_fn, CFG, notebook="nb", scale="ci", force=True)
    c = E.run(train_fn, {**CFG, "seed": 4}, notebook="nb", scale="ci")
    assert a["metrics"] == b["metrics"]
    assert a["metrics"]["w"] != c["metrics"]["w"] and a["metrics"]["order"] != c["metrics"]["order"]


def test_interrupted_write_leaves_no_corrupt_record(monkeypatch):
    E.run(train_fn, CFG, notebook="nb", scale="ci")
    path = E.record_path(CFG, "nb", "ci")
    before = path.read_text()

    def dump_then_die(obj, fh, **kw):
        fh.write('{"half": ')
        raise KeyboardInterrupt
    monkeypatch.setattr(E.json, "dump", dump_then_die)
    with pytest.raises(KeyboardInterrupt):
        E.run(train_fn, CFG, notebook="nb", scale="ci", force=True)
    monkeypatch.undo()
    assert path.read_text() == before
    assert json.loads(before)["config"] == CFG
    assert sorted(os.listdir(path.parent)) == [path.name]      # no temporary file left behind


def test_interrupted_first_run_leaves_no_record():
    def dies(cfg, ctx):
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        E.run(dies, {**CFG, "seed": 99}, notebook="nb", scale="ci")
    assert not E.record_path({**CFG, "seed": 99}, "nb", "ci").exists()


def test_bad_inputs():
    with pytest.raises(ValueError, match="scale"):
        E.run(train_fn, CFG, notebook="nb", scale="huge")
    with pytest.raises(TypeError, match="metrics"):
        E.run(lambda c, x: {"oops": 1}, {**CFG, "seed": 5}, notebook="nb", scale="ci")
    with pytest.raises(ValueError, match="steps"):
        E.Budget(steps=0)
    with pytest.raises(ValueError):
        E.Budget()


def test_budget_rule():
    b = E.Budget(steps=10, seconds=2.0)
    assert not b.exhausted(9, 0.5, 1.0)
    assert b.exhausted(10, 0.5, 1.0) and b.exhausted(1, 0.1, 2.5)
    assert E.Budget(epochs=2).exhausted(20, 2.0, 0.0)


@pytest.mark.parametrize("cuda", [True, False])
def test_device_auto_picks_cuda_exactly_when_present(monkeypatch, cuda):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert E.resolve_device("auto") == torch.device("cuda" if cuda else "cpu")
    assert E.resolve_device("cpu") == torch.device("cpu")          # an explicit device is kept


def test_stale_records_lists_changed_code_not_unversioned(tmp_path):
    E.run(train_fn, CFG, notebook="nbs", scale="ci")
    E.run(train_fn, {**CFG, "seed": 11}, notebook="nbs", scale="ci")
    assert E.stale_records("nbs", "ci") == []
    fresh, other = sorted((E.results_dir() / "ci" / "nbs").glob("*.json"))
    rec = json.loads(fresh.read_text())
    assert rec["code"]["modules"]                                  # the code version is recorded
    name = next(iter(rec["code"]["modules"]))
    rec["code"]["modules"][name] = "0" * 16                        # as if made by other code
    fresh.write_text(json.dumps(rec))
    legacy = json.loads(other.read_text())
    del legacy["code"]                                             # made before provenance existed
    other.write_text(json.dumps(legacy))
    assert E.stale_records("nbs", "ci") == [fresh]
    report = E.record_report("ci")
    assert len(report["stale"]) == 1 and len(report["unversioned"]) == 1


def test_load_records():
    E.run(train_fn, CFG, notebook="nb2", scale="paper")
    E.run(train_fn, {**CFG, "seed": 8}, notebook="nb2", scale="paper")
    assert len(E.load_records("nb2", "paper")) == 2


def test_environment_names_the_cpu():
    assert E.environment("cpu")["device_name"] == E.cpu_name() != ""
