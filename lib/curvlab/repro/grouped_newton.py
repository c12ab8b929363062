"""GroupedNewton (Wolinski 2023) experiments as a library: settings per scale, one run function, records.

A run is one config (JSON-able, its hash is the record key; the whole ``GroupedNewtonConfig`` is in
it, as ``cfg["gn"]``) trained by :func:`train` through :func:`curvlab.sweep.sweep`. Settings follow
the reference's 2025 "final" runs (``NewtonSummaryUniformAvg``: SGD-momentum 0.9 direction, canonical
partition, summaries every 10 steps on a separate batch of 100, uniform averages over a period of 3
with a warm-up of 3, negative rates removed, cubic regularisation λ_int = 1, reduce-on-plateau of
λ₁ with patience 2, threshold 1e-4, factor 0.5), against Adam over the paper's learning-rate grid.

Clock: ``metrics["time"]`` is measured wall-clock of the optimizer steps only (summaries included,
evaluation excluded and timed apart in ``metrics["eval_time"]``).

Deviation from the reference, stated in every record (``cfg["summary_shuffle"] = True``): the
summaries' batches are drawn from a shuffled loader; the reference cycles an unshuffled one.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import pandas as pd
import torch

from curvlab import data, experiment, losses, models, training
from curvlab import sweep as sweep_mod

from ._clock import EvalClock

NOTEBOOK = "03_grouped_newton"
THREADS = 1                          # one intra-op thread per run (two runs share the two cores)
ADAM_GRID = [3e-4, 1e-4, 3e-5]       # the paper's Adam grid (MLP, LeNet)
# ci-scale runs are short, so a larger rate may win: the grid is extended upwards until its best
# rate is not at the edge (the evidence rule), and the extension is in every record's key.
ADAM_GRID_CI = [1e-2, 3e-3, 1e-3, *ADAM_GRID]

# The reference's 2025 "final" NewtonSummaryUniformAvg settings (grouped_newton.md §3).
FINAL = {"mlp": {"damping": 0.03, "damping_int": 1.0}, "lenet": {"damping": 0.3, "damping_int": 1.0}}
COMMON_GN = dict(partition="canonical", direction="sgd_momentum", period=10, averaging="uniform",
                 avg_period=3, warmup=3, remove_negative=True, regularization="cubic",
                 summary_batch_size=100, summary_shuffle=True,
                 plateau={"patience": 2, "threshold": 1e-4, "factor": 0.5})

SETTINGS = {
    "ci": {"seeds": [1, 2, 3],
           "mlp": {"dataset": "mnist", "n_train": 5000, "n_test": 2000, "batch": 100, "epochs": 4,
                   "adam": ADAM_GRID_CI},
           "lenet": {"dataset": "fashion_mnist_32", "n_train": 3000, "n_test": 1000, "batch": 100,
                     "epochs": 4, "adam": ADAM_GRID_CI}},
    "paper": {"seeds": [571677914, 421146319, 505702709, 70478166, 358472055],   # the reference's
              "mlp": {"dataset": "mnist", "n_train": 54000, "n_test": 10000, "batch": 100, "epochs": 200,
                      "adam": ADAM_GRID},
              "lenet": {"dataset": "cifar10", "n_train": 45000, "n_test": 10000, "batch": 100,
                        "epochs": 200, "adam": ADAM_GRID},
              "vgg11": {"dataset": "cifar10", "n_train": 45000, "n_test": 10000, "batch": 100,
                        "epochs": 100, "adam": [1e-5, 3e-6, 1e-6], "damping": 0.3},
              "bigmlp": {"dataset": "cifar10", "n_train": 45000, "n_test": 10000, "batch": 100,
                         "epochs": 100, "adam": [3e-6], "damping": 0.1}},
}
SCALES = tuple(SETTINGS)
MODELS = ("mlp", "lenet", "vgg11", "bigmlp")

# Per-channel normalisation of the reference (MNIST; CIFAR-10). A stand-in uses its own training
# statistics instead: the CIFAR constants describe other images.
NORMALISE = {"mnist": ((0.1307,), (0.3081,)),
             "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))}


def settings(scale: str, model: str) -> dict:
    """The settings of ``model`` at ``scale`` (``ValueError`` for an unknown one)."""
    if scale not in SETTINGS:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    if model not in SETTINGS[scale]:
        raise ValueError(f"model must be one of {[m for m in MODELS if m in SETTINGS[scale]]} at "
                         f"{scale} scale, got {model!r}")
    return SETTINGS[scale][model]


def dataset_for(scale: str, model: str) -> str:
    """The dataset a model trains on at ``scale``: CIFAR-10 when installed, else its stand-in."""
    name = settings(scale, model)["dataset"]
    if name == "cifar10" and not data.available("cifar10"):
        return "fashion_mnist_32"
    return name


@lru_cache(maxsize=None)
def prepared(dataset: str, n_train: int, n_test: int, flatten: bool):
    """(x_train, y_train, x_test, y_test) as float32, scaled to [0, 1] and normalised per channel."""
    tr, te = data.load(dataset, "train"), data.load(dataset, "test")
    xtr, xte = tr.x[:n_train].float() / 255, te.x[:n_test].float() / 255
    if xtr.ndim == 3:                                            # (N, H, W) -> (N, 1, H, W)
        xtr, xte = xtr[:, None], xte[:, None]
    if dataset in NORMALISE:
        mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in NORMALISE[dataset])
    else:                                                        # a stand-in: its own statistics
        mean, std = xtr.mean((0, 2, 3), keepdim=True), xtr.std((0, 2, 3), keepdim=True)
    xtr, xte = (xtr - mean) / std, (xte - mean) / std
    if flatten:
        xtr, xte = xtr.reshape(len(xtr), -1), xte.reshape(len(xte), -1)
    return xtr.contiguous(), tr.y[:n_train].long(), xte.contiguous(), te.y[:n_test].long()


def reference_init(model: torch.nn.Module, sigma_w: float = 1.0) -> torch.nn.Module:
    """The reference's initialisation: W ~ N(0, 1)·σ_w/√fan_in, biases 0 (uses torch's RNG)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
                fan_in = m.weight[0].numel()
                m.weight.normal_(0.0, sigma_w / math.sqrt(fan_in))
                if m.bias is not None:
                    m.bias.zero_()
    return model


