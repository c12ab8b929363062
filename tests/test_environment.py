"""requirements.lock and environment.yml pin the same versions; torch is the CPU build on disk."""
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def lock_pins():
    lines = (ROOT / "requirements.lock").read_text().splitlines()
    return {l.strip() for l in lines if l.strip() and not l.startswith("#")}


def test_environment_yml_matches_lock():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert {p for p in pip if "==" in p} == lock_pins()
    assert "python=3.11" in env["dependencies"]


def test_pins_are_exact_and_without_torchvision():
    pins = lock_pins()
    assert all("==" in p for p in pins)
    names = {p.split("==")[0].lower() for p in pins}
    assert "torch==2.13.0" in pins and "torchvision" not in names
    assert {"jupytext", "papermill", "nbval", "seaborn", "jupyter"} <= names
