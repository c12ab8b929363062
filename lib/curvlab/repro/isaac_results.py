"""ISAAC Newton reproduction: each experiment from sweep to verdict, one function per figure.

Every function runs (or reads back, when the records exist) the figure's sweep at ``scale`` and
returns a dict with the frames, the best-lr table and the figure's :class:`curvlab.verdicts.Verdict`
(s). :func:`everything` runs them all in the notebook's order and collects the scorecard.
"""
from __future__ import annotations

import dataclasses
import math

import pandas as pd

from . import isaac as R
from . import isaac_grids as G
from . import isaac_verdicts as V


def _seeds(scale: str, fig: str) -> list[int]:
    return G.settings(scale, fig)["seeds"]


def fig5(scale: str) -> dict:
    """Figures 5 / 9: lr tuned per setting on the tuning seeds, then every seed at that lr."""
    tuning, table = R.fig5(scale)
    return {"tuning": tuning, "table": table, "curves": R.best_curves(table), "verdict": V.fig5(table, scale)}


def fig5_paper(ci_table: pd.DataFrame) -> dict | None:
    """Figures 5 / 9 from the paper-scale records on disk, read only (never run); None if incomplete.

    The rates were chosen at ci scale, so whether a rate sat at the edge of its grid is the ci
    tuning's verdict (``ci_table["at_edge"]``), not that of the single paper-scale rate.
    """
    from .. import experiment
    records = [r for r in experiment.load_records(R.NOTEBOOK, "paper") if r["config"].get("fig") == "fig5"]
    if {r["config"]["setting"] for r in records} != set(G.SUBSETS):
        return None
    frame = R.tidy(pd.DataFrame([{**r["config"], "status": r["status"], "record": r} for r in records]))
    table = R.best_lrs(frame)
    edge = dict(zip(ci_table["setting"], ci_table["at_edge"]))
    table["at_edge"] = [bool(edge.get(s, True)) for s in table["setting"]]
    return {"table": table, "curves": R.best_curves(table), "verdict": V.fig5(table, "paper"),
            "device": records[0]["environment"]["device_name"]}


def fig1(scale: str) -> dict:
    """Figure 1: GD, the ζ* column and the finite-λ_g ζ block, lr tuned per cell."""
    frame = R.sweep(G.fig1_grid(scale), _seeds(scale, "fig1"), scale)
    table = R.best_lrs(frame, ("setting", "la", "lg"))
    return {"frame": frame, "table": table, "cells": R.fig1_cells(table), "verdict": V.fig1(table, scale)}


def fig4(scale: str) -> dict:
    """Figure 4: Adam and ζ* + Adam over λ_a."""
    frame = R.sweep(G.fig4_grid(scale), _seeds(scale, "fig4"), scale)
    table = R.best_lrs(frame, ("setting", "la"))
    return {"frame": frame, "table": table, "verdict": V.fig4(table, scale)}


def fig2(scale: str) -> dict:
    """Figures 2 / 7: the auto-encoder; K-FAC runs at ζ's tuned rate (its steps equal ζ's)."""
    seeds = _seeds(scale, "fig2")
    first = R.best_lrs(R.sweep(G.fig2_grid(scale), seeds, scale))
    zeta_lr = {lam: first.loc[first["setting"] == f"ζ λ={lam:g}", "lr"].iloc[0]
               for lam in G.settings(scale, "fig2")["lams"]}
    kfac = R.best_lrs(R.sweep(G.fig2_kfac_grid(scale, zeta_lr), seeds, scale))
    kfac["at_edge"] = False                 # one rate by construction (ζ's), not a tuned grid
    table = pd.concat([first, kfac], ignore_index=True)
    verdicts = [V.fig2_lambda01(table, scale), V.fig2_lambda001(table, scale)]
    return {"table": table, "curves": R.best_curves(table), "verdicts": verdicts}


def fig3(scale: str, fig2_table) -> dict:
    """Figure 3: the (λ_g, λ_a) grids, one lr per sector taken from Figure 2 (λ = 0.1)."""
    pick = {"GD": "GD", "ζ*": "ζ* λ=0.1", "ζ": "ζ λ=0.1"}
    sector_lr = {k: fig2_table.loc[fig2_table["setting"] == v, "lr"].iloc[0] for k, v in pick.items()}
    frame = R.sweep(G.fig3_grid(scale, sector_lr), _seeds(scale, "fig3"), scale)
    heat = R.fig3_table(frame)
    return {"frame": frame, "heat": heat, "sector_lr": sector_lr, "verdict": V.fig3(heat, scale)}