def build_model(name: str, in_shape=(1, 28, 28)) -> torch.nn.Module:
    """The reference's networks, with its initialisation (:func:`reference_init`).

    MLP 784-1024-200-100-10 tanh (S = 8), LeNet-5 tanh (S = 10), VGG-11 ("A", ELU, no BN, one FC
    512→10; S = 18) and the 20×1024 ELU MLP (S = 42).
    """
    if name == "mlp":
        return reference_init(models.mlp([784, 1024, 200, 100, 10], "tanh", flatten=False))
    if name == "lenet":
        return reference_init(models.conv_net((3, 32, 32), [(6, 5), (16, 5)], [120, 84], 10, "tanh"))
    if name == "bigmlp":
        return reference_init(models.mlp([3 * 32 * 32] + [1024] * 20 + [10], "elu"), math.sqrt(2))
    if name == "vgg11":
        cfg = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]
        layers, c = [], 3
        for v in cfg:
            if v == "M":
                layers.append(torch.nn.MaxPool2d(2))
            else:
                layers += [torch.nn.Conv2d(c, v, 3, padding=1), torch.nn.ELU()]
                c = v
        layers += [torch.nn.Flatten(), torch.nn.Linear(512, 10)]
        return reference_init(torch.nn.Sequential(*layers), math.sqrt(2))
    raise ValueError(f"model must be one of {MODELS}, got {name!r}")


def gn_config(model: str, scale: str, **overrides) -> dict:
    """The whole GroupedNewton configuration of a run (a plain dict: it enters the record key)."""
    from curvlab.grouped_newton import GroupedNewtonConfig
    s = settings(scale, model)
    base = {**COMMON_GN, **FINAL.get(model, {}), **({"damping": s["damping"]} if "damping" in s else {})}
    return GroupedNewtonConfig(**{**base, **overrides}).as_dict()


