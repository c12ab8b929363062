"""GroupedNewton reproduction: every experiment from sweep to verdict (the notebook's one call).

:func:`everything` runs (or reads back) the MLP / MNIST and LeNet-5 / CIFAR-10 sweeps at ``scale``,
the invariance demonstration, and collects the verdicts in the notebook's order. The experiments
that need a GPU (VGG-11 and the 20×1024 MLP on CIFAR-10, and the 200-epoch, 5-seed runs) get a
"needs GPU" verdict naming their runnable configuration, unless their records exist.
"""
from __future__ import annotations

from curvlab import data

from . import grouped_newton as R
from . import grouped_newton_verdicts as V
from ._labels import data_label, notebook_seeds

TITLES = {"mlp": "MLP 784-1024-200-100-10 tanh (S = 8)", "lenet": "LeNet-5 tanh (S = 10)",
          "vgg11": "VGG-11 ELU (S = 18)", "bigmlp": "MLP 20×1024 ELU (S = 42)"}




def seeds(scale: str, seed: int = 0) -> list[int]:
    """The seeds of a scale; at ci scale shifted by the notebook's ``SEED`` (0: seeds 1, 2, 3)."""
    return notebook_seeds(R.SETTINGS[scale]["seeds"], scale, seed)


def model_results(model: str, scale: str, seed: int = 0) -> dict:
    """One model's sweep at ``scale`` (seeds from :func:`seeds`) and its verdicts."""
    frame = R.sweep(model, scale, seeds(scale, seed))
    dataset = R.dataset_for(scale, model)
    stand_in = dataset in data.STAND_INS
    label = data_label(dataset)
    title = f"{TITLES[model]} on {label}, {scale} scale"
    verdicts = [V.vs_adam(frame, model, scale, label, stand_in), V.diagonal_ablation(frame, model, scale),
                V.interactions(frame, model, scale), V.lr_range(frame, model, scale)]
    return {"frame": frame, "dataset": dataset, "label": label, "title": title, "verdicts": verdicts}


def cpu_hour(model: str) -> dict | None:
    """The committed CPU-hour paper-scale records of ``model`` and their verdicts (read, never run).

    ``R.CPU_HOUR``: the paper's data, batch, grid and settings, the first 20 of the 200 epochs, the
    reference's first seeds. None until every run of the grid has a record on disk.
    """
    frame = R.cpu_hour_sweep(model)
    expected = len(R.cpu_hour_configs(model)) * len(R.CPU_HOUR["seeds"][model])
    if len(frame) < expected:
        return None
    dataset = R.dataset_for("paper", model)
    label = data_label(dataset)
    epochs = (R.CPU_HOUR["epochs"], R.settings("paper", model)["epochs"])
    tag = f"{model} (paper data, {epochs[0]} of {epochs[1]} epochs)"
    verdicts = [V.vs_adam(frame, tag, "paper", label, dataset in data.STAND_INS),
                V.diagonal_ablation(frame, tag, "paper"), V.interactions(frame, tag, "paper"),
                V.lr_range(frame, tag, "paper")]
    record = frame["record"].iloc[0]
    return {"frame": frame, "dataset": dataset, "label": label, "verdicts": verdicts,
            "title": f"{TITLES[model]} on {label}, paper data, first {epochs[0]} of {epochs[1]} epochs",
            "device": f"{record['environment']['device_name']}, "
                      f"{record['environment']['threads']} thread per run"}


def gpu_verdicts(scale: str) -> list:
    """The paper-scale experiments not run here, each with the command that runs it."""
    out = []
    for model in ("mlp", "lenet", "vgg11", "bigmlp"):
        if scale == "paper" and model in ("mlp", "lenet"):
            continue                                         # run by everything() itself
        s = R.settings("paper", model)
        data = "MNIST" if s["dataset"] == "mnist" else "CIFAR-10"
        out.append(V.needs_gpu(f"{TITLES[model]} on {data} at paper scale: {s['epochs']} epochs, "
                               f"{len(R.SETTINGS['paper']['seeds'])} seeds",
                               f"runnable: curvlab.repro.grouped_newton.sweep({model!r}, 'paper') "
                               f"({s['dataset']}, Adam grid {s['adam']}); not run on this 2-core CPU"))
    return out


def everything(scale: str, seed: int = 0) -> dict:
    """Every experiment of the notebook at ``scale``: per-model results, invariance, all verdicts."""
    models = [m for m in ("mlp", "lenet") if m in R.SETTINGS[scale]]
    per_model = {m: model_results(m, scale, seed) for m in models}
    import pandas as pd
    frames = pd.concat([r["frame"] for r in per_model.values()], ignore_index=True)
    demo = R.invariance_demo()
    verdicts = [v for m in models for v in per_model[m]["verdicts"]]
    verdicts += [V.stable(frames, scale), V.invariance(demo["difference"], scale)]
    paper_cpu = {m: cpu_hour(m) for m in R.CPU_HOUR["seeds"]}
    verdicts += [v for res in paper_cpu.values() if res for v in res["verdicts"]]
    verdicts += gpu_verdicts(scale)
    return {"models": per_model, "invariance": demo, "paper_cpu": paper_cpu, "verdicts": verdicts}
