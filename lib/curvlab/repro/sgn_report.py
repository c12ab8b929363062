"""Report helpers of the SGN notebook: per-benchmark summaries, timing and read-out tables, ρ/α traces.

Every function takes the records (or the notebook's ``SUMMARY`` entries built from them) as explicit
arguments. A *benchmark summary* maps a scale tag (``"ci"``, ``"paper"``) to an info dict with at least
``df`` (the long table of :func:`curvlab.repro.sgn_readouts.records_frame`), ``final`` (seed-mean final
values per config) and ``records``; classification summaries add ``epochs`` (per config, the seed-mean
test accuracy per epoch end). :func:`summarise` computes a summary without drawing; the two ``*_section``
functions draw and print one (through callbacks, by default those of :mod:`curvlab.repro.sgn_figures`).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from curvlab import plotting

from . import sgn_figures as sf
from . import sgn_readouts as ro
from . import sgn_reference
from .sgn import hardware
from .sgn_reference import label

ALL = ["boston", "sine_10", "sine_100", "mnist", "fashion", "cifar10"]
CLASSIFICATION = ["mnist", "fashion", "cifar10"]
REGRESSION = ["boston", "sine_10", "sine_100"]
PAPER_READ_OUT = {"mnist": [25, 100], "fashion": [50, 150], "cifar10": [650, 2000]}
RHO_FLOOR = 1.0001e-6


def clock_axis(records: list[dict]) -> str:
    """The x label of a time axis.

    Returns:
        ``"measured seconds (...)"`` naming what the records' clocks measured (sorted, ``/``-joined).
    """
    kinds = sorted({r["summary"].get("clock", "training + evaluation") for r in records})
    return f"measured seconds ({' / '.join(kinds)})"


def seeds_of(records: list[dict]) -> list[int]:
    """The seeds of a list of records.

    Returns:
        The sorted distinct ``config["seed"]`` values.
    """
    return sorted({r["config"]["seed"] for r in records})


def describe(records: list[dict], scale: str) -> str:
    """A one-line provenance note for a figure title.

    Returns:
        ``"<scale> scale, seeds [...], <hardware>"``, or ``""`` when there are no records.
    """
    if not records:
        return ""
    return f"{scale} scale, seeds {seeds_of(records)}, {hardware(records)}"


def final_means(df: pd.DataFrame, metric: str) -> pd.Series:
    """Per config, the seed mean of each seed's last finite ``metric`` (the end of the budget).

    Returns:
        A Series indexed by config label.
    """
    last = df.dropna(subset=[metric]).groupby(["config", "seed"]).tail(1)
    return last.groupby("config")[metric].mean()


def best_of(values: pd.Series, method: str, lower_is_better: bool) -> tuple[str | None, float]:
    """The best finite value among one method's configs ('longer' runs excluded).

    Returns:
        ``(label, value)``, or ``(None, nan)`` when the method has no finite value.
    """
    v = values[[c for c in values.index if c.startswith(method) and "longer" not in c]].dropna()
    v = v[np.isfinite(v)]
    if v.empty:
        return None, np.nan
    lab = v.idxmin() if lower_is_better else v.idxmax()
    return lab, float(v[lab])


def diverged_sgd(records: list[dict]) -> list[str]:
    """The SGD configs with a diverged run.

    Returns:
        Sorted distinct labels such as ``"SGD(1)"``.
    """
    return sorted({label("SGD", r["config"]["lr"]) for r in records if r["status"] == "diverged"})


def record_label(config: dict) -> str:
    """The config label of one record's config (``SGD(0.1)``, ``SGN(3)``, ``SGD(0.1) longer``).

    Returns:
        The label string.
    """
    value = config.get("lr") if config["method"] == "SGD" else config["cg"]
    return label(config["method"], value, config.get("longer", False))


def epoch_accuracy(df: pd.DataFrame) -> dict[str, pd.Series]:
    """Per config, the seed-mean test accuracy at each epoch end (epoch 0 excluded).

    Returns:
        A dict label -> Series indexed by epoch.
    """
    ep = {}
    for lab, g in df.groupby("config"):
        ends = g[(g["epoch"] == g["epoch"].round()) & (g["epoch"] > 0)]
        ep[lab] = ends.groupby("epoch")["test_accuracy"].mean()
    return ep


def regression_summary(records: list[dict]) -> dict:
    """One regression benchmark's records at one scale, summarised (nothing drawn or printed).

    Returns:
        ``dict(df, final, sgd=(label, value), sgn=(label, value), diverged, records)``: the long table,
        the seed-mean final test MSE per config, the best of each method and the diverged SGD configs.
    """
    df = ro.records_frame(records)
    final = final_means(df, "test_loss")
    return dict(df=df, final=final, sgd=best_of(final, "SGD", True), sgn=best_of(final, "SGN", True),
                diverged=diverged_sgd(records), records=records)


def classification_summary(records: list[dict]) -> dict:
    """One classification benchmark's records at one scale, summarised (nothing drawn or printed).

    Returns:
        ``dict(df, final, epochs, records, diverged, stand_in)``: ``final`` the seed-mean test accuracy
        at the end of the budget, ``epochs`` the seed-mean accuracy per epoch end, ``stand_in`` whether
        the records ran on a stand-in dataset (``fashion_mnist_32`` for CIFAR-10).
    """
    df = ro.records_frame(records)
    stand_in = any(r["config"].get("benchmark") == "cifar10" and r["config"].get("dataset") != "cifar10"
                   for r in records)
    return dict(df=df, final=final_means(df, "test_accuracy"), epochs=epoch_accuracy(df), records=records,
                diverged=diverged_sgd(records), stand_in=stand_in)


def summarise(bench: str, here: list[dict], paper: list[dict], scale: str) -> dict:
    """The benchmark summary: scale tag -> info (:func:`regression_summary` / :func:`classification_summary`).

    Args:
        bench: Benchmark name.
        here: Records at the notebook's scale.
        paper: Paper-scale records (summarised only when ``scale == "ci"``).
        scale: The notebook's scale.

    Returns:
        ``{scale: info}`` plus ``{"paper": info}`` from ci; a tag without records is left out.
    """
    one = regression_summary if bench in REGRESSION else classification_summary
    tags = [(here, scale)] + ([(paper, "paper")] if scale == "ci" else [])
    return {tag: one(recs) for recs, tag in tags if recs}


def _suffix(tag: str) -> str:
    return "" if tag == "ci" else "_paper"


def _no_paper(bench: str, summary: dict, scale: str) -> None:
    if scale == "ci" and "paper" not in summary:
        print(f"{bench}: no paper-scale records (not run; needs a GPU for the full configuration)"
              if bench in ("fashion", "cifar10") else f"{bench}: no paper-scale records (not run)")


def regression_section(bench: str, title_data: str, summary: dict, scale: str,
                       draw: Callable | None = None, overlay: Callable | None = None) -> None:
    """Draw and print one regression benchmark's summary, scale by scale (figures, final MSE, best of each).

    Args:
        bench: Benchmark name.
        title_data: Figure title prefix.
        summary: The benchmark summary (:func:`summarise`).
        scale: The notebook's scale (from ci a missing paper scale is named).
        draw: ``draw(df, bench, title, fig_id, clock_label)``, the learning-curve figure
            (default :func:`curvlab.repro.sgn_figures.draw`).
        overlay: ``overlay(df, bench, title, fig_id, separate)``, the figure against the reference's logs
            (default :func:`curvlab.repro.sgn_figures.draw_overlay`).
    """
    draw, overlay = draw or sf.draw, overlay or sf.draw_overlay
    for tag, info in summary.items():
        recs, df, final = info["records"], info["df"], info["final"]
        draw(df, bench, f"{title_data} — {describe(recs, tag)}", f"{bench}{_suffix(tag)}", clock_axis(recs))
        (sgn_lab, sgn_best), (sgd_lab, sgd_best) = info["sgn"], info["sgd"]
        sig = plotting.round_sig
        print(f"[{tag}] final test MSE, seed mean: " + ", ".join(f"{k} {sig(v):g}" for k, v in final.items()))
        print(f"[{tag}] best SGN {sgn_lab} {sig(sgn_best):g} < best SGD {sgd_lab} {sig(sgd_best):g}: "
              f"{sgn_best < sgd_best}; diverged: {', '.join(info['diverged']) or 'none'}")
        overlay(df, bench, f"{title_data}: ours ({tag} scale) vs the reference's logs",
                f"{bench}_overlay{_suffix(tag)}", False)
    _no_paper(bench, summary, scale)


def classification_section(bench: str, title_data: str, summary: dict, scale: str,
                           draw: Callable | None = None, overlay: Callable | None = None) -> None:
    """Draw and print one classification benchmark's summary (arguments as :func:`regression_section`).

    A stand-in's reference curves are drawn on their own row (``separate``).
    """
    draw, overlay = draw or sf.draw, overlay or sf.draw_overlay
    for tag, info in summary.items():
        recs, df = info["records"], info["df"]
        draw(df, bench, f"{title_data} — {describe(recs, tag)}", f"{bench}{_suffix(tag)}", clock_axis(recs))
        print(f"[{tag}] test accuracy at the end of the budget, seed mean: "
              + ", ".join(f"{k} {100 * v:.0f} %" for k, v in info["final"].items())
              + f"; diverged: {', '.join(info['diverged']) or 'none'}")
        overlay(df, bench, f"{title_data}: ours ({tag} scale) vs the reference's logs",
                f"{bench}_overlay{_suffix(tag)}", bool(info.get("stand_in")))
    _no_paper(bench, summary, scale)


def blow_ups_text(summary: dict, config: str = "SGD(0.1)", threshold: float = 1e3) -> list[str]:
    """Per scale, which seeds of ``config`` have a test MSE above ``threshold``, from when, how large.

    Returns:
        One line per tag: ``"[tag] Boston SGD(0.1) seeds with test MSE > 1e3: seed 3 from epoch 8 (max …,
        last …)"`` (``none`` when no seed does).
    """
    limit = f"{threshold:.0e}".replace("e+0", "e").replace("e+", "e")       # 1e3, not 1e+03
    lines = []
    for tag, info in summary.items():
        b = ro.blow_ups(info["df"], config, "test_loss", threshold).dropna(subset=["first_epoch"])
        lines.append(f"[{tag}] Boston {config} seeds with test MSE > {limit}: " + (
            "; ".join(f"seed {r.seed} from epoch {r.first_epoch:g} (max {r.max:.1e}, last {r.last:.1e})"
                      for r in b.itertuples()) or "none"))
    return lines


def timing_summary(bench: str, summary: dict, ref_frame: pd.DataFrame | None = None) -> pd.DataFrame:
    """Epochs completed, seconds per epoch and clock / wall share per config, ours and the reference's.

    Args:
        bench: Benchmark name.
        summary: The benchmark summary (tag -> info with ``df`` and ``records``).
        ref_frame: The reference's long table for ``bench`` (its rows are added when given).

    Returns:
        One row per (scale, config): ``benchmark, scale, config, epochs, s / epoch, clock / wall``
        (``clock / wall`` is NaN for the reference).
    """
    rows = []
    for tag, info in summary.items():
        for lab in ro.config_order(info["df"]["config"]):
            recs = [r for r in info["records"] if record_label(r["config"]) == lab]
            sm = [r["summary"] for r in recs]
            wall = [r["wall_clock_s"] for r in recs]
            rows.append({"benchmark": bench, "scale": tag, "config": lab,
                         "epochs": np.mean([m["epochs"] for m in sm]),
                         "s / epoch": np.mean([m["train_time_s"] / max(m["epochs"], 1e-9) for m in sm]),
                         "clock / wall": np.mean([m["train_time_s"] / w for m, w in zip(sm, wall)])})
    if ref_frame is not None:
        by = ref_frame.groupby("config")
        for lab, v in (by["time"].max() / by["epoch"].max()).items():
            rows.append({"benchmark": bench, "scale": "reference", "config": lab,
                         "epochs": by.get_group(lab).groupby("seed")["epoch"].max().mean(),
                         "s / epoch": v, "clock / wall": np.nan})
    return pd.DataFrame(rows)


def equal_epochs(bench: str, summary: dict, tag: str) -> str:
    """The equal-epoch comparison line: test accuracy after epoch 1 and at the end of the SGN budget.

    The end epoch E is the largest epoch any SGN config reached (without SGN: the smallest last epoch).

    Returns:
        ``"[tag] bench test accuracy (%) after epoch 1 / epoch E: SGD(0.1) 50/70, ..."``, or a
        "no records" line when ``summary`` has nothing at ``tag``.
    """
    s = summary.get(tag)
    if not s:
        return f"{bench}: no {tag}-scale records"
    E = max([e.index.max() for lab, e in s["epochs"].items() if lab.startswith("SGN") and len(e)] or
            [min(e.index.max() for e in s["epochs"].values() if len(e))])
    parts = []
    for lab in ro.config_order(s["epochs"]):
        e = s["epochs"][lab]
        parts.append(f"{lab} {100 * e.get(1.0, np.nan):.0f}/{100 * e.get(float(E), np.nan):.0f}")
    return f"[{tag}] {bench} test accuracy (%) after epoch 1 / epoch {E:g}: " + ", ".join(parts)


def read_out_times(df: pd.DataFrame, bench: str, tag: str) -> list[float]:
    """The read-out times T of a classification benchmark.

    Returns:
        The reference's T at paper scale (:data:`PAPER_READ_OUT`); otherwise half and all of the SGN(3)
        run's measured clock (:func:`curvlab.repro.sgn_readouts.ci_read_out_times`).
    """
    return PAPER_READ_OUT[bench] if tag == "paper" else ro.ci_read_out_times(df)


def reference_sgd_epoch_time(ref_frame: pd.DataFrame) -> float:
    """Mean time per SGD epoch in the reference's logs (all learning rates and seeds; 'longer' runs excluded).

    Returns:
        Seconds per epoch: the mean over (config, seed) of the last time over the last epoch.
    """
    ends = ref_frame[(ref_frame["method"] == "SGD") & ~ref_frame["config"].str.contains("longer")]
    by = ends.groupby(["config", "seed"])
    return float(by["time"].max().div(by["epoch"].max()).mean())


def time_table(bench: str, summary: dict, ref_frame: pd.DataFrame | None = None) -> pd.DataFrame | None:
    """Test accuracy after T seconds, by the reference's rule and by the measured clock, per scale.

    At paper scale with the reference's logs given, T is also scaled by the ratio of SGD epoch times
    (ours / the reference's) and the rule read there (columns ``T x SGD-epoch ratio``, ``rule at scaled T``).

    Returns:
        The concatenated :func:`curvlab.repro.sgn_readouts.after_T_table` rows with the accuracies in
        percent (rounded to 0.1), or None when ``summary`` is empty.
    """
    frames = []
    for tag, info in summary.items():
        times = read_out_times(info["df"], bench, tag)
        t = ro.after_T_table(info["df"], bench, times, tag)
        if ref_frame is not None and tag == "paper":
            r = ro.sgd_epoch_time(info["df"]) / reference_sgd_epoch_time(ref_frame)
            scaled = ro.after_T_table(info["df"], bench, [T * r for T in times], tag)
            t["T x SGD-epoch ratio"] = scaled["T (s)"].round(2).values
            t["rule at scaled T"] = scaled["reference rule"].values
        frames.append(t)
    if not frames:
        return None
    table = pd.concat(frames, ignore_index=True)
    for col in ("reference rule", "measured clock", "rule at scaled T"):
        if col in table:
            table[col] = (100 * table[col]).round(1)
    return table


def traces(summary: dict, tag: str, benchmarks=ALL) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The per-step ρ and α of each SGN run of the first seed, and one summary line per run.

    Args:
        summary: The notebook's SUMMARY (benchmark -> tag -> info with ``records``).
        tag: Scale tag.
        benchmarks: Benchmarks to scan, in order.

    Returns:
        ``(steps, stats)``: ``steps`` has ``benchmark, config, step, rho, alpha``; ``stats`` has
        ``benchmark, config, steps, max rho, final rho, floor reached, mean alpha, backtracked (%)``.
    """
    rows, lines = [], []
    for bench in benchmarks:
        info = summary.get(bench, {}).get(tag)
        if not info:
            continue
        first = min(seeds_of(info["records"]))
        for r in info["records"]:
            c, m = r["config"], r["metrics"]
            if c["method"] != "SGN" or c["seed"] != first:
                continue
            for st, rho, a in zip(m["sgn_step"], m["sgn_rho"], m["sgn_alpha"]):
                rows.append({"benchmark": bench, "config": f"SGN({c['cg']})", "step": st, "rho": rho,
                             "alpha": a})
            smry = r["summary"]
            lines.append({"benchmark": bench, "config": f"SGN({c['cg']})", "steps": smry["steps"],
                          "max rho": smry["max_rho"], "final rho": smry["final_rho"],
                          "floor reached": bool(smry["final_rho"] <= RHO_FLOOR),
                          "mean alpha": smry["mean_alpha"], "backtracked (%)": 100 * smry["backtracked"]})
    return pd.DataFrame(rows), pd.DataFrame(lines)


def trace_text(summary: dict, tag: str) -> str:
    """The ρ / α row of the reference-vs-ours table.

    Returns:
        ``"floor in n/N runs; mean α (classif.) a–b; Boston SGN(10) backtracked p %"`` (parts without
        data left out), ``"not run"`` for an empty paper scale, ``"—"`` for another empty scale.
    """
    _, st = traces(summary, tag)
    if st.empty:
        return "not run" if tag == "paper" else "—"
    cls = st[st["benchmark"].isin(CLASSIFICATION)]
    reg = st[st["benchmark"].isin(REGRESSION)]
    parts = [f"floor in {int(st['floor reached'].sum())}/{len(st)} runs"]
    if len(cls):
        parts.append(f"mean α (classif.) {cls['mean alpha'].min():.2f}–{cls['mean alpha'].max():.2f}")
    b10 = reg[(reg["benchmark"] == "boston") & (reg["config"] == "SGN(10)")]
    if len(b10):
        parts.append(f"Boston SGN(10) backtracked {b10['backtracked (%)'].iloc[0]:.0f} %")
    return "; ".join(parts)


def backtracking_text(summary: dict, tag: str, bench: str = "mnist") -> str:
    """Share of backtracked steps per SGN(k), ours (first seed) and the reference's (seed mean, full logs).

    Returns:
        ``"[tag] bench: steps with a backtrack: SGN(1) 0.12 % (reference 0.08 %); ..."``.
    """
    _, st = traces(summary, tag)
    ref = sgn_reference.run_table(bench).groupby("config")["backtracked_share"].mean()
    rows = st[st["benchmark"] == bench].iterrows() if len(st) else []
    parts = [f"{r['config']} {r['backtracked (%)']:.2f} % "
             f"(reference {100 * ref.get(r['config'], np.nan):.2f} %)" for _, r in rows]
    return f"[{tag}] {bench}: steps with a backtrack: " + ("; ".join(parts) or "no records")