def _base(model: str, scale: str) -> dict:
    s = settings(scale, model)
    return {"model": model, "dataset": dataset_for(scale, model), "n_train": s["n_train"],
            "n_test": s["n_test"], "batch": s["batch"], "budget": {"epochs": s["epochs"]},
            "threads": THREADS, "loss": "cross_entropy"}


def configs(model: str, scale: str) -> list[dict]:
    """GroupedNewton (full H̄ and the diagonal-H̄ ablation) and Adam over its grid, for one model."""
    base = _base(model, scale)
    grid = [{**base, "method": "GroupedNewton", "variant": "full", "gn": gn_config(model, scale)},
            {**base, "method": "GroupedNewton", "variant": "diagonal",
             "gn": gn_config(model, scale, diagonal=True)}]
    grid += [{**base, "method": "Adam", "variant": "baseline", "lr": lr}
             for lr in settings(scale, model)["adam"]]
    return grid


def label(cfg: dict) -> str:
    """Display name: ``GroupedNewton``, ``GroupedNewton (diag H̄)``, ``Adam(0.001)``."""
    if cfg["method"] == "Adam":
        return f"Adam({cfg['lr']:g})"
    return "GroupedNewton" + (" (diag H̄)" if cfg.get("variant") == "diagonal" else "")


def record_name(cfg: dict) -> str:
    """A readable record-name stem."""
    return f"{cfg['model']}-{label(cfg).replace(' ', '_')}-s{cfg['seed']}"


def _optimizer(cfg: dict, model: torch.nn.Module, xtr: torch.Tensor, ytr: torch.Tensor):
    """The step function ``(x, y) -> loss`` and the GroupedNewton optimizer (None for Adam)."""
    loss_fn = losses.loss_function(cfg["loss"])
    if cfg["method"] == "Adam":
        adam = torch.optim.Adam(model.parameters(), lr=cfg["lr"])

        def step(x, y):
            adam.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            adam.step()
            return loss.item()
        return step, None
    from curvlab.grouped_newton import GroupedNewton, GroupedNewtonConfig
    # the summary batches' order follows the run's seed (cfg["seed"] is in the record key)
    config = GroupedNewtonConfig.from_dict({**cfg["gn"], "seed": cfg["seed"]})
    opt = GroupedNewton(model, cfg["loss"], config, summary_data=(xtr, ytr))
    per_epoch = math.ceil(len(xtr) / cfg["batch"])
    epoch_losses = []

    def step(x, y):
        loss = opt.step(x, y)
        epoch_losses.append(loss)
        if len(epoch_losses) == per_epoch:         # the plateau rule reads each epoch's mean loss
            opt.epoch_end(sum(epoch_losses) / per_epoch)
            epoch_losses.clear()
        return loss
    return step, opt


def train(cfg: dict, ctx) -> dict:
    """One Adam or GroupedNewton run (the ``experiment.run`` / sweep contract).

    Returns ``training.fit``'s result with ``metrics["time"]`` the training clock, ``eval_time`` the
    cumulative evaluation seconds, and for GroupedNewton the optimizer's history (per recomputation:
    step, learning rates, H̄, solver status) under ``summary["history"]``.
    """
    torch.set_num_threads(cfg["threads"])
    xtr, ytr, xte, yte = (t.to(ctx.device) for t in prepared(cfg["dataset"], cfg["n_train"], cfg["n_test"],
                                                              cfg["model"] in ("mlp", "bigmlp")))
    model = build_model(cfg["model"]).to(ctx.device)
    step, opt = _optimizer(cfg, model, xtr, ytr)
    evaluate = EvalClock(lambda: training.evaluate_classifier(model, xte, yte))

    total = (ctx.budget.epochs or 0) * math.ceil(len(xtr) / cfg["batch"]) or None
    with ctx.progress(total=total) as bar:
        out = training.fit(step, xtr, ytr, batch_size=cfg["batch"], budget=ctx.budget,
                           generator=ctx.generator, evaluate=evaluate, time_evaluation=False,
                           progress=bar, chance=0.1)
    out["metrics"]["eval_time"] = evaluate.log
    out["summary"].update(eval_time_s=evaluate.total, clock="training only", cpu=experiment.cpu_name())
    if opt is not None:
        out["summary"]["history"] = opt.history
        out["summary"]["solver_failures"] = opt.stats["failures"]
    return out


