"""ISAAC Newton reproduction: the run function, the sweeps and the read-out rules.

One module-level function, :func:`train`, trains every MLP, auto-encoder and CNN of the paper's
experiments from a config of :mod:`curvlab.repro.isaac_grids` (module-level so Dask workers can import
it). :func:`sweep` sends a grid × seeds through :func:`curvlab.sweep.sweep` and returns the tidy
frame; the read-outs turn frames into per-setting choices:

- **score**: the final training loss on the fixed evaluation subset; a diverged run scores +∞.
- **outcome**: ``"diverged"`` (a non-finite loss, or an evaluation above ``diverge_factor`` × the
  initial loss, at the recorded step), ``"collapsed to chance"`` (finite loss, but the final test
  accuracy within 5 points of 1/classes: the network predicts one class), else ``"ok"``.
- **best lr**: per setting, the rate whose mean score over seeds is lowest; at the grid's edge it is
  flagged, because a better rate may lie outside.

Command line (resumable: records already on disk are skipped)::

    python -m curvlab.repro.isaac fig5 --scale ci
    CURVLAB_WORKERS=2 python -m curvlab.repro.isaac fig5 --scale paper
"""
from __future__ import annotations

import argparse
import functools
import math
import time

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .. import data, isaac, isaac_kfac, models, training
from . import isaac_grids as grids

NOTEBOOK = "01_isaac"
CHANCE_MARGIN = 0.05
N_CLASSES = 10


@functools.lru_cache(maxsize=8)
def arrays(name: str, n_train: int, n_test: int):
    """(x_train, y_train, x_test, y_test): pixels / 255 as float32; MNIST-type images flattened."""
    def prep(ds, k):
        x = ds.x[:k].float() / 255
        return (x.reshape(len(x), -1) if x.dim() == 3 else x), ds.y[:k]
    return (*prep(data.load(name, "train"), n_train), *prep(data.load(name, "test"), n_test))


def build_model(spec: str) -> torch.nn.Module:
    """``mlp-<width>`` (5 layers, 784 → 10), ``autoencoder``, ``sgn_arch_4`` or ``resnet18``."""
    if spec.startswith("mlp-"):
        width = int(spec[4:])
        return models.mlp([784, width, width, width, width, 10])
    builders = {"autoencoder": models.autoencoder, "sgn_arch_4": models.sgn_arch_4,
                "resnet18": models.resnet18}
    if spec not in builders:
        raise ValueError(f"model must be mlp-<width> or one of {sorted(builders)}, got {spec!r}")
    return builders[spec]()


def n_linear(spec: str) -> int:
    """How many ``nn.Linear`` layers the model has (the last layer's 1-based position)."""
    return sum(isinstance(m, torch.nn.Linear) for m in build_model(spec).modules())


@torch.no_grad()
def mse(model: torch.nn.Module, x: torch.Tensor, batch: int = 2000) -> float:
    """Mean squared reconstruction error over all pixels (``F.mse_loss``'s scale)."""
    was = model.training
    model.eval()
    total = sum(F.mse_loss(model(x[i:i + batch]), x[i:i + batch], reduction="sum").item()
                for i in range(0, len(x), batch))
    model.train(was)
    return total / x.numel()


def _optimizer(cfg: dict, model: torch.nn.Module, layers):
    params = list(model.parameters())
    if cfg.get("weight_lr") is not None:          # own rate for the preconditioned weights (K-FAC)
        chosen = {id(mod.weight) for _, mod in isaac.select_linear_layers(model, layers)}
        params = [{"params": [p for p in params if id(p) in chosen], "lr": cfg["weight_lr"]},
                  {"params": [p for p in params if id(p) not in chosen]}]
    if cfg["optimizer"] == "adam":
        return torch.optim.Adam(params, lr=cfg["lr"])
    if cfg["optimizer"] not in ("sgd", "momentum"):
        raise ValueError(f"optimizer must be 'sgd', 'momentum' or 'adam', got {cfg['optimizer']!r}")
    return torch.optim.SGD(params, lr=cfg["lr"], momentum=0.9 if cfg["optimizer"] == "momentum" else 0.0)


def _prepare(cfg: dict, model: torch.nn.Module, device, autoencode: bool):
    """Put the method on the model; return (layers, preconditioner or None)."""
    layers = cfg.get("layers") or list(range(1, n_linear(cfg["model"]) + 1))
    if cfg["method"] == "isaac":
        isaac.apply_isaac(model, cfg["la"], layers)
        return layers, None
    if cfg["method"] in ("zeta", "kfac"):
        sampler = torch.Generator(device=device).manual_seed(int(cfg["seed"]) + 1)
        lg = math.inf if cfg["lg"] is None else cfg["lg"]
        pre = isaac_kfac.KroneckerPreconditioner(
            model, cfg["la"], lg, layers, method=cfg["method"], samples=cfg.get("samples") or 1,
            loss="mse" if autoencode else "cross_entropy", generator=sampler)
        return layers, pre
    if cfg["method"] != "gd":
        raise ValueError(f"method must be 'gd', 'isaac', 'zeta' or 'kfac', got {cfg['method']!r}")
    return layers, None


