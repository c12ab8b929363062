"""LCNN (Srinivas et al. 2022) experiments as a library: settings per scale, run functions, sweeps.

Run functions (through :func:`curvlab.sweep.sweep`: records cached, provenanced, resumable):

- :func:`train_moons` — Fig. 1a/b, the two-moons MLP, standard vs LCNN: test accuracy, the exact
  normalised curvature C = ‖∇²ₓℓ‖₂ / (‖∇ₓℓ‖ + ε) on test points and on a grid (2-D inputs: exact 2×2
  input Hessians), and the grid's class-1 probabilities (the decision boundary).
- :func:`train_table1` — Table 1, one of :data:`TABLE1_VARIANTS` on the reduced ResNet: per epoch the
  training objective, the training clock (evaluation excluded), test loss and accuracy; then
  ``measure_dataset`` summaries (mean ± std of C, ‖∇²ℓ‖, ‖∇ℓ‖ on test points, the converged fraction),
  PGD-ℓ2 robust accuracy over radii, and gradient stability (cosine of ∇ₓℓ at x and x + noise).

One skeleton and optimiser for every variant (SGD, momentum 0.9, weight decay 5e-4 off log β, log γ,
MultiStepLR ×0.1 at 75 % and 87.5 % of the epochs): ``standard`` (Softplus β=1000), ``lcnn`` (centred
softplus, Lipschitz BN, spectral norm; + reg_β Σβ + reg_γ Σ|log γ|), ``gradnorm`` (+ λ mean ‖∇ₓℓ_i‖²),
``lcnn_gradnorm``, ``cure``, ``softplus_wd`` (Softplus β=10) and ``adversarial`` (trained on PGD-ℓ2
examples, ε 0.1, 3 steps of 0.01: the reference's faithful, weak attack).

Data: the CIFAR-100 stand-in ``mnist_fashion_20`` when CIFAR-100 is absent; pixels /255 in [0, 1], not
normalised; seeded random subsets (its splits are MNIST then Fashion). ci scale: the first channel (the
three are copies) mean-pooled to 16×16, no augmentation; paper scale: 3×32×32, random crop (padding 4)
and flip as in the reference. A run whose loss turns non-finite is recorded ``diverged`` (measurements
``nan``), never raised.
"""
from __future__ import annotations

import math
import time
from functools import lru_cache

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from curvlab import data, experiment, training
from curvlab import sweep as sweep_mod

from ._clock import EvalClock

NOTEBOOK = "04_lcnn"
THREADS = 1
TABLE1_VARIANTS = ("standard", "lcnn", "gradnorm", "lcnn_gradnorm", "cure", "softplus_wd", "adversarial")
LABELS = {"standard": "Standard", "lcnn": "LCNN", "gradnorm": "GradReg", "lcnn_gradnorm": "LCNN + GradReg",
          "cure": "CURE", "softplus_wd": "Softplus + Wt. Decay", "adversarial": "Adversarial Training"}
ARCH = {"standard": "standard", "lcnn": "lcnn", "gradnorm": "standard", "lcnn_gradnorm": "lcnn",
        "cure": "standard", "softplus_wd": "softplus_wd", "adversarial": "standard"}
# the reference's train_models.py defaults (lcnn.md §2.8)
REFERENCE = {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "milestones": [0.75, 0.875], "batch": 128,
             "reg_beta": 1e-2, "reg_gamma": 1e-2, "reg_gnorm": 1e-3, "epochs": 200, "seed": 1729}
ADVERSARIAL = {"eps": 0.1, "steps": 3, "step_size": 0.01}          # l2_pgd_3_100000 (lcnn.md §2.10)

_COMMON = {"dataset": "cifar100", "batch": REFERENCE["batch"],
           "optimizer": {k: REFERENCE[k] for k in ("lr", "momentum", "weight_decay", "milestones")},
           "regularizers": {"reg_beta": REFERENCE["reg_beta"], "reg_gamma": REFERENCE["reg_gamma"],
                            "reg_gnorm_reference": REFERENCE["reg_gnorm"]},
           "adversarial": ADVERSARIAL}
