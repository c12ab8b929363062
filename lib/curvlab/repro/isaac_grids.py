"""ISAAC Newton reproduction: every size, budget, grid and seed list, per scale, as config lists.

A *config* is the dict that keys one record: it holds every setting that changes the result — data
sizes, model, method and its hyperparameters (``la`` = λ_a, ``lg`` = λ_g, ``layers``, the product
``form`` of ζ* and the label ``samples`` of ζ / K-FAC), optimizer, learning rate, budget, evaluation
cadence, the divergence factor and the clock convention — so two runs that could differ never share a
record. λ = ∞ is written ``None`` (JSON has no infinity).

``ci`` budgets are in optimizer steps (deterministic on one machine); ``paper`` budgets are the
paper's epochs on the full training sets.
"""
from __future__ import annotations

import itertools
import math

LR_GRID = [1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001]       # the paper's learning-rate grid (App. B)
SCALES = ("ci", "paper")
#: What the record's time axis measures (stored in every config, so a change of convention re-keys).
CLOCK = "training wall-clock (time.perf_counter around optimizer steps; evaluation excluded)"
#: A run whose evaluation-set training loss exceeds this multiple of its initial value has diverged.
DIVERGE_FACTOR = 10.0
#: ζ* on these 1-based layer positions of the 5×400 MLP (Figure 5); None = plain gradient descent.
SUBSETS = {"GD": None, "{1,2,3,4,5}": [1, 2, 3, 4, 5], "{1}": [1], "{5}": [5], "{1,2,3}": [1, 2, 3],
           "{3,4,5}": [3, 4, 5], "{1,3,5}": [1, 3, 5], "{2,4}": [2, 4]}


def decades(lo: int, hi: int) -> list[float]:
    """[10^lo, …, 10^hi] as floats."""
    return [float(10.0 ** k) for k in range(lo, hi + 1)]


_SIZES = {"ci": {"n_train": 10_000, "n_test": 1_000, "n_eval": 1_000},
          "paper": {"n_train": 60_000, "n_test": 10_000, "n_eval": 60_000}}

CONFIG = {
    "ci": {
        "fig5": {"width": 400, "batch": 100, "budget": {"steps": 150}, "eval_every": 50, "la": 10.0,
                 "lrs": [3.0, 1.0, 0.3, 0.1], "seeds": [0, 1, 2], "tune_seeds": [0]},
        "fig1": {"width": 100, "batch": 60, "budget": {"steps": 250}, "eval_every": None,
                 "las": decades(-3, 3), "lrs": [3.0] + LR_GRID[:4], "zeta_lgs": [1e-2, 1.0, 1e2],
                 "zeta_las": [1e-2, 1.0, 1e2], "zeta_lrs": [3.0, 1.0, 0.3], "seeds": [0]},
        "fig4": {"width": 400, "batch": 60, "budget": {"steps": 200}, "eval_every": None,
                 "las": decades(-3, 3)[::2], "lrs": [0.01, 0.003, 0.001, 0.0003], "seeds": [0]},
        "fig2": {"batch": 60, "budget": {"steps": 60}, "eval_every": 15, "lams": [0.1, 0.01],
                 "lrs": [10.0, 3.0, 1.0, 0.3], "big_batch": None, "seeds": [0],
                 "extra_lrs": {"momentum": [0.1, 0.03], "adam": [0.001, 0.0003]}},
        "fig3": {"batch": 60, "budget": {"steps": 60}, "las": [0.01, 0.1, 1.0],
                 "lgs": [1e-3, None], "datasets": ["mnist", "fashion_mnist"], "seeds": [0]},
        "fig6": {"dataset": "fashion_mnist_32", "model": "sgn_arch_4", "n_train": 3_000,
                 "n_test": 1_000, "n_eval": 1_000, "batch": 100, "budget": {"epochs": 2},
                 "eval_every": 20, "lrs": [1.0, 0.3, 0.1], "la": 1.0, "seeds": [0]},
    },
    "paper": {
        "fig5": {"width": 400, "batch": 100, "budget": {"epochs": 30}, "eval_every": None, "la": 10.0,
                 "lrs": None, "seeds": [0]},        # lrs None: the learning rate chosen at ci scale
        "fig1": {"width": 400, "batch": 60, "budget": {"epochs": 40}, "eval_every": None,
                 "las": decades(-6, 6), "lrs": LR_GRID, "zeta_lgs": decades(-6, 6),
                 "zeta_las": decades(-6, 6), "zeta_lrs": LR_GRID, "seeds": [0]},
        "fig4": {"width": 400, "batch": 60, "budget": {"epochs": 40}, "eval_every": None,
                 "las": decades(-6, 6), "lrs": LR_GRID, "seeds": [0]},
        "fig2": {"batch": 60, "budget": {"epochs": 40}, "eval_every": None, "lams": [0.1, 0.01],
                 "lrs": LR_GRID, "extra_lrs": {"momentum": LR_GRID, "adam": LR_GRID},
                 "big_batch": 600, "seeds": [0]},
        "fig3": {"batch": 60, "budget": {"epochs": 10}, "las": decades(-6, 6),
                 "lgs": decades(-6, 6) + [None], "datasets": ["mnist", "fashion_mnist"], "seeds": [0]},
        "fig6": {"dataset": "cifar10", "model": "resnet18", "n_train": 50_000, "n_test": 10_000,
                 "n_eval": 10_000, "batch": 100, "budget": {"epochs": 50}, "eval_every": None,
                 "lrs": [1.0, 0.3, 0.1, 0.03, 0.01], "la": 1.0, "seeds": [0, 1, 2, 3, 4]},
    },
}


