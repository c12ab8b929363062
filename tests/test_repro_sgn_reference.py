"""The carried SGN reference logs: inside the repository, complete, and equal to what the notebook uses."""
import gzip
import json

import numpy as np
import pytest

from curvlab.data import REPO_ROOT
from curvlab.repro import sgn_reference as R


def test_reference_lives_inside_the_repository():
    folder = R.reference_dir().resolve()
    assert folder.is_relative_to(REPO_ROOT.resolve())
    for name in ("runs.csv.gz", "steps.csv.gz", "configs.json", "README.md"):
        assert (folder / name).is_file(), name
    assert "gmatilde/SGN" in (folder / "README.md").read_text()


def test_notebook_reads_nothing_beside_the_clone():
    text = (REPO_ROOT / "notebooks" / "02_sgn.py").read_text()
    assert "../" not in text and "shared/reference" not in text


def test_every_published_run_is_carried():
    table = R.run_table()
    assert len(table) == 305
    per_bench = table.groupby("benchmark").size().to_dict()
    assert per_bench == {"boston": 50, "sine_10": 55, "sine_100": 55, "mnist": 50, "fashion": 45,
                         "cifar10": 50}
    assert set(table["seed"]) == {1, 2, 3, 4, 5}
    # each run's logged epochs are all in runs.csv.gz, numbered 1..n
    keys = ["benchmark", "solver", "value", "seed", "longer"]
    counts = R.runs().groupby(keys)["epoch"].agg(["count", "max"])
    assert (counts["count"] == counts["max"]).all()
    assert counts["count"].sum() == table["epochs"].sum()


def test_frame_clock_is_epoch_times_mean_epoch_time():
    f = R.frame("mnist")
    run = f[(f["config"] == "SGN(3)") & (f["seed"] == 1)].sort_values("epoch")
    tot = R.run_table("mnist").set_index(["config", "seed"]).loc[("SGN(3)", 1)]
    assert run["epoch"].tolist() == list(range(1, 101))
    assert np.allclose(run["time"].values, run["epoch"].values * tot["tot_time"] / 100)
    assert run["test_accuracy"].between(0, 1).all() and run["test_loss"].isna().all()


def test_divergence_marked_not_dropped():
    f = R.frame("boston")
    sgd1 = f[f["config"] == "SGD(1)"]
    assert len(sgd1) and (sgd1["status"] == "diverged").any()
    assert (sgd1.loc[sgd1["status"] == "diverged", "train_loss"].isna()).all()
    assert (f.loc[f["config"] == "SGN(3)", "status"] == "ok").all()


def test_longer_runs_labelled():
    f = R.frame("cifar10")
    assert "SGD(0.1) longer" in set(f["config"])
    assert f[f["config"] == "SGD(0.1) longer"]["epoch"].max() == 250


def test_step_statistics_match_thinned_steps():
    table = R.run_table("boston").set_index(["config", "seed"])
    st = R.steps()
    run = st[(st["benchmark"] == "boston") & (st["value"] == 10) & (st["seed"] == 1)]
    row = table.loc[("SGN(10)", 1)]
    assert run["iteration"].iloc[0] == 1 and run["iteration"].iloc[-1] == row["iterations"]
    assert run["rho"].max() <= row["max_rho"] * (1 + 1e-7)
    assert 0 <= row["backtracked_share"] <= 1 and row["mean_alpha"] <= 1


def test_label_and_bad_names():
    assert R.label("SGD", 10.0) == "SGD(10)" and R.label("SGD", 0.001) == "SGD(0.001)"
    with pytest.raises(ValueError, match="benchmark"):
        R.frame("cifar100")
    with pytest.raises(ValueError, match="method"):
        R.label("Adam", 1.0)


def test_conversion_script_round_trip(tmp_path):
    """The converter turns a minimal published layout into the same tidy rows."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("conv", REPO_ROOT / "tools" / "convert_sgn_reference.py")
    conv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conv)
    run = tmp_path / "src" / "results" / "boston" / "res_SGN_3_2"
    run.mkdir(parents=True)
    (tmp_path / "src" / "architectures").mkdir()
    (run / "config.json").write_text(json.dumps({"config": {"SOLVER": "SGN"}}))
    res = {"avg_loss": [1.0, 0.5], "test_loss": [0.9, 0.4], "tot_time": 2.0, "tot_iterations": 4,
           "rho": [1e-4, 1.5e-4, 1e-4, 1e-6], "alpha": [1.0, 0.5, 1.0, 1.0]}
    (run / "results.json").write_text(json.dumps(res))
    assert conv.main([str(tmp_path / "src"), "--out", str(tmp_path / "out")]) == 0
    rows = gzip.decompress((tmp_path / "out" / "runs.csv.gz").read_bytes()).decode().splitlines()
    assert rows[0].startswith("benchmark,solver,value,seed,longer,epoch,train_loss")
    assert rows[1] == "boston,SGN,3,2,False,1,1,,0.9,"
    meta = json.loads((tmp_path / "out" / "configs.json").read_text())
    st = meta["runs"][0]["steps"]
    assert st["backtracked_share"] == 0.25 and st["first_floor_iteration"] == 4 and st["max_rho"] == 1.5e-4
