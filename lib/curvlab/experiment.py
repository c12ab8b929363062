"""Experiments: a run is a config turned into a record.

    record = run(train_fn, config, notebook="02_sgn", scale="ci")

``config`` is a JSON-able dict (or dataclass). Its hash names the record file
``results/<scale>/<notebook>/<name>-<hash>.json``; a record already there is loaded instead of
re-running (``force=True`` re-runs). ``train_fn(config, ctx)`` does the work and returns a dict with
``metrics`` (name -> list of per-step or per-epoch values) and optionally ``summary`` (scalars) and
``status`` (``"ok"`` or ``"diverged"``: a diverged baseline is a result, not a crash).

The record holds the config, the metrics, the wall-clock, the environment (torch version, device,
thread count) and the dataset with its stand-in label. Writes are atomic (temporary file, then
``os.replace``), so an interrupted run never leaves a corrupt record. ``ctx.seed`` seeds torch,
numpy and Python before ``train_fn`` runs, and ``ctx.generator`` is a seeded ``torch.Generator`` for
shuffling and sampling, so one seeded config gives identical metrics on the same machine.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import random
import re
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from . import provenance
from .data import REPO_ROOT, STAND_INS

SCALES = ("ci", "paper")
DEFAULT_THREADS = 2


def results_dir() -> Path:
    """``$CURVLAB_RESULTS`` if set, else ``results/`` at the repository root."""
    return Path(os.environ.get("CURVLAB_RESULTS", REPO_ROOT / "results"))


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA when present, else the CPU; anything else is passed to ``torch.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def set_threads(threads: int | None = None) -> int:
    """Fix the intra-op thread count (``$CURVLAB_THREADS``, default 2): results depend on it."""
    n = int(threads or os.environ.get("CURVLAB_THREADS", DEFAULT_THREADS))
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, numpy and torch (CPU and CUDA); return a fresh seeded ``torch.Generator``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def cpu_name() -> str:
    """The processor's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device | str = "cpu") -> dict:
    """What produced a number: versions, device name, thread count."""
    device = torch.device(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return {"torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
            "device": device.type, "device_name": name, "threads": torch.get_num_threads()}


def _plain(config: Any) -> dict:
    if dataclasses.is_dataclass(config):
        config = dataclasses.asdict(config)
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict or a dataclass, got {type(config).__name__}")
    return json.loads(json.dumps(config, sort_keys=True))   # fails early on non-JSON values


def config_hash(config: Any) -> str:
    """First 12 hex digits of the SHA-256 of the config's canonical JSON."""
    return hashlib.sha256(json.dumps(_plain(config), sort_keys=True).encode()).hexdigest()[:12]


def _remove_orphans(path: Path) -> None:
    """Delete temporary files of earlier writers of ``path`` whose process no longer exists."""
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        pid = tmp.name[len(path.name) + 2:].split(".", 1)[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except PermissionError:
            pass


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write JSON to ``path`` atomically: a crash leaves either the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphans(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(obj, fh, indent=1, allow_nan=True)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class Budget:
    """When a run stops: a limit on steps, epochs or seconds of training, whichever comes first.

    ``steps`` counts optimizer steps, ``seconds`` training time (evaluation excluded); ``None`` means
    no limit of that kind.
    """

    steps: int | None = None
    epochs: float | None = None
    seconds: float | None = None

    def __post_init__(self):
        for k in ("steps", "epochs", "seconds"):
            v = getattr(self, k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float, np.number))):
                raise ValueError(f"budget {k} must be a number, got {v!r}")
            if v is not None and not v > 0:
                raise ValueError(f"budget {k} must be positive, got {v}")
        if self.steps is None and self.epochs is None and self.seconds is None:
            raise ValueError("a budget needs at least one of steps, epochs, seconds")

    @classmethod
    def of(cls, value: "Budget | dict | None") -> "Budget":
        """A budget from a ``Budget`` or a dict such as ``{"epochs": 3}``."""
        if isinstance(value, Budget):
            return value
        if not value:
            raise ValueError("config needs a 'budget' such as {'epochs': 3}")
        return cls(**value)

    def exhausted(self, steps: int, epochs: float, seconds: float) -> bool:
        """Whether a run at this point has used up its budget."""
        return ((self.steps is not None and steps >= self.steps)
                or (self.epochs is not None and epochs >= self.epochs - 1e-9)
                or (self.seconds is not None and seconds >= self.seconds))


def progress_enabled() -> bool:
    """Progress bars show unless ``$CURVLAB_PROGRESS=0`` (set by ``make`` for headless runs)."""
    return os.environ.get("CURVLAB_PROGRESS", "1") != "0"


@dataclass
class Context:
    """What ``train_fn`` receives besides its config."""

    seed: int
    device: torch.device
    generator: torch.Generator
    budget: Budget | None
    desc: str = ""

    def progress(self, total: float | None = None, unit: str = "step"):
        """A tqdm bar (a silent one when progress is disabled)."""
        from tqdm.auto import tqdm
        return tqdm(total=total, desc=self.desc, unit=unit, leave=False, disable=not progress_enabled())


_UNSAFE = re.compile(r"[^A-Za-z0-9_.=+,-]")
REQUIRED_KEYS = ("name", "config_hash", "config", "status", "metrics")


class CorruptRecord(ValueError):
    """A record file that is not a complete record (truncated, ``{}``, missing keys, wrong hash)."""


def _stem(name: str) -> str:
    """A file-name stem that cannot leave its folder: no separators, no leading dots."""
    stem = _UNSAFE.sub("_", str(name)).lstrip(".")
    return stem[:120] or "run"


def record_path(config: Any, notebook: str, scale: str, name: str | None = None) -> Path:
    """``results/<scale>/<notebook>/<name>-<hash>.json``; names are sanitised to stay inside."""
    cfg = _plain(config)
    stem = _stem(name or cfg.get("name") or "run")
    return results_dir() / _stem(scale) / _stem(notebook) / f"{stem}-{config_hash(cfg)}.json"


def load_record(path: Path) -> dict:
    """Read and validate one record file.

    Raises:
        CorruptRecord: for a truncated or malformed file, ``{}``, a record missing one of
            :data:`REQUIRED_KEYS`, or one whose config does not hash to its ``config_hash``. The
            message names the path and the remedy.
    """
    remedy = f"delete {path} and re-run the cell or command that made it"
    try:
        with open(path) as fh:
            record = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CorruptRecord(f"record {path} is not valid JSON ({err}); {remedy}") from None
    if not isinstance(record, dict):
        raise CorruptRecord(f"record {path} holds a {type(record).__name__}, not a record; {remedy}")
    missing = [k for k in REQUIRED_KEYS if k not in record]
    if missing:
        raise CorruptRecord(f"record {path} lacks {', '.join(missing)}; {remedy}")
    if config_hash(record["config"]) != record["config_hash"]:
        raise CorruptRecord(f"record {path}: its config does not match its config_hash; {remedy}")
    return record


def record_state(record: dict) -> str:
    """``"fresh"``, ``"stale"`` (a module it ran has changed) or ``"unversioned"`` (no code entry)."""
    code = record.get("code")
    if not code:
        return "unversioned"
    return "stale" if provenance.stale_modules(code) else "fresh"


def rerun_stale() -> bool:
    """``$RERUN_STALE=1`` makes :func:`run` and the sweep re-run stale records."""
    return os.environ.get("RERUN_STALE", "0") not in ("", "0")


def cached(path: Path) -> dict | None:
    """The valid record at ``path`` to reuse, or ``None`` (missing, corrupt, or stale under RERUN_STALE)."""
    if not path.exists():
        return None
    try:
        record = load_record(path)
    except CorruptRecord as err:
        warnings.warn(f"{err}; re-running it", stacklevel=3)
        return None
    if rerun_stale() and record_state(record) == "stale":
        return None
    return record


def dataset_label(name: str | None) -> dict | None:
    """The dataset's name, and what it stands in for when it is a stand-in."""
    if name is None:
        return None
    return {"name": name, "stand_in_for": STAND_INS.get(name),
            "label": f"{name} (stand-in for {STAND_INS[name]})" if name in STAND_INS else name}


def check_seed(seed: Any) -> int:
    """A seed must be an ``int`` (``bool`` and text are refused: they hash differently)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an int, got {seed!r}")
    return int(seed)


def execute(train_fn: Callable[[dict, Context], dict], config: Any, *, notebook: str, scale: str,
            name: str | None = None, device: str = "auto", threads: int | None = None) -> dict:
    """Run ``train_fn(config, ctx)`` and return its record, without writing anything.

    This is what a sweep worker runs: it needs no shared filesystem, the caller writes the record.
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    cfg = _plain(config)
    seed = check_seed(cfg.get("seed", 0))
    path = record_path(cfg, notebook, scale, name)
    set_threads(threads)
    dev = resolve_device(cfg.get("device", device))
    ctx = Context(seed=seed, device=dev, generator=seed_everything(seed),
                  budget=Budget.of(cfg["budget"]) if "budget" in cfg else None, desc=path.stem)
    start = time.perf_counter()
    out = train_fn(cfg, ctx)
    wall = time.perf_counter() - start
    if not isinstance(out, dict) or "metrics" not in out:
        raise TypeError("train_fn must return a dict with a 'metrics' entry")
    record = {
        "name": path.stem.rsplit("-", 1)[0], "notebook": notebook, "scale": scale,
        "config_hash": config_hash(cfg), "config": cfg,
        "dataset": dataset_label(cfg.get("dataset")),
        "status": out.get("status", "ok"),
        "metrics": out["metrics"], "summary": out.get("summary", {}),
        "wall_clock_s": wall, "environment": environment(dev),
        "code": provenance.code_version(train_fn),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return json.loads(json.dumps(record, allow_nan=True))    # what a cache hit will return


def run(train_fn: Callable[[dict, Context], dict], config: Any, *, notebook: str, scale: str,
        name: str | None = None, force: bool = False, device: str = "auto") -> dict:
    """Run ``train_fn(config, ctx)`` or load its cached record; return the record (a dict).

    ``config`` may hold ``seed`` (an int, default 0), ``budget`` (``{"epochs": 3}``), ``dataset`` (a
    :mod:`curvlab.data` name, recorded with its stand-in label) and ``device``; everything in it
    enters the hash, so changing any value makes a new record. A corrupt cached record is reported
    and re-run; a stale one is re-run under ``RERUN_STALE=1``.
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    cfg = _plain(config)
    check_seed(cfg.get("seed", 0))
    path = record_path(cfg, notebook, scale, name)
    hit = None if force else cached(path)
    if hit is not None:
        return hit
    record = execute(train_fn, cfg, notebook=notebook, scale=scale, name=name, device=device)
    atomic_write_json(path, record)
    return record


def load_records(notebook: str, scale: str) -> list[dict]:
    """Every valid record saved for one notebook at one scale (e.g. the committed ``paper`` records).

    Raises:
        CorruptRecord: if a file in the folder is not a valid record.
    """
    folder = results_dir() / _stem(scale) / _stem(notebook)
    return [load_record(p) for p in sorted(folder.glob("*.json"))]


def record_report(scale: str) -> dict[str, list[str]]:
    """Every record file at ``scale`` by state: fresh, stale, unversioned, corrupt."""
    report = {"fresh": [], "stale": [], "unversioned": [], "corrupt": []}
    for p in sorted((results_dir() / _stem(scale)).glob("*/*.json")):
        try:
            report[record_state(load_record(p))].append(str(p.relative_to(results_dir())))
        except CorruptRecord:
            report["corrupt"].append(str(p.relative_to(results_dir())))
    return report


def stale_records(notebook: str, scale: str) -> list[Path]:
    """The record files of one notebook at one scale made by library code that has changed since.

    Unversioned records (made before records carried their code version) are not listed: nothing
    says which code made them (:func:`record_report` counts them apart).
    """
    folder = results_dir() / _stem(scale) / _stem(notebook)
    return [p for p in sorted(folder.glob("*.json")) if record_state(load_record(p)) == "stale"]


def main(argv: list[str] | None = None) -> int:
    """``python -m curvlab.experiment --stale [SCALE ...]``: list stale, unversioned, corrupt records."""
    import argparse
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--stale", action="store_true", help="report record states")
    parser.add_argument("scales", nargs="*", default=list(SCALES))
    args = parser.parse_args(argv)
    for scale in args.scales:
        report = record_report(scale)
        counts = ", ".join(f"{len(v)} {k}" for k, v in report.items())
        print(f"records at scale {scale}: {counts}")
        for state in ("stale", "corrupt"):
            for p in report[state]:
                print(f"  {state}: {p}")
        if report["stale"]:
            print("  (RERUN_STALE=1 make reproduce re-runs the stale ones)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
