import json

import pytest

from curvlab import experiment as E
from curvlab import provenance as P
from curvlab.repro import isaac as repro_isaac


def test_hash_ignores_comments_and_docstrings_not_code():
    base = "def f(x):\n    return x + 1\n"
    assert P.source_hash(base) == P.source_hash('def f(x):\n    """Doc."""\n    return x + 1  # one\n')
    assert P.source_hash(base) != P.source_hash("def f(x):\n    return x + 2\n")


def test_reached_modules_follow_imports():
    names = P.reached_modules(repro_isaac.train)
    assert "curvlab.repro.isaac" in names and "curvlab.isaac" in names and "curvlab.training" in names


def test_code_version_and_stale_detection(tmp_path, monkeypatch):
    monkeypatch.setenv("CURVLAB_RESULTS", str(tmp_path))
    from _sweep_fns import toy_run
    rec = E.run(toy_run, {"lr": 0.1, "steps": 3, "seed": 1}, notebook="nb", scale="ci")
    assert rec["code"]["commit"] is None or len(rec["code"]["commit"]) == 40
    assert E.record_state(rec) == "fresh"
    path = next((tmp_path / "ci" / "nb").glob("*.json"))
    rec["code"]["modules"]["curvlab.experiment"] = "0" * 16          # as if made by other code
    path.write_text(json.dumps(rec))
    assert E.record_state(E.load_record(path)) == "stale"
    assert E.record_report("ci")["stale"] == [str(path.relative_to(tmp_path))]
    monkeypatch.setenv("RERUN_STALE", "1")
    again = E.run(toy_run, {"lr": 0.1, "steps": 3, "seed": 1}, notebook="nb", scale="ci")
    assert E.record_state(again) == "fresh"
    del rec["code"]
    assert E.record_state(rec) == "unversioned"


@pytest.mark.parametrize("content", ["{}", '{"name": "x", "config": {}', "[1, 2]", ""])
def test_corrupt_records_are_rejected_with_path_and_remedy(tmp_path, content):
    path = tmp_path / "r.json"
    path.write_text(content)
    with pytest.raises(E.CorruptRecord, match="delete .*r.json"):
        E.load_record(path)


def test_corrupt_record_is_never_a_cache_hit(tmp_path, monkeypatch):
    monkeypatch.setenv("CURVLAB_RESULTS", str(tmp_path))
    from _sweep_fns import toy_run
    cfg = {"lr": 0.1, "steps": 3, "seed": 1}
    path = E.record_path(cfg, "nb", "ci")
    path.parent.mkdir(parents=True)
    path.write_text("{}")
    with pytest.warns(UserWarning, match="re-running"):
        rec = E.run(toy_run, cfg, notebook="nb", scale="ci")
    assert rec["metrics"]["loss"] and E.load_record(path)["config_hash"] == rec["config_hash"]


def test_record_names_stay_inside_results(tmp_path, monkeypatch):
    monkeypatch.setenv("CURVLAB_RESULTS", str(tmp_path))
    path = E.record_path({"seed": 1}, "../../etc", "ci", name="../../x/y")
    assert tmp_path in path.resolve().parents


def test_seed_and_budget_types(tmp_path, monkeypatch):
    monkeypatch.setenv("CURVLAB_RESULTS", str(tmp_path))
    from _sweep_fns import toy_run
    with pytest.raises(ValueError, match="seed"):
        E.run(toy_run, {"lr": 0.1, "steps": 3, "seed": "1"}, notebook="nb", scale="ci")
    with pytest.raises(ValueError, match="budget epochs"):
        E.Budget(epochs="3")


def test_orphaned_temporary_of_a_dead_writer_is_removed(tmp_path):
    target = tmp_path / "r.json"
    orphan = tmp_path / ".r.json.999999999.abc.tmp"        # no such process
    orphan.write_text("{")
    E.atomic_write_json(target, {"a": 1})
    assert not orphan.exists() and json.loads(target.read_text()) == {"a": 1}


def test_a_module_run_as_a_script_is_recorded_under_its_importable_name(monkeypatch):
    # `python -m curvlab.repro.isaac` runs the file as __main__, and Dask's worker processes re-import
    # it as __mp_main__: a record must name curvlab.repro.isaac, or no later process can check it
    import importlib.util
    import sys
    spec = importlib.util.find_spec("curvlab.repro.isaac")
    script = importlib.util.module_from_spec(spec)
    script.__name__ = "__mp_main__"
    script.__package__ = "curvlab.repro"
    monkeypatch.setitem(sys.modules, "__mp_main__", script)
    exec(compile(open(spec.origin).read(), spec.origin, "exec"), script.__dict__)   # as runpy does
    names = P.reached_modules(script.train)
    assert "curvlab.repro.isaac" in names and "__mp_main__" not in names and "curvlab.isaac" in names
    code = P.code_version(script.train)
    assert code["modules"]["curvlab.repro.isaac"] == P.module_hash(repro_isaac)
    assert P.stale_modules(code) == []
