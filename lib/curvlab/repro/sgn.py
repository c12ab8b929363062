"""The SGN benchmarks (Gargiani et al. 2020) as a library: configs per scale, one run function, records.

Every result-changing setting is in a run's config, hence in its record key: the benchmark, data
subset, batch, budget, thread count, the SGD learning rate or the *whole* SGN configuration
(``cfg["sgn"] = SGNConfig(...).as_dict()``). The run function :func:`train` is module-level so that
sweep workers can import it.

Clock: ``metrics["time"]`` is the measured wall-clock of the optimizer steps only; evaluation is timed
apart (``metrics["eval_time"]``, cumulative, and ``summary["eval_time_s"]``). The committed paper-scale
records predate this and timed steps *plus* evaluation; :func:`load_legacy` fills in the settings then
in force and marks them (``config["legacy"]``, ``summary["clock"] = "training + evaluation"``).
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import pandas as pd
import torch

from curvlab import curvature, data, experiment, models, training
from curvlab import sweep as sweep_mod
from curvlab.sgn import SGN, SGNConfig, sgn_reference_init

from ._clock import EvalClock
from .sgn_reference import BENCHMARKS, REGRESSION, label

NOTEBOOK = "02_sgn"
THREADS = 1          # one intra-op thread: with two on a shared 2-core CPU, small ops slowed up to 200x
SGD_GRID = [1e-3, 1e-2, 0.1, 1.0]
# Every size, budget, grid and seed list, per scale; budgets {"seconds": s} count training time only.
SETTINGS = {
    "paper": {
        "seeds": [1, 2, 3, 4, 5],
        "boston": dict(batch=101, sgd=SGD_GRID, sgn=[1, 2, 3, 5, 10, 20],
                       sgd_budget={"seconds": 10}, sgn_budget={"seconds": 10}),
        "sine_10": dict(batch=1000, sgd=SGD_GRID, sgn=[2, 3, 5, 10, 20, 30, 40],
                        sgd_budget={"seconds": 100}, sgn_budget={"seconds": 100}),
        "sine_100": dict(batch=1000, sgd=SGD_GRID, sgn=[2, 3, 5, 10, 20, 30, 40],
                         sgd_budget={"seconds": 100}, sgn_budget={"seconds": 100}),
        "mnist": dict(batch=1000, sgd=SGD_GRID + [10.0], sgn=[1, 2, 3, 5, 10], eval_every=50,
                      sgd_budget={"epochs": 600}, sgn_budget={"epochs": 100}),
        "fashion": dict(batch=1000, sgd=SGD_GRID, sgn=[1, 2, 3, 5, 10], eval_every=50,
                        sgd_budget={"epochs": 100}, sgn_budget={"epochs": 10}),
        "cifar10": dict(batch=1000, sgd=SGD_GRID, sgn=[1, 2, 3, 5, 10], eval_every=50,
                        sgd_budget={"epochs": 100}, sgn_budget={"epochs": 10},
                        longer={"lr": 0.1, "budget": {"epochs": 250}}),
    },
    "ci": {                      # reduced: every change against "paper" is listed here
        "seeds": [1, 2, 3],      # three seeds; the two CNNs one (their runs cost most of the 7-minute budget)
        # full data and grids; 40 epochs instead of 10 s
        "boston": dict(batch=101, sgd=SGD_GRID, sgn=[1, 2, 3, 5, 10, 20],
                       sgd_budget={"epochs": 40}, sgn_budget={"epochs": 40}),
        # full data; 25 epochs instead of 100 s; SGN grid without 5 and 40
        "sine_10": dict(batch=1000, sgd=SGD_GRID, sgn=[2, 3, 10, 20, 30],
                        sgd_budget={"epochs": 25}, sgn_budget={"epochs": 25}),
        "sine_100": dict(batch=1000, sgd=SGD_GRID, sgn=[2, 3, 10, 20, 30],
                         sgd_budget={"epochs": 25}, sgn_budget={"epochs": 25}),
        # full data and grids; SGD 16 epochs (not 600), SGN 3 epochs (not 100)
        "mnist": dict(batch=1000, sgd=SGD_GRID + [10.0], sgn=[1, 2, 3, 5, 10], eval_every=50,
                      sgd_budget={"epochs": 16}, sgn_budget={"epochs": 3}),
        # 2 000 / 1 000 images, batch 250 (not 1000); SGD 20 epochs (not 100); SGN(3) only, 2 epochs
        "fashion": dict(batch=250, sgd=SGD_GRID, sgn=[3], eval_every=50, n_train=2000, n_test=1000,
                        sgd_budget={"epochs": 20}, sgn_budget={"epochs": 2}, n_seeds=1),
        # stand-in, 1 000 / 500 images, batch 250; SGD 14 epochs without lr 1e-3; SGN(3) only, 2 epochs
        "cifar10": dict(batch=250, sgd=[1e-2, 0.1, 1.0], sgn=[3], eval_every=50, n_train=1000, n_test=500,
                        sgd_budget={"epochs": 14}, sgn_budget={"epochs": 2}, n_seeds=1),
    },
}
DATASETS = {"boston": "boston", "sine_10": "sine", "sine_100": "sine", "mnist": "mnist",
            "fashion": "fashion_mnist"}


def cifar_dataset(scale: str) -> str:
    """Real CIFAR-10 at paper scale when installed, else the labelled stand-in ``fashion_mnist_32``."""
    return "cifar10" if scale == "paper" and data.available("cifar10") else "fashion_mnist_32"


def sgn_settings(k: int) -> dict:
    """The published SGN settings with k CG iterations (every field: it goes into the record key)."""
    return SGNConfig(cg_max_iter=int(k)).as_dict()


def _base(bench: str, s: dict, scale: str) -> dict:
    base = {"benchmark": bench, "dataset": DATASETS.get(bench) or cifar_dataset(scale), "batch": s["batch"],
            "threads": THREADS, "loss": "mse" if bench in REGRESSION else "cross_entropy"}
    base.update({k: s[k] for k in ("n_train", "n_test", "eval_every") if k in s})
    if bench.startswith("sine"):
        base["frequency"] = float(bench.split("_")[1])
    return base


def configs(bench: str, scale: str) -> list[dict]:
    """The grid of one benchmark at one scale (without seeds; the sweep adds them).

    >>> [c["name"] for c in configs("cifar10", "ci")]
    ['cifar10_SGD_0.01', 'cifar10_SGD_0.1', 'cifar10_SGD_1', 'cifar10_SGN_3']
    """
    if bench not in BENCHMARKS:
        raise ValueError(f"benchmark must be one of {BENCHMARKS}, got {bench!r}")
    s = SETTINGS[scale][bench]
    base = _base(bench, s, scale)
    mlp = {"hidden": [20, 20, 20]} if bench == "mnist" else {}
    out = [{**base, **mlp, "name": f"{bench}_SGD_{lr:g}", "method": "SGD", "lr": lr,
            "budget": s["sgd_budget"]}
           for lr in s["sgd"]]
    for k in s["sgn"]:
        hidden = {"hidden": [10, 10, 10] if k <= 2 else [20, 20, 20]} if bench == "mnist" else {}
        out.append({**base, **hidden, "name": f"{bench}_SGN_{k}", "method": "SGN", "cg": k,
                    "sgn": sgn_settings(k), "budget": s["sgn_budget"]})
    if "longer" in s:
        lg = s["longer"]
        out.append({**base, "name": f"{bench}_SGD_{lg['lr']:g}_longer", "method": "SGD", "lr": lg["lr"],
                    "budget": lg["budget"], "longer": True})
    return out


def record_name(cfg: dict) -> str:
    """File stem ``<name>_s<seed>`` (the hash keeps the rest apart)."""
    return f"{cfg['name']}_s{cfg['seed']}"


def config_label(cfg: dict) -> str:
    """``SGD(0.1)``, ``SGD(0.1) longer`` or ``SGN(3)``."""
    value = cfg["lr"] if cfg["method"] == "SGD" else cfg["cg"]
    return label(cfg["method"], value, cfg.get("longer", False))


def standardize_images(x: torch.Tensor) -> torch.Tensor:
    """Per-image, per-channel standardisation (the reference's normalize_meanstd): (x - mean) / std."""
    mean = x.mean(dim=(2, 3), keepdim=True)
    std = x.std(dim=(2, 3), keepdim=True, unbiased=False).clamp_min(1e-8)
    return (x - mean) / std


@lru_cache(maxsize=None)
def prepared(bench: str, dataset: str, n_train: int | None = None, n_test: int | None = None):
    """(x_train, y_train, x_test, y_test) with the reference's preprocessing.

    Its quirks are kept: Boston's splits are each divided by their own max.
    """
    if bench == "boston":
        tr, te = data.load("boston", "train"), data.load("boston", "test")
        out = [tr.x / tr.x.max(), tr.y / tr.y.max(), te.x / te.x.max(), te.y / te.y.max()]
    elif bench.startswith("sine"):
        f = float(bench.split("_")[1])
        tr, te = data.load("sine", "train", frequency=f), data.load("sine", "test", frequency=f)
        out = [tr.x, tr.y, te.x, te.y]
    else:
        tr, te = data.load(dataset, "train"), data.load(dataset, "test")
        xtr, xte = tr.x[:n_train].float(), te.x[:n_test].float()
        if bench == "mnist":
            xtr, xte = xtr.reshape(len(xtr), -1) / 255, xte.reshape(len(xte), -1) / 255
        else:
            if xtr.ndim == 3:
                xtr, xte = xtr[:, None], xte[:, None]
            xtr, xte = standardize_images(xtr), standardize_images(xte)
        out = [xtr, tr.y[:n_train], xte, te.y[:n_test]]
    return tuple(t.contiguous() for t in out)


def build_model(cfg: dict) -> torch.nn.Module:
    """The reference's network for the benchmark, with its initialisation."""
    b = cfg["benchmark"]
    if b == "boston":
        net = models.mlp([13, 100, 100, 1], "sigmoid", flatten=False)
    elif b.startswith("sine"):
        net = models.mlp([1, 20, 20, 20, 1], "sigmoid", flatten=False)
    elif b == "mnist":
        net = models.mlp([784, *cfg["hidden"], 10], "sigmoid", flatten=False)
    elif b == "fashion":
        net = models.sgn_arch_1((1, 28, 28))
    else:
        net = models.sgn_arch_4((3, 32, 32))
    return sgn_reference_init(net)


def thin(n: int, limit: int) -> list[int]:
    """Evenly spaced indices of range(n), first and last kept, when n > limit.

    >>> thin(5, 3), thin(2, 3)
    ([0, 2, 4], [0, 1])
    """
    if n <= limit:
        return list(range(n))
    return sorted(set(np.linspace(0, n - 1, limit).round().astype(int).tolist()))


def _step_fn(cfg, model, xtr, ytr, trace):
    if cfg["method"] == "SGD":
        sgd = torch.optim.SGD(model.parameters(), lr=cfg["lr"])
        loss_fn = curvature.loss_function(cfg["loss"])

        def step(x, y):
            sgd.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            sgd.step()
            return loss.item()
        return step
    opt = SGN(model, cfg["loss"], SGNConfig.from_dict(cfg["sgn"]))
    b = cfg["batch"]                # trace the curvature product once, before the clock starts
    zeros = [torch.zeros_like(p) for p in model.parameters()]
    curvature.GGNOperator(model, cfg["loss"], xtr[:b], ytr[:b])(zeros)

    def step(x, y):
        s = opt.step(x, y)
        for k, v in (("sgn_step", s.step), ("sgn_rho", s.rho), ("sgn_alpha", s.alpha),
                     ("sgn_backtracks", s.backtracks)):
            trace[k].append(v)
        return s.loss
    return step


def train(cfg: dict, ctx) -> dict:
    """One SGD or SGN run of one benchmark (the ``experiment.run`` / sweep contract).

    Returns ``training.fit``'s result with ``metrics["time"]`` = training clock only, plus
    ``eval_time`` (cumulative evaluation seconds) and the per-step ρ/α traces (≤ 2 000 steps kept).
    """
    torch.set_num_threads(cfg["threads"])
    xtr, ytr, xte, yte = (t.to(ctx.device) for t in prepared(cfg["benchmark"], cfg["dataset"],
                                                              cfg.get("n_train"), cfg.get("n_test")))
    model = build_model(cfg).to(ctx.device)
    trace = {"sgn_step": [], "sgn_rho": [], "sgn_alpha": [], "sgn_backtracks": []}
    step = _step_fn(cfg, model, xtr, ytr, trace)
    evaluate = EvalClock(lambda: training.evaluate_regression(model, xte, yte) if cfg["loss"] == "mse"
                         else training.evaluate_classifier(model, xte, yte))

    total = (ctx.budget.epochs or 0) * math.ceil(len(xtr) / cfg["batch"]) or None
    with ctx.progress(total=total) as bar:
        out = training.fit(step, xtr, ytr, batch_size=cfg["batch"], budget=ctx.budget,
                           generator=ctx.generator, evaluate=evaluate, eval_every_steps=cfg.get("eval_every"),
                           time_evaluation=False, progress=bar)
    out["metrics"]["eval_time"] = evaluate.log
    return _finish(out, trace, evaluate.total)


def _finish(out: dict, trace: dict, eval_s: float) -> dict:
    met = out["metrics"]
    if len(met["epoch"]) > 1000:                 # keep epoch ends first (the read-out rules use them)
        ends = [i for i, e in enumerate(met["epoch"]) if e == round(e)] or list(range(len(met["epoch"])))
        keep = sorted({ends[i] for i in thin(len(ends), 1000)} | {len(met["epoch"]) - 1})
        for k in list(met):
            met[k] = [met[k][i] for i in keep]
    keep = thin(len(trace["sgn_step"]), 2000)
    met.update({k: [v[i] for i in keep] for k, v in trace.items()})
    summary = out["summary"]
    summary.update(eval_time_s=eval_s, clock="training only", cpu=experiment.cpu_name())
    if trace["sgn_step"]:
        summary.update(mean_alpha=float(np.mean(trace["sgn_alpha"])),
                       backtracked=float(np.mean(np.array(trace["sgn_backtracks"]) > 0)),
                       final_rho=trace["sgn_rho"][-1], max_rho=float(max(trace["sgn_rho"])))
    return out


def sweep(bench: str, scale: str, seeds=None, **kw):
    """Run one benchmark's grid × seeds through :func:`curvlab.sweep.sweep` (resumable); its frame."""
    seeds = list(seeds or SETTINGS[scale]["seeds"])[:SETTINGS[scale][bench].get("n_seeds")]
    return sweep_mod.sweep(train, configs(bench, scale), seeds, notebook=NOTEBOOK, scale=scale,
                           name=record_name, **kw)


# Settings in force when the committed paper-scale records were made (before the SGN config entered the
# key): the published SGN settings, SGNConfig's defaults, with cg_max_iter = cfg["cg"].
LEGACY_SGN = dict(rho=1e-4, rho_min=1e-6, cg_warmup_iter=10, cg_warmup_steps=9, cg_tol=1e-6,
                  trust_region=True, line_search=True, beta=0.0)


def as_legacy(record: dict) -> dict:
    """A committed record without ``cfg["sgn"]``, with the settings then in force filled in.

    It is marked legacy (its clock includes evaluation). Records written by :func:`train` come back
    unchanged; the stored file is never modified.
    """
    if "clock" in record.get("summary", {}):          # written by this module's train: not legacy
        return record
    cfg = record["config"]
    new = {**record, "config": dict(cfg), "summary": dict(record.get("summary", {}))}
    if cfg.get("method") == "SGN" and "sgn" not in cfg:
        new["config"]["sgn"] = SGNConfig(cg_max_iter=int(cfg["cg"]), **LEGACY_SGN).as_dict()
    new["config"]["legacy"] = True
    new["summary"]["clock"] = "training + evaluation"
    return new


def load(bench: str, scale: str) -> list[dict]:
    """Stored records of one benchmark at one scale (committed legacy ones mapped by :func:`as_legacy`)."""
    recs = [r for r in experiment.load_records(NOTEBOOK, scale) if r["config"].get("benchmark") == bench]
    return [as_legacy(r) for r in recs]


def hardware(records: list[dict]) -> str:
    """``cpu AMD EPYC, 1 threads, torch 2.13.0`` from the first record."""
    env = records[0]["environment"]
    cpu = records[0]["summary"].get("cpu") or env.get("device_name")
    return f"{env['device']} {cpu}, {env['threads']} threads, torch {env['torch']}"


def run_records(bench: str, scale: str, seeds=None) -> list[dict]:
    """Run (or load) one benchmark's grid × seeds through the sweep; the records, in grid order."""
    return list(sweep(bench, scale, seeds)["record"])


FULL_TRAIN = {"boston": 404, "sine_10": 7000, "sine_100": 7000, "mnist": 60000, "fashion": 60000,
              "cifar10": 50000}


def _seconds_per_epoch(records: list[dict]) -> dict:
    """Map config label -> measured (training + evaluation) seconds per epoch, seed mean."""
    per: dict = {}
    for r in records:
        s = r["summary"]
        if s.get("epochs", 0) > 0:
            per.setdefault(config_label(r["config"]), []).append(
                (s["train_time_s"] + s.get("eval_time_s", 0.0)) / s["epochs"])
    return {k: float(np.mean(v)) for k, v in per.items()}


def paper_cost(ci_records: dict) -> pd.DataFrame:
    """Estimated single-thread CPU hours per benchmark at paper scale, from measured ci timings.

    Seconds budgets cost their seconds (plus nothing for evaluation: it is timed apart, so a rough
    lower bound). Epoch budgets cost epochs × the ci seconds per epoch of the same config (else the
    closest config of the same method), scaled by the ratio of full to ci training-set size.
    """
    rows = []
    for bench, recs in ci_records.items():
        per = _seconds_per_epoch(recs)
        n_ci = SETTINGS["ci"][bench].get("n_train", FULL_TRAIN[bench])
        total = 0.0
        for cfg in configs(bench, "paper"):
            b = cfg["budget"]
            if "seconds" in b:
                total += b["seconds"]
                continue
            same = [k for k in per if k.split("(")[0] == cfg["method"]]
            if not same:
                continue
            lab = config_label(cfg) if config_label(cfg) in per else same[-1]
            total += b["epochs"] * per[lab] * FULL_TRAIN[bench] / n_ci
        seeds = len(SETTINGS["paper"]["seeds"])
        rows.append({"benchmark": bench, "runs": seeds * len(configs(bench, "paper")),
                     "cpu_hours": seeds * total / 3600})
    return pd.DataFrame(rows)
