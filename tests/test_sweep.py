import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _sweep_fns import failing_run, toy_run

from curvlab import experiment
from curvlab import sweep as S

GRID = [{"lr": lr, "steps": 20} for lr in (0.01, 0.1, 2.0)]


@pytest.fixture(autouse=True)
def results(tmp_path, monkeypatch):
    monkeypatch.setenv("CURVLAB_RESULTS", str(tmp_path))
    monkeypatch.delenv("CURVLAB_WORKERS", raising=False)
    monkeypatch.delenv("CURVLAB_SCHEDULER", raising=False)
    return tmp_path


def test_tidy_frame_in_grid_seed_order_and_records_written(results):
    frame = S.sweep(toy_run, GRID, [1, 2], notebook="nb", scale="ci", progress=False)
    assert list(frame["lr"]) == [0.01, 0.01, 0.1, 0.1, 2.0, 2.0] and list(frame["seed"]) == [1, 2] * 3
    assert set(frame["status"]) == {"ok", "diverged"}
    assert frame.loc[frame.lr == 2.0, "status"].eq("diverged").all()     # lr 2 blows up on this data
    assert len(list((results / "ci" / "nb").glob("*.json"))) == 6
    assert frame["record"][0]["code"]["modules"]                            # provenance stored


def test_existing_records_are_skipped(results):
    S.sweep(toy_run, GRID[:1], [1], notebook="nb", scale="ci", progress=False)
    path = next((results / "ci" / "nb").glob("*.json"))
    mtime = path.stat().st_mtime_ns
    frame = S.sweep(toy_run, GRID[:1], [1, 2], notebook="nb", scale="ci", progress=False)
    assert path.stat().st_mtime_ns == mtime and len(frame) == 2


def test_missing_skip_reads_existing_records_and_runs_nothing(results):
    S.sweep(toy_run, GRID[:1], [1], notebook="nb", scale="ci", progress=False)
    frame = S.sweep(toy_run, GRID, [1, 2], notebook="nb", scale="ci", progress=False, missing="skip")
    assert list(zip(frame["lr"], frame["seed"])) == [(0.01, 1)]                 # only the one on disk
    assert len(list((results / "ci" / "nb").glob("*.json"))) == 1               # nothing else ran
    with pytest.raises(ValueError, match="missing"):
        S.sweep(toy_run, GRID, [1], notebook="nb", scale="ci", missing="never")


def test_failures_are_collected_after_the_other_runs(results):
    grid = [{"lr": lr, "steps": 5} for lr in (0.01, 0.5, 0.1)]
    with pytest.raises(S.SweepError, match="1 run") as info:
        S.sweep(failing_run, grid, [1], notebook="nb", scale="ci", progress=False)
    assert info.value.failures[0][0]["lr"] == 0.5
    assert len(list((results / "ci" / "nb").glob("*.json"))) == 2


def test_seeds_must_be_ints():
    with pytest.raises(ValueError, match="seed"):
        S.sweep(toy_run, GRID, ["1"], notebook="nb", scale="ci")
    with pytest.raises(ValueError, match="seed"):
        S.sweep(toy_run, GRID, [1.0], notebook="nb", scale="ci")


def test_workers_setting_is_validated(monkeypatch):
    monkeypatch.setenv("CURVLAB_WORKERS", "two")
    with pytest.raises(ValueError, match="CURVLAB_WORKERS"):
        S.default_executor()


def test_killed_sweep_resumes_with_every_record_once(results):
    """A sweep whose process dies mid-way, re-run, ends with one valid record per run."""
    grid = [{"lr": lr, "steps": 10} for lr in (0.01, 0.02, 0.03, 0.04)]
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from curvlab import sweep\nfrom _sweep_fns import dying_run\n"
            "sweep.sweep(dying_run, %r, [1], notebook='nb', scale='ci', progress=False)\n"
            % (str(Path(__file__).parent), grid))
    env = {**os.environ, "CURVLAB_RESULTS": str(results), "SWEEP_DIE_AT": "0.03"}
    died = subprocess.run([sys.executable, "-c", code], env=env)
    assert died.returncode == 3
    assert len(list((results / "ci" / "nb").glob("*.json"))) == 2          # two done before the kill
    env["SWEEP_DIE_AT"] = "-1"
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    files = sorted((results / "ci" / "nb").glob("*"))
    assert len(files) == 4 and all(f.suffix == ".json" for f in files)     # none duplicated, no temporaries
    lrs = sorted(experiment.load_record(f)["config"]["lr"] for f in files)  # none corrupt
    assert lrs == [0.01, 0.02, 0.03, 0.04]


def test_local_cluster_equals_in_process(results, tmp_path_factory):
    distributed = pytest.importorskip("distributed")
    local = S.sweep(toy_run, GRID, [1, 2], notebook="a", scale="ci", progress=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        remote = S.sweep(toy_run, GRID, [1, 2], notebook="b", scale="ci", progress=False,
                         executor=client.get_executor())
    for a, b in zip(local["record"], remote["record"]):
        assert json.dumps(a["metrics"]) == json.dumps(b["metrics"]) and a["status"] == b["status"]
    assert list(local["final_loss"]) == list(remote["final_loss"])