_MOONS = {"n": 1000, "noise": 0.1, "hidden": [64, 64, 64], "batch": 100, "lr": 0.1}
SETTINGS = {
    "ci": {"seeds": [1, 2, 3],
           "moons": {**_MOONS, "epochs": 20, "grid": 60},
           "table1": {**_COMMON, "n_train": 1536, "n_test": 512, "n_measure": 64,
                      "input": {"channels": 1, "size": 16}, "augment": False,
                      "model": {"name": "resnet18", "width": 0.125, "blocks": [1, 1, 1, 1]}, "epochs": 4,
                      "measure": {"iters": 10, "batch": 64},
                      "robust": {"radii": [0.1, 0.2, 0.3], "steps": 5, "factor": 2.5},
                      "stability": {"sigma": 0.01, "n_draws": 2}}},
    "paper": {"seeds": [REFERENCE["seed"]],
              "moons": {**_MOONS, "epochs": 200, "grid": 100},
              "table1": {**_COMMON, "n_train": None, "n_test": None, "n_measure": 1000,
                         "input": {"channels": 3, "size": 32}, "augment": True,
                         "model": {"name": "resnet18", "width": 1.0, "blocks": None},
                         "epochs": REFERENCE["epochs"], "measure": {"iters": 10, "batch": 64},
                         "robust": {"radii": [0.1, 0.2, 0.3], "steps": 10, "factor": 2.5},
                         "stability": {"sigma": 0.01, "n_draws": 8}}},
}
SCALES = tuple(SETTINGS)
# The appendix grid of the reference's code (architectures × datasets); paper scale only.
GRID = {"models": ("resnet18", "resnet34", "vgg11"), "datasets": ("cifar10", "cifar100", "svhn"),
        "variants": ("standard", "lcnn")}
STAND_IN = {"cifar10": "fashion_mnist_32", "cifar100": "mnist_fashion_20", "svhn": "mnist_32"}
MOON_BOX = (-1.5, 2.5, -1.0, 1.5)                   # x_min, x_max, y_min, y_max of the boundary grid


def settings(scale: str, experiment_name: str = "table1") -> dict:
    """The settings of one experiment (``"moons"`` or ``"table1"``) at ``scale``."""
    if scale not in SETTINGS:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    if experiment_name not in ("moons", "table1"):
        raise ValueError(f"experiment_name must be 'moons' or 'table1', got {experiment_name!r}")
    return SETTINGS[scale][experiment_name]


def dataset_for(name: str) -> str:
    """The real dataset when installed, else its stand-in (``cifar100`` -> ``mnist_fashion_20``)."""
    if name not in STAND_IN:
        raise ValueError(f"dataset must be one of {sorted(STAND_IN)}, got {name!r}")
    return name if data.available(name) else STAND_IN[name]


def objective(variant: str, s: dict) -> dict:
    """The regularisation weights of one Table 1 variant (all zero for plain cross-entropy).

    The reference's constants map to batch-size-free strengths at its batch size: λ_g = c·1e5/B² on
    mean_i ‖∇ₓℓ_i‖² (6.1e-3 for c = 1e-3, B = 128) and, for CURE, λ_c = c·1e3/B².
    """
    if variant not in TABLE1_VARIANTS:
        raise ValueError(f"variant must be one of {TABLE1_VARIANTS}, got {variant!r}")
    from curvlab.lcnn.regularizers import cure_reference_strength, reference_strength
    reg = s["regularizers"]
    c, batch = reg["reg_gnorm_reference"], s["batch"]
    curv = {"reg_beta": reg["reg_beta"], "reg_gamma": reg["reg_gamma"]}
    return {"reg_beta": 0.0, "reg_gamma": 0.0, "reg_gnorm": 0.0, "reg_cure": 0.0,
            **(curv if ARCH[variant] == "lcnn" else {}),
            **({"reg_gnorm": reference_strength(c, batch)} if "gradnorm" in variant else {}),
            **({"reg_cure": cure_reference_strength(c, batch)} if variant == "cure" else {})}