def train(cfg: dict, ctx) -> dict:
    """Train one config (see :mod:`curvlab.repro.isaac_grids`); the ``experiment.run`` contract.

    Divergence is checked at every evaluation: a non-finite loss or one above ``diverge_factor`` ×
    the initial evaluation loss stops the run; ``summary["diverged_step"]`` records where.
    """
    autoencode = cfg["task"] == "autoencode"
    xtr, ytr, xte, yte = (t.to(ctx.device) for t in arrays(cfg["dataset"], cfg["n_train"], cfg["n_test"]))
    if autoencode:
        ytr, yte = xtr, xte
    model = build_model(cfg["model"]).to(ctx.device)
    layers, pre = _prepare(cfg, model, ctx.device, autoencode)
    opt = _optimizer(cfg, model, layers)
    loss_fn = F.mse_loss if autoencode else F.cross_entropy
    state = {"step": 0, "diverged_step": None, "initial": None, "eval_s": 0.0}

    def step(xb, yb):
        if state["diverged_step"] is not None:     # stop fit: a non-finite loss ends the run
            return math.nan
        opt.zero_grad(set_to_none=True)
        out = model(xb)
        loss = loss_fn(out, yb)
        try:
            if pre is None:
                loss.backward()
            else:
                pre.backward(loss, out)
        except torch.linalg.LinAlgError:   # blown-up activations make a damped system singular
            state["diverged_step"] = state["step"]
            return math.nan
        opt.step()
        state["step"] += 1
        return loss.item()

    def evaluate():
        t0 = time.perf_counter()
        n = cfg["n_eval"]
        if autoencode:
            res = {"loss": mse(model, xte), "train_subset_loss": mse(model, xtr[:n])}
        else:
            res = {**training.evaluate_classifier(model, xte, yte),
                   "train_subset_loss": training.evaluate_classifier(model, xtr[:n], ytr[:n])["loss"]}
        _check_divergence(state, res["train_subset_loss"], cfg["diverge_factor"])
        state["eval_s"] += time.perf_counter() - t0
        return res

    total = ctx.budget.steps or math.ceil(ctx.budget.epochs * math.ceil(len(xtr) / cfg["batch"]))
    with ctx.progress(total=total) as bar:
        out = training.fit(step, xtr, ytr, batch_size=cfg["batch"], budget=ctx.budget,
                           generator=ctx.generator, evaluate=evaluate,
                           eval_every_steps=cfg.get("eval_every"), progress=bar)
    if pre is not None:
        pre.remove()
    return _finish(out, state)


def _check_divergence(state: dict, loss: float, factor: float) -> None:
    if state["initial"] is None:
        state["initial"] = loss
    elif state["diverged_step"] is None and not loss <= factor * state["initial"]:   # nan-safe
        state["diverged_step"] = state["step"]


def _finish(out: dict, state: dict) -> dict:
    met = out["metrics"]
    met["eval_train_loss"] = met.pop("test_train_subset_loss")
    if state["diverged_step"] is not None or out["status"] != "ok":
        out["status"] = "diverged"
    summ = out["summary"]
    summ.update({"steps": state["step"], "final_train_loss": met["eval_train_loss"][-1],
                 "final_test_loss": met["test_loss"][-1],
                 "final_test_accuracy": met.get("test_accuracy", [math.nan])[-1],
                 "diverged_step": state["diverged_step"] if out["status"] == "diverged" else None,
                 "eval_time_s": state["eval_s"]})
    if out["status"] == "diverged" and summ["diverged_step"] is None:      # non-finite step loss
        summ["diverged_step"] = state["step"]
    return out


# ---------------------------------------------------------------- read-outs


def score(rec: dict) -> float:
    """Final training loss on the evaluation subset; +∞ for a diverged run."""
    v = rec["summary"].get("final_train_loss", math.nan)
    return v if rec["status"] == "ok" and math.isfinite(v) else math.inf


def outcome(rec: dict) -> str:
    """``"diverged"``, ``"collapsed to chance"``, ``"at chance"`` or ``"ok"``.

    A classifier whose final test accuracy is within ``CHANCE_MARGIN`` of 1/classes ends at chance:
    "collapsed" if an earlier evaluation was above that level (it learned, then lost it), else "at
    chance" (it never left it). Neither is a divergence: the loss stays finite and bounded.
    """
    if rec["status"] != "ok":
        return "diverged"
    accs = [a for a in rec["metrics"].get("test_accuracy", []) if math.isfinite(a)]
    chance = 1.0 / N_CLASSES + CHANCE_MARGIN
    if not accs or accs[-1] > chance:
        return "ok"
    return "collapsed to chance" if max(accs[1:], default=0.0) > chance else "at chance"


