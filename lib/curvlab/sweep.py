"""Sweeps: a grid of configs × seeds → records → one tidy DataFrame, on any ``Executor``.

    frame = sweep(train, grid=[{"lr": 0.1}, {"lr": 1.0}], seeds=[1, 2, 3],
                  notebook="01_isaac", scale="ci")

Each (config, seed) pair is one run of :func:`curvlab.experiment.execute`. Where runs go:

- default: in-process, one after the other;
- ``CURVLAB_WORKERS=N``: a Dask ``distributed.LocalCluster`` of ``N`` single-thread worker
  processes on this machine;
- ``CURVLAB_SCHEDULER=tcp://host:port``: an existing Dask cluster (``dask scheduler`` and
  ``dask worker tcp://host:port`` on the machines, or ``dask_jobqueue.SLURMCluster`` on SLURM);
- ``executor=``: any ``concurrent.futures.Executor``.

Workers only compute: they return records and this process writes them, atomically, so workers need
no shared filesystem. Records already on disk (and valid) are skipped, so a killed sweep resumes
where it stopped. Every run uses one intra-op thread (``SWEEP_THREADS``), in-process as on a worker,
so a sweep gives the same numbers wherever it runs. The run function must be defined at module level
in an importable module (a worker imports it by name; a notebook's functions cannot travel).
"""
from __future__ import annotations

import concurrent.futures as cf
import os
from typing import Any, Callable, Iterable, Sequence

import pandas as pd

from . import experiment

__all__ = ["sweep", "SweepError", "InProcessExecutor", "default_executor", "SWEEP_THREADS"]

SWEEP_THREADS = 1
_CLIENTS: dict = {}


class SweepError(RuntimeError):
    """Some runs of a sweep failed; the others finished and were written. ``failures`` lists them."""

    def __init__(self, failures: list[tuple[dict, BaseException]]):
        self.failures = failures
        lines = [f"  {cfg}: {type(err).__name__}: {err}" for cfg, err in failures[:10]]
        more = f"\n  ... and {len(failures) - 10} more" if len(failures) > 10 else ""
        super().__init__(f"{len(failures)} run(s) failed:\n" + "\n".join(lines) + more)


class InProcessExecutor(cf.Executor):
    """Runs each submitted call at once, in this process (the default: no pickling, easy debugging)."""

    def submit(self, fn, /, *args, **kwargs):
        """Call ``fn(*args, **kwargs)`` now; its result or exception is in the returned future."""
        future = cf.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as err:          # delivered through the future, like a real executor
            future.set_exception(err)
        return future


def _dask_client(address: str | None, workers: int | None):
    key = (address, workers)
    if key not in _CLIENTS:
        from distributed import Client, LocalCluster
        if address:
            _CLIENTS[key] = Client(address)
        else:
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None)
            _CLIENTS[key] = Client(cluster)
    return _CLIENTS[key]


def default_executor() -> cf.Executor:
    """The executor chosen by ``CURVLAB_SCHEDULER`` / ``CURVLAB_WORKERS`` (in-process otherwise)."""
    address = os.environ.get("CURVLAB_SCHEDULER") or None
    workers = os.environ.get("CURVLAB_WORKERS") or None
    if workers is not None:
        try:
            workers = int(workers)
        except ValueError:
            raise ValueError(f"CURVLAB_WORKERS must be an integer, got {workers!r}") from None
        if workers < 1:
            raise ValueError(f"CURVLAB_WORKERS must be at least 1, got {workers}")
    if address is None and workers in (None, 1):
        return InProcessExecutor()
    return _dask_client(address, workers).get_executor()


def _scalars(summary: dict) -> dict:
    return {k: v for k, v in (summary or {}).items()
            if isinstance(v, (int, float, str, bool)) or v is None}


def _row(cfg: dict, record: dict) -> dict:
    return {**cfg, "status": record.get("status", "ok"), **_scalars(record.get("summary")),
            "wall_clock_s": record.get("wall_clock_s"), "record": record}