def table1_config(variant: str, scale: str, model: str = "resnet18", dataset: str | None = None) -> dict:
    """The whole configuration of one Table 1 run (it is the record key)."""
    s = settings(scale)
    ds = dataset_for(dataset or s["dataset"])
    return {"experiment": "table1", "variant": variant, "arch": ARCH[variant], "dataset": ds,
            "n_train": s["n_train"], "n_test": s["n_test"], "n_measure": s["n_measure"], "subset_seed": 0,
            "input": s["input"], "augment": s["augment"], "model": {**s["model"], "name": model},
            "batch": s["batch"], "budget": {"epochs": s["epochs"]}, "optimizer": s["optimizer"],
            "objective": objective(variant, s),
            "adversarial": s["adversarial"] if variant == "adversarial" else None,
            "measure": s["measure"], "robust": s["robust"], "stability": s["stability"], "threads": THREADS}


def configs_table1(scale: str) -> list[dict]:
    """The seven Table 1 variants at ``scale``, in the paper's row order."""
    return [table1_config(v, scale) for v in TABLE1_VARIANTS]


def configs_grid() -> list[dict]:
    """The paper-scale architecture × dataset grid (standard and LCNN; ResNet-18/34, VGG-11)."""
    return [table1_config(v, "paper", m, d) for m in GRID["models"] for d in GRID["datasets"]
            for v in GRID["variants"]]


def configs_moons(scale: str) -> list[dict]:
    """Standard and LCNN two-moons MLPs at ``scale``."""
    s = settings(scale, "moons")
    t1 = settings(scale)
    return [{"experiment": "moons", "variant": v, "dataset": "two_moons", "n": s["n"], "noise": s["noise"],
             "hidden": s["hidden"], "batch": s["batch"], "budget": {"epochs": s["epochs"]},
             "optimizer": {**t1["optimizer"], "lr": s["lr"]},
             "objective": objective(v, t1),
             "grid": s["grid"], "threads": THREADS} for v in ("standard", "lcnn")]


def record_name(cfg: dict) -> str:
    """A readable record-name stem, e.g. ``table1-resnet18-lcnn_gradnorm-s2``."""
    head = "moons" if cfg["experiment"] == "moons" else f"table1-{cfg['model']['name']}-{cfg['dataset']}"
    return f"{head}-{cfg['variant']}-s{cfg['seed']}"


@lru_cache(maxsize=4)
def prepared(dataset: str, n_train: int | None, n_test: int | None, channels: int, size: int,
             subset_seed: int = 0):
    """(x_train, y_train, x_test, y_test): seeded random subsets, float32 pixels in [0, 1].

    The first ``channels`` channels are kept and the images mean-pooled to ``size`` × ``size``.
    """
    tr, te = data.load(dataset, "train"), data.load(dataset, "test")
    rng = np.random.default_rng(subset_seed)

    def subset(d, n):
        idx = rng.permutation(len(d.x))[: len(d.x) if n is None else n]
        x = d.x[torch.from_numpy(idx)].float() / 255
        x = x[:, None] if x.ndim == 3 else x
        x = x[:, :channels]
        if x.shape[-1] != size:
            x = F.adaptive_avg_pool2d(x, size)
        return x.contiguous(), d.y[torch.from_numpy(idx)].long()
    return (*subset(tr, n_train), *subset(te, n_test))


def augment(x: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """The reference's augmentation: random crop after zero padding by ``padding``, random h-flip."""
    n, _, h, w = x.shape
    padded = F.pad(x, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    out = torch.stack([padded[i, :, a:a + h, b:b + w] for i, (a, b) in enumerate(zip(dy.tolist(),
                                                                                      dx.tolist()))])
    flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], out.flip(-1), out)