def tidy(frame: pd.DataFrame) -> pd.DataFrame:
    """Add ``score`` and ``outcome`` columns (from the records) to a sweep frame."""
    return frame.assign(score=frame["record"].map(score), outcome=frame["record"].map(outcome))


def best_lrs(frame: pd.DataFrame, by=("setting",)) -> pd.DataFrame:
    """Per group: the lr with the lowest mean score over seeds.

    Returns:
        One row per group: ``lr``, ``at_edge`` (the best rate is the grid's largest or smallest; a
        single-rate grid counts as at the edge), the chosen rate's ``scores``, ``seeds`` and
        ``records``, and ``failed_lrs`` (rates where some seed diverged or ended at chance).
    """
    from ..verdicts import best_on_grid
    rows = []
    for key, grp in frame.groupby(list(by), sort=False, dropna=False):
        mean = grp.groupby("lr")["score"].mean()
        if np.isfinite(mean.to_numpy()).any():
            lr, edge = best_on_grid(list(mean.index), list(mean.to_numpy()), higher_is_better=False)
        else:                                  # every rate diverged: report the smallest, at the edge
            lr, edge = float(mean.index.min()), True
        chosen = grp[grp["lr"] == lr]
        rows.append({**dict(zip(by, key if isinstance(key, tuple) else (key,))), "lr": lr,
                     "at_edge": bool(edge), "scores": list(chosen["score"]), "seeds": list(chosen["seed"]),
                     "records": list(chosen["record"]),
                     "failed_lrs": sorted(set(grp.loc[grp["outcome"] != "ok", "lr"]), reverse=True)})
    return pd.DataFrame(rows)


def curves(records: list[dict], **labels) -> pd.DataFrame:
    """The evaluation curves of records as one tidy frame (``time_s``: training seconds)."""
    keys = ["step", "epoch", "time", "eval_train_loss", "test_loss", "test_accuracy"]
    frames = [pd.DataFrame({k: r["metrics"][k] for k in keys if k in r["metrics"]})
              .rename(columns={"time": "time_s"})
              .assign(**labels, seed=r["config"]["seed"], outcome=outcome(r)) for r in records]
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------- sweeps


def record_name(cfg: dict) -> str:
    """A readable file stem: figure, setting, dampings, lr (the hash keeps the rest apart)."""
    parts = [cfg["fig"], cfg["dataset"] if cfg["fig"] == "fig3" else None, cfg["method"],
             "L" + "".join(map(str, cfg["layers"])) if cfg["layers"] else None,
             f"la{cfg['la']:g}" if cfg["la"] is not None else None,
             f"lg{cfg['lg']:g}" if cfg["lg"] is not None else None,
             cfg["optimizer"] if cfg["optimizer"] != "sgd" else None, f"b{cfg['batch']}", f"lr{cfg['lr']:g}"]
    return "-".join(p for p in parts if p)


def sweep(grid: list[dict], seeds, scale: str, **kw) -> pd.DataFrame:
    """Run ``grid`` × ``seeds`` through :func:`curvlab.sweep.sweep` (resumable); the tidy frame."""
    from .. import sweep as sweep_mod
    frame = sweep_mod.sweep(train, grid, list(seeds), notebook=NOTEBOOK, scale=scale, name=record_name, **kw)
    return tidy(frame)


def tuned(grid: list[dict], tune_seeds, seeds, scale: str, by=("setting",)):
    """Tune the lr per setting on ``tune_seeds``, then run the chosen configs on ``seeds``.

    Returns:
        (tuning frame, best_lrs table of the final runs with the tuning's ``at_edge`` flag).
    """
    tuning = sweep(grid, tune_seeds, scale)
    choice = best_lrs(tuning, by)
    keys = {tuple(r[k] for k in by) + (r["lr"],) for _, r in choice.iterrows()}
    chosen = [c for c in grid if tuple(c[k] for k in by) + (c["lr"],) in keys]
    final = best_lrs(sweep(chosen, seeds, scale), by)
    final["at_edge"] = list(choice["at_edge"])
    final["failed_lrs"] = list(choice["failed_lrs"])
    return tuning, final


def fig5_ci_lrs() -> dict:
    """The learning rate chosen per Figure 5 setting at ci scale (runs the ci tuning if needed)."""
    s = grids.settings("ci", "fig5")
    _, table = tuned(grids.fig5_grid("ci"), s["tune_seeds"], s["seeds"], "ci")
    return dict(zip(table["setting"], table["lr"]))