def _name(name: str | Callable[[dict], str] | None, cfg: dict) -> str | None:
    return name(cfg) if callable(name) else name


def sweep(run_fn: Callable[[dict, Any], dict], grid: Iterable[dict], seeds: Sequence[int], *,
          notebook: str, scale: str, name: str | Callable[[dict], str] | None = None,
          executor: cf.Executor | None = None, progress: bool | None = None,
          force: bool = False, missing: str = "run") -> pd.DataFrame:
    """Run every config of ``grid`` with every seed; return one row per run.

    Args:
        run_fn: ``run_fn(config, ctx) -> {"metrics": ..., "summary": ..., "status": ...}``, a
            module-level function (see :func:`curvlab.experiment.run`). ``config`` includes ``seed``.
        grid: configs (JSON-able dicts) without the seed.
        seeds: integer seeds; each config runs once per seed.
        notebook, scale: where records live (``results/<scale>/<notebook>/``).
        name: a record-name stem, or a function of the config giving one.
        executor: where to run; default from the environment (:func:`default_executor`).
        progress: one progress bar over the runs (default: unless ``CURVLAB_PROGRESS=0``).
        force: re-run even where a valid record exists.
        missing: ``"run"`` (default) runs the configs without a valid record; ``"skip"`` only reads:
            they are left out of the frame (how a notebook shows committed paper-scale records
            without ever starting an hour-long run).

    Returns:
        A DataFrame with the config keys, ``seed``, ``status``, the scalar summary entries,
        ``wall_clock_s`` and ``record`` (the whole record, for curves), in grid × seed order.

    Raises:
        ValueError: for a seed that is not an int, an unknown scale or ``missing``.
        SweepError: after all other runs finished, if some runs raised.
    """
    if scale not in experiment.SCALES:
        raise ValueError(f"scale must be one of {experiment.SCALES}, got {scale!r}")
    if missing not in ("run", "skip"):
        raise ValueError(f"missing must be 'run' or 'skip', got {missing!r}")
    seeds = [experiment.check_seed(s) for s in seeds]
    configs = [experiment._plain({**dict(cfg), "seed": s}) for cfg in grid for s in seeds]
    paths = [experiment.record_path(c, notebook, scale, _name(name, c)) for c in configs]
    records: dict[int, dict] = {}
    todo = []
    for i, path in enumerate(paths):
        hit = None if force else experiment.cached(path)
        if hit is not None:
            records[i] = hit
        else:
            todo.append(i)
    failures = []
    if missing == "skip":
        return pd.DataFrame([_row(configs[i], records[i]) for i in sorted(records)])
    if todo:
        import torch
        from tqdm.auto import tqdm
        threads = torch.get_num_threads()          # restored after the in-process runs
        show = experiment.progress_enabled() if progress is None else progress
        pool = executor or default_executor()
        bar = tqdm(total=len(paths), initial=len(paths) - len(todo), desc=f"{notebook} sweep",
                   unit="run", disable=not show)

        def submit(i):
            return pool.submit(experiment.execute, run_fn, configs[i], notebook=notebook, scale=scale,
                               name=_name(name, configs[i]), threads=SWEEP_THREADS)
        # In-process runs are submitted one at a time, so each record is written as soon as it exists
        # (a killed sweep keeps them); other executors get every run at once.
        if isinstance(pool, InProcessExecutor):
            done = ((submit(i), i) for i in todo)
        else:
            futures = {submit(i): i for i in todo}
            done = ((f, futures[f]) for f in cf.as_completed(futures))
        for future, i in done:
            try:
                records[i] = future.result()
                experiment.atomic_write_json(paths[i], records[i])    # the client writes
            except Exception as err:                                  # the others go on
                failures.append((configs[i], err))
            bar.update(1)
        bar.close()
        torch.set_num_threads(threads)
    if failures:
        raise SweepError(failures)
    return pd.DataFrame([_row(configs[i], records[i]) for i in range(len(configs))])