def build_model(cfg: dict) -> torch.nn.Module:
    """The network of a Table 1 or grid config (``cfg["model"]``, ``cfg["arch"]``, input shape)."""
    from curvlab.lcnn import models as M
    m, inp = cfg["model"], cfg["input"]
    classes = data.load(cfg["dataset"], "test").classes
    kw = dict(variant=cfg["arch"], width=m["width"], in_channels=inp["channels"], input_size=inp["size"])
    if m["name"] in ("resnet18", "resnet34"):
        return getattr(M, m["name"])(classes, blocks=m["blocks"], **kw)
    if m["name"] == "vgg11":
        return M.vgg11(classes, **kw)
    raise ValueError(f"model name must be resnet18, resnet34 or vgg11, got {m['name']!r}")


def _finite(model: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def _sgd_step(cfg: dict, model: torch.nn.Module, steps_per_epoch: int, ctx):
    """The training step ``(x, y) -> objective`` of a config, with its epoch-wise LR schedule."""
    from curvlab.lcnn.models import parameter_groups
    from curvlab.lcnn.regularizers import regularized_loss
    o = cfg["optimizer"]
    opt = torch.optim.SGD(parameter_groups(model, o["weight_decay"]), lr=o["lr"], momentum=o["momentum"])
    epochs = cfg["budget"]["epochs"]
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [int(f * epochs) for f in o["milestones"]], 0.1)
    adv, stats = cfg.get("adversarial"), {"steps": 0, "cpu_s": 0.0}

    def step(x, y):
        t0 = time.process_time()
        model.train()
        if cfg.get("augment"):
            x = augment(x, ctx.generator)
        if adv:
            from curvlab.lcnn.robustness import pgd_l2
            x = pgd_l2(model, x, y, adv["eps"], steps=adv["steps"], step_size=adv["step_size"],
                       seed=stats["steps"]).detach()
            model.train()
        total, _ = regularized_loss(model, x, y, **cfg["objective"])
        loss = total.detach().item()
        if math.isfinite(loss):
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
        stats["steps"] += 1
        if stats["steps"] % steps_per_epoch == 0:
            sched.step()
        stats["cpu_s"] += time.process_time() - t0
        return loss
    step.stats = stats
    return step