def fig5(scale: str):
    """Figure 5's sweep at ``scale``.

    Returns:
        (frame of the runs, ``best_lrs`` table); at paper scale every setting runs at its ci-chosen rate.
    """
    s = grids.settings(scale, "fig5")
    if scale == "paper":
        frame = sweep(grids.fig5_grid(scale, fig5_ci_lrs()), s["seeds"], scale)
        return frame, best_lrs(frame)
    tuning, table = tuned(grids.fig5_grid(scale), s["tune_seeds"], s["seeds"], scale)
    return tuning, table


def paper_cost(ci: pd.DataFrame, scale_factor: float, workers: int = 2) -> dict:
    """Estimated paper-scale cost from measured ci runs.

    Total training + evaluation seconds of the ci rows, times ``scale_factor`` (paper steps / ci
    steps), divided over ``workers``.
    """
    secs = sum(r["summary"]["train_time_s"] + r["summary"].get("eval_time_s", 0.0) for r in ci["record"])
    return {"ci_seconds": secs, "paper_cpu_hours": secs * scale_factor / 3600,
            "wall_hours": secs * scale_factor / 3600 / workers}


# ---------------------------------------------------------------- tables for the notebook


def summary(table: pd.DataFrame, by=("setting",)) -> pd.DataFrame:
    """A printable best-lr table: mean final loss [min, max] over seeds, edge flag, failed rates."""
    from .isaac_verdicts import _span
    return pd.DataFrame({**{k: table[k] for k in by}, "best lr": table["lr"],
                         "lr at grid edge": table["at_edge"], "seeds": table["seeds"].map(len),
                         "final train loss": table["scores"].map(_span),
                         "test accuracy": table["records"].map(_mean_accuracy),
                         "diverged / at chance at lr": table["failed_lrs"].map(
                             lambda v: ", ".join(f"{x:g}" for x in v) or "—")})


def _mean_accuracy(records) -> str:
    from .isaac_verdicts import fmt
    accs = [r["summary"]["final_test_accuracy"] for r in records]
    return "—" if any(a is None or math.isnan(a) for a in accs) else fmt(sum(accs) / len(accs))


def best_curves(table: pd.DataFrame, by: str = "setting") -> pd.DataFrame:
    """The curves of every seed at each setting's chosen lr."""
    return pd.concat([curves(r.records, **{by: getattr(r, by)}, lr=r.lr) for r in table.itertuples()],
                     ignore_index=True)


def fig1_cells(table: pd.DataFrame) -> pd.DataFrame:
    """Figure 1's best-lr cells with a plot label (ζ* or "ζ, λ_g = …"), mean loss and accuracy."""
    acc = table["records"].map(lambda rs: sum(r["summary"]["final_test_accuracy"] for r in rs) / len(rs))
    label = [s if s != "ζ" else f"ζ, λ_g = {lg:g}" for s, lg in zip(table["setting"], table["lg"])]
    return table.assign(label=label, loss=table["scores"].map(lambda s: sum(s) / len(s)),
                        accuracy=acc)[["setting", "label", "la", "lg", "lr", "at_edge", "loss", "accuracy"]]


def fig3_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Figure 3's cells: per (dataset, setting, λ_a, λ_g) the seeds' scores and mean log10 loss."""
    rows = []
    for key, grp in frame.groupby(["dataset", "setting", "la", "lg"], sort=False, dropna=False):
        mean = grp["score"].mean()
        rows.append(dict(zip(["dataset", "setting", "la", "lg"], key), scores=list(grp["score"]),
                         log_loss=math.log10(mean) if math.isfinite(mean) else math.nan))
    return pd.DataFrame(rows)


def fig6_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Figure 6's cells: per (setting, lr) the seeds' final test accuracies and the worst outcome."""
    rows = []
    for (setting, lr), grp in frame.groupby(["setting", "lr"], sort=False):
        acc = [r["summary"]["final_test_accuracy"] if r["status"] == "ok" else 0.0 for r in grp["record"]]
        seen = set(grp["outcome"])
        worst = next((o for o in ("diverged", "collapsed to chance", "at chance") if o in seen), "ok")
        rows.append({"setting": setting, "lr": lr, "accuracy": acc, "outcome": worst})
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    """``python -m curvlab.repro.isaac fig5 --scale ci|paper``: run or resume the sweep, print the rates."""
    parser = argparse.ArgumentParser(prog="python -m curvlab.repro.isaac", description=__doc__.split("\n")[0])
    parser.add_argument("figure", choices=["fig5"])
    parser.add_argument("--scale", choices=grids.SCALES, default="ci")
    args = parser.parse_args(argv)
    _, table = fig5(args.scale)
    print(table[["setting", "lr", "at_edge", "scores"]].to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