def sweep(model: str, scale: str, seeds=None, **kw) -> pd.DataFrame:
    """Run one model's grid × seeds through :func:`curvlab.sweep.sweep` (resumable); its frame."""
    return sweep_mod.sweep(train, configs(model, scale), list(seeds or SETTINGS[scale]["seeds"]),
                           notebook=NOTEBOOK, scale=scale, name=record_name, **kw)


# What of the paper-scale MLP and LeNet runs fits in about an hour of a 2-core CPU (two runs at once,
# one thread each): the paper's data, batch, Adam grid and GroupedNewton settings, but the first 20 of
# its 200 epochs and the reference's first seeds. Committed under results/paper/; read, never run, by
# the notebook (``cpu_hour_sweep(model)``).
CPU_HOUR = {"epochs": 20,
            "seeds": {"mlp": SETTINGS["paper"]["seeds"][:2], "lenet": SETTINGS["paper"]["seeds"][:1]}}


def cpu_hour_configs(model: str) -> list[dict]:
    """:func:`configs` at paper scale with the budget cut to ``CPU_HOUR["epochs"]`` epochs."""
    if model not in CPU_HOUR["seeds"]:
        raise ValueError(f"model must be one of {sorted(CPU_HOUR['seeds'])}, got {model!r}")
    return [{**c, "budget": {"epochs": CPU_HOUR["epochs"]}} for c in configs(model, "paper")]


def cpu_hour_sweep(model: str, missing: str = "skip", **kw) -> pd.DataFrame:
    """The CPU-hour paper-scale records of ``model``: read only by default (``missing="run"`` runs them)."""
    return sweep_mod.sweep(train, cpu_hour_configs(model), CPU_HOUR["seeds"][model], notebook=NOTEBOOK,
                           scale="paper", name=lambda c: f"{record_name(c)}-e{c['budget']['epochs']}",
                           missing=missing, **kw)


