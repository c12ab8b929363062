"""Convert the SGN reference's published run logs into the compact tables under ``reference/sgn/``.

Run once by a developer, with the folder of the logs published with GitHub ``gmatilde/SGN``
(``results/<benchmark>/res_<SOLVER>_<value>_<seed>[_longer]/{config,results}.json`` and
``architectures/architecture_<n>.json``) as the only argument::

    python tools/convert_sgn_reference.py PATH/TO/SGN-logs

Writes ``reference/sgn/runs.csv.gz`` (one row per run and epoch), ``steps.csv.gz`` (the per-iteration
damping ρ and step α of the SGN runs, thinned to at most ``STEP_POINTS`` evenly spaced iterations per
run, first and last kept) and ``configs.json`` (each run's published config and totals, with ρ/α
statistics computed from the *full* per-iteration logs, plus the architecture files). Nothing else in
the project reads the source folder.
"""
from __future__ import annotations

import argparse
import gzip
import io
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

OUT = Path(__file__).resolve().parents[1] / "reference" / "sgn"
STEP_POINTS = 400
RHO_FLOOR = 1e-6            # the published DAMP_RHO_MIN of every SGN run


def parse_folder(name: str) -> dict:
    """``res_SGD_0.1_3_longer`` -> solver SGD, value 0.1, seed 3, longer True."""
    parts = name.split("_")
    if parts[0] != "res" or len(parts) not in (4, 5):
        raise ValueError(f"unexpected run folder name {name!r}")
    return {"solver": parts[1], "value": float(parts[2]), "seed": int(parts[3]),
            "longer": len(parts) == 5 and parts[4] == "longer"}


def epoch_rows(bench: str, run: dict, res: dict) -> list[dict]:
    n = len(res["avg_loss"])
    rows = []
    for e in range(n):
        rows.append({"benchmark": bench, "solver": run["solver"], "value": run["value"], "seed": run["seed"],
                     "longer": run["longer"], "epoch": e + 1, "train_loss": res["avg_loss"][e],
                     "train_accuracy": res["acc"][e] if "acc" in res else np.nan,
                     "test_loss": res["test_loss"][e] if "test_loss" in res else np.nan,
                     "test_accuracy": res["test_acc"][e] if "test_acc" in res else np.nan})
    return rows


def step_stats(rho: np.ndarray, alpha: np.ndarray) -> dict:
    """Full-log statistics: the thinned table cannot give exact shares."""
    at_floor = np.flatnonzero(rho <= RHO_FLOOR * 1.0001)
    return {"iterations": int(len(rho)), "max_rho": float(rho.max()), "final_rho": float(rho[-1]),
            "first_floor_iteration": int(at_floor[0]) + 1 if len(at_floor) else None,
            "mean_alpha": float(alpha.mean()), "backtracked_share": float(np.mean(alpha < 1.0))}


def thin(n: int, limit: int) -> np.ndarray:
    return np.arange(n) if n <= limit else np.unique(np.linspace(0, n - 1, limit).round().astype(int))


def convert(source: Path) -> dict:
    runs, epochs, steps = [], [], []
    for folder in sorted((source / "results").glob("*/res_*")):
        bench = folder.parent.name
        run = parse_folder(folder.name)
        res = json.loads((folder / "results.json").read_text())
        cfg = json.loads((folder / "config.json").read_text())
        entry = {"benchmark": bench, **run, "source": f"results/{bench}/{folder.name}",
                 "published_config": cfg,
                 **{k: res[k] for k in ("tot_time", "tot_iterations", "tot_epochs") if k in res},
                 "n_epochs_logged": len(res["avg_loss"])}
        epochs += epoch_rows(bench, run, res)
        if "rho" in res:
            rho, alpha = np.asarray(res["rho"], float), np.asarray(res["alpha"], float)
            entry["steps"] = step_stats(rho, alpha)
            for i in thin(len(rho), STEP_POINTS):
                steps.append({"benchmark": bench, "solver": run["solver"], "value": run["value"],
                              "seed": run["seed"], "iteration": int(i) + 1, "rho": rho[i], "alpha": alpha[i]})
        runs.append(entry)
    arch = {p.stem: json.loads(p.read_text()) for p in sorted((source / "architectures").glob("*.json"))}
    return {"runs": runs, "epochs": pd.DataFrame(epochs), "steps": pd.DataFrame(steps), "architectures": arch}


def write_csv_gz(frame: pd.DataFrame, path: Path) -> None:
    """Deterministic gzip (mtime 0), so a re-conversion of the same logs gives identical bytes."""
    text = frame.to_csv(index=False, float_format="%.8g")
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=9) as fh:
        fh.write(text.encode())
    path.write_bytes(buf.getvalue())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", type=Path, help="folder of the published SGN logs (holds results/)")
    ap.add_argument("--out", type=Path, default=OUT, help="output folder (default: reference/sgn)")
    args = ap.parse_args(argv)
    if not (args.source / "results").is_dir():
        ap.error(f"{args.source} has no results/ folder")
    out = convert(args.source)
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv_gz(out["epochs"], args.out / "runs.csv.gz")
    write_csv_gz(out["steps"], args.out / "steps.csv.gz")
    meta = {"source": "GitHub gmatilde/SGN, published run logs", "step_points_per_run": STEP_POINTS,
            "runs": out["runs"], "architectures": out["architectures"]}
    (args.out / "configs.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    print(f"{len(out['runs'])} runs, {len(out['epochs'])} epoch rows, {len(out['steps'])} step rows"
          f" -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