def fig6(scale: str, stand_in: str) -> dict:
    """Figure 6: ζ* on the CNN's last layer against GD, every lr, every seed."""
    s = G.settings(scale, "fig6")
    frame = R.sweep(G.fig6_grid(scale, R.n_linear(s["model"])), s["seeds"], scale)
    cells = R.fig6_table(frame)
    curves = pd.concat([R.curves([rec], setting=st, lr=lr) for st, lr, rec
                          in zip(frame["setting"], frame["lr"], frame["record"])], ignore_index=True)
    return {"frame": frame, "cells": cells, "curves": curves,
            "verdict": V.fig6(cells, scale, stand_in=stand_in)}


def everything(scale: str, table2_results: dict, stand_in: str) -> dict:
    """Every experiment at ``scale``; ``out["verdicts"]`` is the scorecard's list, in paper order."""
    out = {"fig5": fig5(scale), "fig1": fig1(scale), "fig4": fig4(scale), "fig2": fig2(scale)}
    out["fig3"] = fig3(scale, out["fig2"]["table"])
    out["fig6"] = fig6(scale, stand_in)
    out["table2"] = V.table2(table2_results, scale)
    out["fig2"]["verdicts"].append(V.step_cost(table2_results, scale))
    out["verdicts"] = [out["fig5"]["verdict"], out["fig1"]["verdict"], out["fig4"]["verdict"],
                       *out["fig2"]["verdicts"], out["fig3"]["verdict"], out["table2"],
                       out["fig6"]["verdict"], *V.not_run()]
    return out


def table2_paper(record: dict):
    """Table 2's verdict on the paper-scale record, with the hardware that made it in the claim."""
    v = V.table2(record["metrics"], "paper")
    env = record["environment"]
    return dataclasses.replace(v, claim=f"{v.claim} (paper scale, widths to 6400; {env['device_name']}, "
                                        f"{record['config'].get('threads', 1)} thread)")


def paper_cost(out: dict) -> dict:
    """Estimated cost of ``python -m curvlab.repro.isaac fig5 --scale paper``.

    From the measured ci Figure 5 runs at the chosen rates: seconds per step (training and
    evaluation) × the paper's steps, summed over settings; wall-clock on 2 workers.
    """
    table, paper = out["fig5"]["table"], G.settings("paper", "fig5")
    steps = paper["budget"]["epochs"] * 60_000 // paper["batch"] * len(paper["seeds"])
    per_step = [sum(r["summary"]["train_time_s"] + r["summary"]["eval_time_s"] for r in recs)
                / sum(r["summary"]["steps"] for r in recs) for recs in table["records"]]
    hours = sum(per_step) * steps / 3600
    return {"runs": len(per_step) * len(paper["seeds"]), "steps_per_run": steps // len(paper["seeds"]),
            "cpu_hours": hours, "wall_hours_2_workers": hours / 2}


def table2_frame(results: dict, paper_ratio) -> pd.DataFrame:
    """Our Table 2 (ms per step = s per 1 000-step epoch) beside the paper's ratios; NaN: not timed.

    Args:
        results: model -> method -> measurements (``benchmarks/isaac.py``).
        paper_ratio: ``(model, method, column) -> ratio or None`` (column 0 time, 1 memory).
    """
    label = {"gradient": "gradient", "kfac": "K-FAC", "zeta": "ζ", "isaac": "ζ*"}
    rows = []
    for name, row in results.items():
        for method, shown in label.items():
            ours = row.get(method, {})
            rows.append({"model": name, "method": shown, "s per epoch (ours)": ours.get("time_ms", math.nan),
                         "time ratio (ours)": ours.get("time_ratio", math.nan),
                         "time ratio (paper CPU)": paper_ratio(name, method, 0) or math.nan,
                         "peak MB (ours)": ours.get("peak_mb", math.nan),
                         "memory ratio (ours)": ours.get("memory_ratio", math.nan),
                         "memory ratio (paper)": paper_ratio(name, method, 1) or math.nan})
    return pd.DataFrame(rows)