class ScaledLinear(torch.nn.Module):
    """A linear layer whose weight is stored divided by ``scale``: W = scale · W̃, the same function.

    Training W̃ instead of W is a per-group affine reparameterisation: gradients with respect to W̃
    are ``scale`` times those with respect to W, so SGD's and Adam's steps in W change, while
    GroupedNewton's rates absorb the factor (``invariance_demo``).
    """

    def __init__(self, layer: torch.nn.Linear, scale: float):
        super().__init__()
        self.scale = float(scale)
        self.weight = torch.nn.Parameter(layer.weight.detach() / self.scale)
        self.bias = torch.nn.Parameter(layer.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102 (nn.Module's)
        return torch.nn.functional.linear(x, self.scale * self.weight, self.bias)


INVARIANCE = {"n": 512, "sizes": [784, 32, 16, 10], "batch": 128, "steps": 30, "scale": 100.0, "layer": 2,
              "sgd_lr": 0.1, "adam_lr": 1e-3, "seed": 0,
              "gn": dict(COMMON_GN, damping=0.3, period=2, avg_period=2, warmup=1, plateau=None,
                         summary_batch_size=128)}


def invariance_demo(settings: dict | None = None) -> dict:
    """Train the same float64 MLP twice, once with layer ``layer`` rescaled by ``scale``, per optimizer.

    Both runs start from the same function and see the same batches (and, for GroupedNewton, the same
    summary batches). Returns ``{"traces": {optimizer: {"original": losses, "rescaled": losses}},
    "difference": {optimizer: max_t |L_t - L'_t| / |L_t|}, "settings": ...}``.
    """
    from curvlab.grouped_newton import GroupedNewton, GroupedNewtonConfig
    s = {**INVARIANCE, **(settings or {})}
    xtr, ytr, _, _ = prepared("mnist", s["n"], 1, True)
    x, y = xtr.double(), ytr
    loss_fn = losses.loss_function("cross_entropy")

    def network(rescaled: bool) -> torch.nn.Module:
        torch.manual_seed(s["seed"])
        net = reference_init(models.mlp(s["sizes"], "tanh", flatten=False)).double()
        if rescaled:
            net[s["layer"]] = ScaledLinear(net[s["layer"]], s["scale"])
        return net

    def run(name: str, rescaled: bool) -> list[float]:
        net = network(rescaled)
        g = torch.Generator().manual_seed(s["seed"])
        order = [torch.randperm(len(x), generator=g)[: s["batch"]] for _ in range(s["steps"])]
        if name == "GroupedNewton":
            config = GroupedNewtonConfig.from_dict({**s["gn"], "seed": s["seed"]})
            opt = GroupedNewton(net, "cross_entropy", config, summary_data=(x, y))
            return [opt.step(x[i], y[i]) for i in order]
        opt = (torch.optim.SGD(net.parameters(), lr=s["sgd_lr"]) if name == "SGD"
               else torch.optim.Adam(net.parameters(), lr=s["adam_lr"]))
        out = []
        for i in order:
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(x[i]), y[i])
            loss.backward()
            opt.step()
            out.append(loss.item())
        return out

    traces = {name: {"original": run(name, False), "rescaled": run(name, True)}
              for name in ("GroupedNewton", "SGD", "Adam")}
    difference = {}
    for name, t in traces.items():
        a, b = np.asarray(t["original"]), np.asarray(t["rescaled"])
        with np.errstate(all="ignore"):
            rel = np.abs(a - b) / np.abs(a)
        difference[name] = float(np.nanmax(rel)) if np.isfinite(b).all() else math.inf
    return {"traces": traces, "difference": difference, "settings": s}


def paper_cost(ci_frames: dict[str, pd.DataFrame], workers: int = 1) -> pd.DataFrame:
    """Estimated paper-scale cost per model from the measured ci runs (seconds per example-epoch).

    Per model and method: ci training seconds / (ci epochs × ci examples) × paper epochs × paper
    examples × paper seeds × grid size; one thread per run, ``workers`` runs at once.
    """
    rows = []
    for model, frame in ci_frames.items():
        ci, paper = settings("ci", model), settings("paper", model)
        for method, grp in frame.groupby("method"):
            per = np.mean([r["summary"]["train_time_s"] / (ci["epochs"] * ci["n_train"])
                           for r in grp["record"]])
            configs_run = len(paper["adam"]) if method == "Adam" else grp["variant"].nunique()
            runs = configs_run * len(SETTINGS["paper"]["seeds"])
            seconds = per * paper["epochs"] * paper["n_train"] * runs
            rows.append({"model": model, "method": method, "runs": runs,
                         "cpu_hours": seconds / 3600, "hours_with_workers": seconds / 3600 / workers})
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    """``python -m curvlab.repro.grouped_newton cpu-hour [--models mlp lenet]``: run the CPU-hour records.

    Resumable (existing records are kept); ``CURVLAB_WORKERS=2`` runs two at once. Prints each run's
    final training NLL.
    """
    import argparse
    parser = argparse.ArgumentParser(prog="python -m curvlab.repro.grouped_newton",
                                     description="run the CPU-hour paper-scale records (results/paper/)")
    parser.add_argument("what", choices=["cpu-hour"])
    parser.add_argument("--models", nargs="+", default=list(CPU_HOUR["seeds"]),
                        choices=list(CPU_HOUR["seeds"]))
    args = parser.parse_args(argv)
    for model in args.models:
        frame = cpu_hour_sweep(model, missing="run")
        for _, row in frame.iterrows():
            print(model, label(row), row["seed"], row["status"],
                  f"{row['record']['metrics']['train_loss'][-1]:.4g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