def settings(scale: str, fig: str) -> dict:
    """The settings of one figure at one scale (raises ``ValueError`` for an unknown scale or figure)."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    if fig not in CONFIG[scale]:
        raise ValueError(f"fig must be one of {sorted(CONFIG[scale])}, got {fig!r}")
    return CONFIG[scale][fig]


def base(scale: str, fig: str, **overrides) -> dict:
    """The settings every record of ``fig`` shares, with the method defaults spelled out."""
    s = settings(scale, fig)
    cfg = {"fig": fig, **_SIZES[scale], "dataset": "mnist", "task": "classify", "optimizer": "sgd",
           "batch": s["batch"], "budget": s["budget"], "eval_every": s.get("eval_every"),
           "method": "gd", "la": None, "lg": None, "layers": None, "form": None, "samples": None,
           "lr": None, "weight_lr": None, "diverge_factor": DIVERGE_FACTOR, "clock": CLOCK}
    cfg.update(overrides)
    return method_defaults(cfg)


def method_defaults(cfg: dict) -> dict:
    """Fill the product settings a method uses (ζ*: ``form`` auto; ζ / K-FAC: one label sample)."""
    cfg = dict(cfg)
    if cfg["method"] == "isaac":
        cfg["form"] = cfg["form"] or "auto"
    if cfg["method"] in ("zeta", "kfac"):
        cfg["samples"] = cfg["samples"] or 1
    cfg["lg"] = None if cfg["lg"] is None or math.isinf(cfg["lg"]) else float(cfg["lg"])
    return cfg


def fig5_grid(scale: str, lrs: dict | None = None) -> list[dict]:
    """Figure 5: GD and ζ* on each layer subset of the 5×400 MLP, over the lr grid.

    Args:
        scale: "ci" or "paper".
        lrs: setting label -> learning rate; overrides the grid (paper scale reuses the ci choice).
    """
    s = settings(scale, "fig5")
    grid = []
    for label, layers in SUBSETS.items():
        rates = [lrs[label]] if lrs else s["lrs"]
        for lr in rates:
            method = dict(method="gd") if layers is None else dict(method="isaac", la=s["la"], layers=layers)
            grid.append(base(scale, "fig5", model=f"mlp-{s['width']}", setting=label, lr=lr, **method))
    return grid


def fig1_grid(scale: str) -> list[dict]:
    """Figure 1: GD, the ζ* column over λ_a and a block of finite-λ_g ζ cells, each over its lrs."""
    s = settings(scale, "fig1")
    model = f"mlp-{s['width']}"
    grid = [base(scale, "fig1", model=model, setting="GD", lr=lr) for lr in s["lrs"]]
    grid += [base(scale, "fig1", model=model, setting="ζ*", method="isaac", la=la, lr=lr)
             for la, lr in itertools.product(s["las"], s["lrs"])]
    grid += [base(scale, "fig1", model=model, setting="ζ", method="zeta", la=la, lg=lg, lr=lr)
             for lg, la, lr in itertools.product(s["zeta_lgs"], s["zeta_las"], s["zeta_lrs"])]
    return grid


def fig4_grid(scale: str) -> list[dict]:
    """Figure 4: Adam alone and ζ* + Adam over λ_a, 400-wide MLP."""
    s = settings(scale, "fig4")
    common = dict(model=f"mlp-{s['width']}", optimizer="adam")
    grid = [base(scale, "fig4", setting="Adam", lr=lr, **common) for lr in s["lrs"]]
    grid += [base(scale, "fig4", setting="ζ* + Adam", method="isaac", la=la, lr=lr, **common)
             for la, lr in itertools.product(s["las"], s["lrs"])]
    return grid


def _ae(scale: str, fig: str, **kw) -> dict:
    return base(scale, fig, model="autoencoder", task="autoencode", **kw)


def fig2_grid(scale: str) -> list[dict]:
    """Figures 2 / 7 (first stage): GD, ζ* and ζ at each λ, momentum and Adam, over their lrs."""
    s = settings(scale, "fig2")
    grid = [_ae(scale, "fig2", setting="GD", lr=lr) for lr in s["lrs"]]
    for lam, lr in itertools.product(s["lams"], s["lrs"]):
        grid.append(_ae(scale, "fig2", setting=f"ζ* λ={lam:g}", method="isaac", la=lam, lr=lr))
        grid.append(_ae(scale, "fig2", setting=f"ζ λ={lam:g}", method="zeta", la=lam, lg=lam, lr=lr))
    for opt, lrs in s["extra_lrs"].items():
        label = "SGD+momentum" if opt == "momentum" else "Adam"
        grid += [_ae(scale, "fig2", setting=label, optimizer=opt, lr=lr) for lr in lrs]
    return grid


def fig2_kfac_grid(scale: str, zeta_lr: dict) -> list[dict]:
    """K-FAC at ζ's tuned rate: its weight step is ζ/(λ_g λ_a) (Theorem 1), so weights run at lr·λ².

    Args:
        scale: "ci" or "paper".
        zeta_lr: λ -> the learning rate chosen for ζ at that λ.
    """
    s = settings(scale, "fig2")
    grid = [_ae(scale, "fig2", setting=f"K-FAC λ={lam:g}", method="kfac", la=lam, lg=lam,
                lr=zeta_lr[lam], weight_lr=zeta_lr[lam] * lam ** 2) for lam in s["lams"]]
    if s["big_batch"]:
        lam = s["lams"][-1]
        grid += [_ae(scale, "fig2", setting=f"GD batch {s['big_batch']}", batch=s["big_batch"], lr=lr)
                 for lr in s["lrs"]]
        grid.append(_ae(scale, "fig2", setting=f"K-FAC λ={lam:g} batch {s['big_batch']}", method="kfac",
                        batch=s["big_batch"], la=lam, lg=lam, lr=zeta_lr[lam],
                        weight_lr=zeta_lr[lam] * lam ** 2))
    return grid


def fig3_grid(scale: str, sector_lr: dict) -> list[dict]:
    """Figure 3: the (λ_g, λ_a) grid per dataset, one learning rate per sector (GD, ζ*, ζ)."""
    s = settings(scale, "fig3")
    grid = []
    for ds in s["datasets"]:
        grid.append(_ae(scale, "fig3", dataset=ds, setting="GD", lr=sector_lr["GD"]))
        for lg, la in itertools.product(s["lgs"], s["las"]):
            if lg is None:
                grid.append(_ae(scale, "fig3", dataset=ds, setting="ζ*", method="isaac", la=la,
                                lr=sector_lr["ζ*"]))
            else:
                grid.append(_ae(scale, "fig3", dataset=ds, setting="ζ", method="zeta", la=la, lg=lg,
                                lr=sector_lr["ζ"]))
    return grid


def fig6_grid(scale: str, last_layer: int) -> list[dict]:
    """Figure 6: GD and ζ* on the last linear layer (position ``last_layer``) of a CNN, over lrs."""
    s = settings(scale, "fig6")
    sizes = {k: s[k] for k in ("n_train", "n_test", "n_eval")}
    common = dict(dataset=s["dataset"], model=s["model"], **sizes)
    grid = []
    for lr in s["lrs"]:
        grid.append(base(scale, "fig6", setting="GD", lr=lr, **common))
        grid.append(base(scale, "fig6", setting="ζ* last layer", method="isaac", la=s["la"],
                         layers=[last_layer], lr=lr, **common))
    return grid
