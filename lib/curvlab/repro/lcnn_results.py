"""LCNN reproduction: every experiment from sweep to verdict (the notebook's one call).

:func:`everything` runs (or reads back) the two-moons pair (Fig. 1a/b), computes the softplus curves
(Fig. 1c), runs the seven Table 1 variants on the reduced ResNet, writes every figure
(``figures/lcnn/<id>.png`` + ``.csv``) and table (``tables/lcnn/<id>.csv`` + ``.md``), and collects
the verdicts in the notebook's order. The paper-scale Table 1 and the architecture × dataset grid
get a "needs GPU" verdict naming their runnable configuration, unless their records exist (then
their verdicts are computed from them). The scorecard is left to the caller
(``verdicts.save_scorecard(out["verdicts"], "lcnn")``).
"""

from __future__ import annotations

from curvlab import data, plotting

from . import lcnn as R
from . import lcnn_figures as FIG
from . import lcnn_verdicts as V
from ._labels import data_label, notebook_seeds

PAPER = "lcnn"




def seeds(scale: str, seed: int = 0) -> list[int]:
    """The seeds of a scale; at ci scale shifted by the notebook's ``SEED`` (0: seeds 1, 2, 3)."""
    return notebook_seeds(R.SETTINGS[scale]["seeds"], scale, seed)


def model_label(scale: str) -> str:
    """E.g. ``"ResNet-18 [1, 1, 1, 1] ×0.125 width, 1×16×16 input"``."""
    s = R.settings(scale)
    m, inp = s["model"], s["input"]
    blocks = "" if m["blocks"] is None else f" {list(m['blocks'])}"
    return (
        f"ResNet-18{blocks} ×{m['width']:g} width, {inp['channels']}×{inp['size']}×{inp['size']} input, "
        f"{s['epochs']} epochs, batch {s['batch']}"
    )


def table1_verdicts(frame, scale: str, label: str, stand_in: bool, model: str) -> list:
    """The Table 1 claims (curvature, GradReg, lowest C, robustness, stability) and the two cost claims."""
    args = (frame, scale, label, stand_in)
    return [
        V.low_curvature(*args),
        V.gradreg(*args),
        V.lowest(*args),
        V.robust(*args),
        V.stable_gradients(*args),
        V.overhead(frame, scale, model),
        V.adversarial_cost(frame, scale, model),
    ]


def table1_results(scale: str, seed: int = 0, missing: str = "run") -> dict | None:
    """One scale's Table 1 sweep, its label and verdicts (None when reading only and a run is missing)."""
    s = seeds(scale, seed)
    frame = R.sweep_table1(scale, s, missing=missing)
    if missing == "skip" and len(frame) < len(R.TABLE1_VARIANTS) * len(s):
        return None
    dataset = R.dataset_for(R.settings(scale)["dataset"])
    label = data_label(dataset)
    model = model_label(scale)
    return {
        "frame": frame,
        "dataset": dataset,
        "label": label,
        "model": model,
        "title": f"Table 1 ({scale} scale): {model} on {label}",
        "verdicts": table1_verdicts(frame, scale, label, dataset in data.STAND_INS, model),
    }


def gpu_verdicts(paper_done: bool) -> list:
    """The paper-scale experiments not run here, each with the call that runs it."""
    s = R.settings("paper")
    out = []
    if not paper_done:
        out.append(
            V.needs_gpu(
                f"Table 1 at paper scale: ResNet-18 on {data_label(R.dataset_for(s['dataset']))}, "
                f"{s['epochs']} epochs, 7 variants",
                f"runnable: {R.PAPER_COMMAND} (batch {s['batch']}, SGD lr {s['optimizer']['lr']:g} "
                f"momentum {s['optimizer']['momentum']:g} wd {s['optimizer']['weight_decay']:g}); "
                "not run on this 2-core CPU",
            )
        )
    grid = " × ".join("/".join(v) for v in R.GRID.values())
    out.append(
        V.needs_gpu(
            "ResNet-18/34 and VGG-11 on the CIFAR-10 / CIFAR-100 / SVHN stand-ins (appendix grid)",
            f"runnable: python -m curvlab.repro.lcnn grid ({grid}, {s['epochs']} epochs); "
            "not run on this 2-core CPU",
        )
    )
    return out


def _figure(figures: dict, fig_id: str, made) -> None:
    fig, frame = made
    figures[fig_id] = {"figure": fig, "summary": plotting.save_figure(fig, PAPER, fig_id, frame)}


def everything(scale: str, seed: int = 0) -> dict:
    """Every experiment of the notebook at ``scale``: frames, figures, tables and verdicts (see module)."""
    if scale not in R.SETTINGS:
        raise ValueError(f"scale must be one of {R.SCALES}, got {scale!r}")
    run_seeds = seeds(scale, seed)
    moons = R.sweep_moons(scale, run_seeds)
    moons_title = (
        f"Two moons (generated), {scale} scale: standard vs LCNN MLP {R.settings(scale, 'moons')['hidden']}"
    )
    curves = FIG.softplus_curves()
    t1 = table1_results(scale, seed)
    paper = t1 if scale == "paper" else table1_results("paper", missing="skip")
    figures, tables = {}, {}
    _figure(figures, "fig1ab_two_moons", FIG.moons(moons, moons_title))
    _figure(figures, "fig1c_softplus", FIG.softplus(curves))
    frame, title = t1["frame"], t1["title"]
    _figure(figures, "table1_curvature", FIG.curvature_bars(frame, title))
    _figure(figures, "training_curves", FIG.training_curves(frame, title))
    _figure(figures, "robustness", FIG.robustness(frame, f"PGD-ℓ2 robustness, {scale} scale, {t1['label']}"))
    _figure(
        figures,
        "gradient_stability",
        FIG.stability(frame, f"Gradient stability, {scale} scale, {t1['label']}"),
    )
    _figure(
        figures, "training_time", FIG.training_time(frame, f"Training time, {scale} scale: {t1['model']}")
    )
    tables["table1"] = FIG.table1(frame, t1["label"])
    tables["robustness"] = FIG.robustness_table(frame)
    tables["overhead"] = FIG.overhead_table(frame)
    if paper is not None and scale != "paper":
        tables["table1_paper"] = FIG.table1(paper["frame"], paper["label"])
    for table_id, table in tables.items():
        plotting.save_table(table, PAPER, table_id)
    verdicts = [V.softplus_origin(curves), V.moons(moons, scale), *t1["verdicts"]]
    if paper is not None and scale != "paper":
        verdicts += paper["verdicts"]
    verdicts += gpu_verdicts(paper is not None)
    return {
        "scale": scale,
        "seeds": run_seeds,
        "settings": R.SETTINGS[scale],
        "moons": {"frame": moons, "label": "two_moons (generated)", "title": moons_title},
        "softplus": curves,
        "table1": {k: v for k, v in t1.items() if k != "verdicts"},
        "table1_paper": None if paper is None else {k: v for k, v in paper.items() if k != "verdicts"},
        "figures": figures,
        "tables": tables,
        "verdicts": verdicts,
    }