def _measurements(cfg: dict, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict:
    """Curvature, robustness and gradient-stability summaries of a trained model on ``(x, y)``."""
    from curvlab.lcnn.measurement import measure_dataset
    from curvlab.lcnn.robustness import gradient_stability, robust_accuracy
    m, r, st = cfg["measure"], cfg["robust"], cfg["stability"]
    res = measure_dataset(model, x, y, batch_size=m["batch"], iters=m["iters"], seed=0)
    out = {}
    for q in ("curvature", "hessian_norm", "gradient_norm"):
        t = getattr(res, q).detach().double()
        out[f"{q}_mean"], out[f"{q}_std"] = float(t.mean()), float(t.std()) if t.numel() > 1 else 0.0
    out["converged_fraction"] = float(res.converged.float().mean())
    robust = robust_accuracy(model, x, y, r["radii"], steps=r["steps"], step_size_factor=r["factor"])
    out.update({f"robust_{float(radius):g}": float(acc) for radius, acc in robust.items()})
    cos = gradient_stability(model, x, y, st["sigma"], st["n_draws"]).detach().double()
    out["stability_mean"], out["stability_std"] = float(cos.mean()), float(cos.std()) if len(cos) > 1 else 0.0
    return out


def _nan_measurements(cfg: dict) -> dict:
    keys = [f"{q}_{s}" for q in ("curvature", "hessian_norm", "gradient_norm") for s in ("mean", "std")]
    keys += ["converged_fraction", "stability_mean", "stability_std"]
    keys += [f"robust_{float(r):g}" for r in cfg["robust"]["radii"]]
    return dict.fromkeys(keys, math.nan)


def _fit(cfg: dict, model, xtr, ytr, xte, yte, ctx, chance: float):
    """``training.fit`` of ``model`` with the config's step; evaluation timed apart (:class:`EvalClock`).

    Besides the wall-clock training time, the process CPU seconds of the steps are summed
    (``summary["train_cpu_s"]``): with one thread per run, a clock that other processes do not inflate.
    """
    step = _sgd_step(cfg, model, math.ceil(len(xtr) / cfg["batch"]), ctx)
    evaluate = EvalClock(lambda: training.evaluate_classifier(model, xte, yte))
    with ctx.progress(total=None) as bar:
        out = training.fit(step, xtr, ytr, batch_size=cfg["batch"], budget=ctx.budget,
                           generator=ctx.generator, evaluate=evaluate, time_evaluation=False, progress=bar,
                           chance=chance)
    out["summary"]["train_cpu_s"] = step.stats["cpu_s"]
    return out, evaluate


def train_table1(cfg: dict, ctx) -> dict:
    """One Table 1 run (the ``experiment.run`` / sweep contract); see the module docstring."""
    torch.set_num_threads(cfg["threads"])
    inp = cfg["input"]
    tensors = prepared(cfg["dataset"], cfg["n_train"], cfg["n_test"], inp["channels"], inp["size"],
                       cfg["subset_seed"])
    xtr, ytr, xte, yte = (t.to(ctx.device) for t in tensors)
    model = build_model(cfg).to(ctx.device)
    out, evaluate = _fit(cfg, model, xtr, ytr, xte, yte, ctx, 1.0 / data.load(cfg["dataset"], "test").classes)
    xm, ym = xte[: cfg["n_measure"]], yte[: cfg["n_measure"]]
    t0 = time.perf_counter()
    finite = out["status"] != "diverged" and _finite(model)
    meas = _measurements(cfg, model, xm, ym) if finite else _nan_measurements(cfg)
    acc = out["metrics"].get("test_accuracy") or [math.nan]
    out["summary"].update(test_accuracy=float(acc[-1]) if finite else math.nan, **meas,
                          measure_time_s=time.perf_counter() - t0, eval_time_s=evaluate.total,
                          clock="training only", cpu=experiment.cpu_name(), **_layer_constants(model))
    return out


def _layer_constants(model: torch.nn.Module) -> dict:
    """Mean learned β and γ of the centred softplus and Lipschitz BN modules (nan if none)."""
    from curvlab.lcnn.models import beta_modules, lipschitz_bn_modules
    betas = [m.beta.detach().item() for m in beta_modules(model)]
    gammas = [m.gamma.detach().item() for m in lipschitz_bn_modules(model)]
    return {"beta_mean": float(np.mean(betas)) if betas else math.nan,
            "gamma_mean": float(np.mean(gammas)) if gammas else math.nan}


def exact_curvature_2d(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float = 1e-6) -> dict:
    """Per-point C = ‖∇²ₓℓ‖₂ / (‖∇ₓℓ‖ + ε) for 2-D inputs from the exact 2×2 input Hessians (eval mode).

    In eval mode the points do not interact, so the gradient of Σᵢℓᵢ holds every ∇ₓℓᵢ and the gradient
    of its k-th column Σᵢ ∂ₖℓᵢ holds every row k of the per-point Hessians.
    """
    was = model.training
    model.eval()
    xx = x.detach().clone().requires_grad_(True)
    loss = F.cross_entropy(model(xx), y, reduction="sum")
    (g,) = torch.autograd.grad(loss, xx, create_graph=True)
    rows = [torch.autograd.grad(g[:, k].sum(), xx, retain_graph=True)[0] for k in range(x.shape[1])]
    H = torch.stack(rows, 1).detach()
    model.train(was)
    H = 0.5 * (H + H.transpose(1, 2))
    hnorm = torch.linalg.eigvalsh(H.double()).abs().amax(1)
    gnorm = g.detach().double().norm(dim=1)
    return {"curvature": hnorm / (gnorm + eps), "hessian_norm": hnorm, "gradient_norm": gnorm}


def moons_grid(n: int) -> torch.Tensor:
    """An ``n`` × ``n`` grid over :data:`MOON_BOX`, rows of (x, y), x varying fastest."""
    x0, x1, y0, y1 = MOON_BOX
    gx, gy = torch.linspace(x0, x1, n), torch.linspace(y0, y1, n)
    yy, xx = torch.meshgrid(gy, gx, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)


def train_moons(cfg: dict, ctx) -> dict:
    """One two-moons MLP (Fig. 1a/b): accuracy, exact C on test points and grid, grid probabilities."""
    from curvlab.lcnn.models import moons_mlp
    kw = {"n": cfg["n"], "noise": cfg["noise"], "seed": 0}
    tr, te = data.load("two_moons", "train", **kw), data.load("two_moons", "test", **kw)
    xtr, ytr = tr.x.float().to(ctx.device), tr.y.long().to(ctx.device)
    xte, yte = te.x.float().to(ctx.device), te.y.long().to(ctx.device)
    model = moons_mlp(cfg["variant"], tuple(cfg["hidden"])).to(ctx.device)
    out, evaluate = _fit({**cfg, "augment": False, "adversarial": None}, model, xtr, ytr, xte, yte, ctx, 0.5)
    grid = moons_grid(cfg["grid"]).to(ctx.device)
    if out["status"] != "diverged" and _finite(model):
        test = exact_curvature_2d(model, xte, yte)
        with torch.no_grad():
            model.eval()
            prob = torch.softmax(model(grid), 1)[:, 1]
        on_grid = exact_curvature_2d(model, grid, (prob > 0.5).long())
        summ = {f"{q}_{s}": float(getattr(v, s)()) for q, v in test.items() for s in ("mean", "median")}
        summ["curvature_std"] = float(test["curvature"].std())
        summ["grid_curvature_mean"] = float(on_grid["curvature"].mean())
        out["metrics"]["grid_prob"] = prob.cpu().tolist()
    else:
        summ = {"curvature_mean": math.nan, "curvature_median": math.nan, "grid_curvature_mean": math.nan}
        out["metrics"]["grid_prob"] = []
    acc = out["metrics"].get("test_accuracy") or [math.nan]
    out["summary"].update(test_accuracy=float(acc[-1]), eval_time_s=evaluate.total, **summ,
                          **_layer_constants(model))
    return out


def sweep_table1(scale: str, seeds=None, missing: str = "run", configs=None, **kw) -> pd.DataFrame:
    """The Table 1 variants × seeds through :func:`curvlab.sweep.sweep` (``missing="skip"``: read only)."""
    grid, seeds = configs or configs_table1(scale), list(seeds or SETTINGS[scale]["seeds"])
    return sweep_mod.sweep(train_table1, grid, seeds, notebook=NOTEBOOK, scale=scale, name=record_name,
                           missing=missing, **kw)


def sweep_moons(scale: str, seeds=None, **kw) -> pd.DataFrame:
    """The two-moons pair × seeds through :func:`curvlab.sweep.sweep`."""
    return sweep_mod.sweep(train_moons, configs_moons(scale), list(seeds or SETTINGS[scale]["seeds"]),
                           notebook=NOTEBOOK, scale=scale, name=record_name, **kw)


PAPER_COMMAND = "python -m curvlab.repro.lcnn paper  (= curvlab.repro.lcnn.sweep_table1('paper'))"


def main(argv=None) -> int:
    """``python -m curvlab.repro.lcnn paper|grid``: run the paper-scale Table 1 (or the appendix grid)."""
    import argparse
    what = argparse.ArgumentParser(prog="python -m curvlab.repro.lcnn")
    what.add_argument("what", choices=["paper", "grid"])
    frame = sweep_table1("paper", configs=configs_grid() if what.parse_args(argv).what == "grid" else None)
    print(frame[["variant", "seed", "status", "test_accuracy", "curvature_mean"]].to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
