"""Run real notebook sweeps in-process and on a 2-worker Dask LocalCluster; compare their records.

    python tools/compare_workers.py [--sweeps isaac_fig5 sgn_boston grouped_newton_lenet]

Each sweep runs twice into two temporary result folders (``$CURVLAB_RESULTS``): once with the
in-process executor, once with ``CURVLAB_WORKERS=2``. Every record's metrics and status must be
identical, clocks excepted (``time``, ``eval_time`` and any ``*_s`` summary entry are measured
wall-clock, so they differ between any two runs). Exit status 1 lists the differing records.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SWEEPS = {
    "isaac_fig5": "from curvlab.repro import isaac as R, isaac_grids as G; "
                  "R.sweep(G.fig5_grid('ci'), G.settings('ci', 'fig5')['tune_seeds'], 'ci')",
    "sgn_boston": "from curvlab.repro import sgn as R; R.sweep('boston', 'ci', [1, 2])",
    "grouped_newton_lenet": "from curvlab.repro import grouped_newton as R; R.sweep('lenet', 'ci', [1])",
}
CLOCKS = ("time", "eval_time", "steps_time")


def _run(code: str, results: Path, workers: int | None) -> None:
    env = {**os.environ, "CURVLAB_RESULTS": str(results), "CURVLAB_PROGRESS": "0"}
    env.pop("CURVLAB_WORKERS", None)
    if workers:
        env["CURVLAB_WORKERS"] = str(workers)
    subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, check=True)


def _comparable(record: dict) -> dict:
    metrics = {k: v for k, v in record["metrics"].items() if k not in CLOCKS}
    summary = {k: v for k, v in record.get("summary", {}).items()
               if not k.endswith("_s") and k not in ("cpu", "wall_clock_s")}
    return {"status": record["status"], "metrics": metrics, "summary": summary}


def compare(a: Path, b: Path) -> list[str]:
    """Record names that differ (or exist on one side only) between two result folders."""
    left = {p.relative_to(a): p for p in a.rglob("*.json")}
    right = {p.relative_to(b): p for p in b.rglob("*.json")}
    differ = sorted(str(k) for k in set(left) ^ set(right))
    for key in sorted(set(left) & set(right)):
        if _comparable(json.loads(left[key].read_text())) != _comparable(json.loads(right[key].read_text())):
            differ.append(str(key))
    return differ


def main(argv=None) -> int:
    """Run the chosen sweeps both ways and report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sweeps", nargs="+", default=list(SWEEPS), choices=list(SWEEPS))
    args = parser.parse_args(argv)
    bad = 0
    for name in args.sweeps:
        with tempfile.TemporaryDirectory() as tmp:
            inproc, dask = Path(tmp) / "in_process", Path(tmp) / "workers2"
            _run(SWEEPS[name], inproc, None)
            _run(SWEEPS[name], dask, 2)
            n = len(list(inproc.rglob("*.json")))
            differ = compare(inproc, dask)
            print(f"{name}: {n} records; identical in-process and on 2 workers (clocks aside): "
                  f"{not differ}" + (f"; differ: {differ}" if differ else ""))
            bad += bool(differ)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
