"""The SGN reproduction from records to results: summaries, claims, tables and findings.

:func:`everything` runs (or reads back) every benchmark's records at a scale, summarises them without
drawing (:func:`curvlab.repro.sgn_report.summarise`) and computes what the notebook reports: the
verdicts (:func:`claims`), the reference's README table recomputed from its logs
(:func:`curvlab.repro.sgn_reference.readme_check`), the reference-vs-ours table
(:func:`reference_comparison`) and the findings (:func:`findings`, :func:`timed_findings`,
:func:`trace_findings`): sentences built from the records, so that no result number is typed by hand.
Numbers quoted from the reference (its README, its logs) are read from ``reference/sgn``.

A *summary* maps benchmark -> scale tag -> info dict (see :mod:`curvlab.repro.sgn_report`).
"""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from curvlab import plotting
from curvlab.verdicts import Verdict, compare, spread

from . import sgn as rs
from . import sgn_readouts as ro
from . import sgn_reference
from . import sgn_report as rep
from . import sgn_verdicts as sv

ALL = rep.ALL
NAMES = {"boston": "Boston", "sine_10": "Sine f = 10", "sine_100": "Sine f = 100", "mnist": "MNIST",
         "fashion": "Fashion-MNIST", "cifar10": "CIFAR-10"}


def as_list(value) -> list:
    """A list parameter, also when papermill passes it as text.

    >>> as_list('["boston", "mnist"]'), as_list("boston, mnist"), as_list(("sine_10",))
    (['boston', 'mnist'], ['boston', 'mnist'], ['sine_10'])
    """
    if isinstance(value, str):
        value = value.strip()
        if value.startswith("["):
            return json.loads(value)
        return [v.strip() for v in value.split(",") if v.strip()]
    return list(value)


def selected(benchmarks) -> list[str]:
    """The benchmarks to run: ``"all"`` or a list (or its text).

    Raises:
        ValueError: an unknown benchmark name.
    """
    out = ALL if benchmarks == "all" else as_list(benchmarks)
    unknown = set(out) - set(ALL)
    if unknown:
        raise ValueError(f"unknown benchmarks: {sorted(unknown)}")
    return list(out)


def seed_list(scale: str, seed: int = 0, seeds=None) -> list[int]:
    """The seeds of the runs: ``seeds`` when given, else the scale's (ci: offset by ``seed``).

    >>> seed_list("ci"), seed_list("ci", 10), seed_list("paper"), seed_list("ci", seeds="[4]")
    ([1, 2, 3], [11, 12, 13], [1, 2, 3, 4, 5], [4])
    """
    if seeds not in (None, "None"):
        return [int(s) for s in as_list(seeds)]
    base = rs.SETTINGS[scale]["seeds"]
    return [seed + i for i in base] if scale == "ci" else list(base)


def scale_records(bench: str, scale: str, seeds, benchmarks=ALL) -> tuple[list[dict], list[dict]]:
    """Records at ``scale`` (run now if ``bench`` is in ``benchmarks``, else read back) and at paper scale.

    Returns:
        ``(here, paper)``; ``paper`` is ``here`` at paper scale, else the stored paper-scale records.
    """
    here = rs.run_records(bench, scale, seeds) if bench in benchmarks else rs.load(bench, scale)
    return here, (here if scale == "paper" else rs.load(bench, "paper"))


def claims(summary: dict, tag: str) -> list[Verdict]:
    """Every claim's verdict at one scale tag, in benchmark order (:mod:`curvlab.repro.sgn_verdicts`)."""
    out = []
    for bench in ALL:
        info = summary.get(bench, {}).get(tag)
        if info and bench in rep.REGRESSION:
            out += sv.regression_claims(info["df"], bench, tag, rs.SETTINGS[tag][bench]["sgd"])
        elif info:
            times = rep.read_out_times(info["df"], bench, tag)
            out += sv.classification_claims(info["df"], bench, tag, times)
    return out


def everything(scale: str, seeds, benchmarks=ALL) -> dict:
    """Every benchmark at ``scale`` (and the stored paper-scale records from ci), from records to findings.

    Returns:
        ``records`` (bench -> (here, paper)), ``summary``, ``claims`` (the scorecard's list: this scale,
        then paper scale from ci), ``readme_check``, ``comparison`` (:func:`reference_comparison`),
        ``findings``, ``timed_findings`` and ``trace_findings``.
    """
    records = {b: scale_records(b, scale, seeds, benchmarks) for b in ALL}
    summary = {b: rep.summarise(b, *records[b], scale) for b in ALL}
    verdicts = claims(summary, scale) + (claims(summary, "paper") if scale == "ci" else [])
    return {"records": records, "summary": summary, "claims": verdicts,
            "readme_check": sgn_reference.readme_check(),
            "comparison": reference_comparison(summary, verdicts, scale, rs.cifar_dataset(scale)),
            "findings": findings(summary, verdicts), "timed_findings": timed_findings(summary, verdicts),
            "trace_findings": trace_findings(summary)}


# ---------------------------------------------------------------- the reference-vs-ours table (§12)

CLAIM_OF = {"boston_sgn_wins": ("boston", "best SGN below"), "boston_sgd1_diverges": ("boston", "SGD(1) div"),
            "sine_10_sgn_wins": ("sine_10", "best SGN below"), "sine_10_floor": ("sine_10", "SGN(10) below"),
            "sine_100_sgn_wins": ("sine_100", "best SGN below"), "mnist_epoch1": ("mnist", "after epoch 1")}


def pct(v) -> str:
    """``"93.4 %"`` (one decimal), ``"—"`` for a missing value.

    >>> pct(0.9337), pct(float("nan")), pct(None)
    ('93.4 %', '—', '—')
    """
    return "—" if v is None or not np.isfinite(v) else f"{100 * v:.1f} %"


def fmt_sig(v) -> str:
    """Two significant digits, ``"—"`` for a missing value.

    >>> fmt_sig(0.005114), fmt_sig(float("inf"))
    ('0.0051', '—')
    """
    return "—" if v is None or not np.isfinite(v) else f"{plotting.round_sig(v, 2):g}"


def verdict_of(key: str | None, verdicts: list[Verdict]) -> str:
    """The status per scale of the claim behind a table row (``"reproduced (ci); reproduced (paper)"``).

    Rows without a single claim (time read-outs: one claim per T) say ``"see §11"``; no key: ``"—"``.
    """
    if not key:
        return "—"
    if key not in CLAIM_OF:
        return "see §11"
    bench, text = CLAIM_OF[key]
    return "; ".join(v.status + v.claim[len(bench):v.claim.index(":")] for v in verdicts
                     if v.claim.startswith(bench + " (") and text in v.claim) or "—"


def cell(summary: dict, bench: str, tag: str, fn) -> str:
    """One table cell: ``fn(info, tag)`` on the benchmark's info at ``tag`` (paper scale: with its seeds).

    A tag without records gives ``"not run"`` (paper) or ``"—"``; a value ``fn`` cannot compute, ``"—"``.
    """
    info = summary.get(bench, {}).get(tag)
    if not info:
        return "not run" if tag == "paper" else "—"
    try:
        v = fn(info, tag)
    except (KeyError, IndexError, ValueError, TypeError):
        return "—"
    return v + (f" [seeds {rep.seeds_of(info['records'])}]" if tag == "paper" else "")


def best_pair(info: dict, tag: str) -> str:
    """``"0.0051 SGN(20) / 0.014 SGD(0.01)"``: the best final test MSE of each method."""
    return f"{fmt_sig(info['sgn'][1])} {info['sgn'][0]} / {fmt_sig(info['sgd'][1])} {info['sgd'][0]}"


def _read(info: dict, T: float, labs: list[str]) -> str:
    read = ro.read_reference_rule(info["df"], T, "test_accuracy")
    return " / ".join(f"{pct(read[lab][0]) if lab in read else '—'} {lab}" for lab in labs)


def after(bench: str, which: int, labs: list[str]):
    """Cell function: test accuracy of ``labs`` after the ``which``-th read-out T (the reference's rule)."""
    def fn(info, tag):
        T = rep.read_out_times(info["df"], bench, tag)[which]
        return _read(info, T, labs) + f" (T = {T:g} s)"
    return fn


def after_scaled(bench: str, which: int, labs: list[str]):
    """Cell function: as :func:`after` at paper scale, T scaled by our / the reference's SGD epoch time."""
    def fn(info, tag):
        if tag != "paper":
            return "—"
        ratio = ro.sgd_epoch_time(info["df"]) / rep.reference_sgd_epoch_time(sgn_reference.frame(bench))
        T = rep.PAPER_READ_OUT[bench][which] * ratio
        return _read(info, T, labs) + f" (T = {T:.3g} s)"
    return fn


def at_epoch(lab: str, epoch: float):
    """Cell function: the seed-mean test accuracy of ``lab`` after ``epoch`` (``"—"`` if not reached)."""
    def fn(info, tag):
        return pct(float(info["epochs"][lab].get(float(epoch), np.nan))) if lab in info["epochs"] else "—"
    return fn


def reference_comparison(summary: dict, verdicts: list[Verdict], scale: str,
                         cifar_data: str = "fashion_mnist_32") -> pd.DataFrame:
    """Reference number | ours at paper scale (with seeds) | ours at ci scale | verdict, one row per item.

    The reference column quotes the reference (its README and figures); the others are computed.

    Returns:
        Columns ``item, reference, ours, paper scale, ours, ci scale, verdict``.
    """
    stand_in = "" if cifar_data == "cifar10" else " (ci: stand-in)"
    both = lambda lab, e1, e2: lambda i, t: f"{at_epoch(lab, e1)(i, t)} / {at_epoch(lab, e2)(i, t)}"  # noqa: E731
    items = [
        ("Boston: best test MSE, SGN / SGD", "0.0101 SGN(20) / 0.0267 SGD(0.01)", "boston", best_pair,
         "boston_sgn_wins"),
        ("Boston: SGD(1) diverges", "yes", "boston", lambda i, t: str("SGD(1)" in i["diverged"]),
         "boston_sgd1_diverges"),
        ("sine f=10: best test MSE, SGN / SGD", "1.04e-4 / 0.26 SGD(0.1)", "sine_10", best_pair,
         "sine_10_sgn_wins"),
        ("sine f=10: SGN(10) test MSE at the end", "1.3e-4", "sine_10",
         lambda i, t: fmt_sig(i["final"]["SGN(10)"]), "sine_10_floor"),
        ("sine f=100: best test MSE, SGN / SGD", "0.365 SGN(30) / 0.50", "sine_100", best_pair,
         "sine_100_sgn_wins"),
        ("MNIST @ 25 s: SGN(3) / SGD(1) / SGD(0.1)", "92.9 % / 89.8 % / 71.9 %", "mnist",
         after("mnist", 0, ["SGN(3)", "SGD(1)", "SGD(0.1)"]), "mnist_T0"),
        ("MNIST @ 100 s: SGN(3) / SGD(1)", "94.0 % / 93.0 %", "mnist",
         after("mnist", 1, ["SGN(3)", "SGD(1)"]), "mnist_T1"),
        ("MNIST @ 25 s scaled to the reference's SGD epochs: SGN(3) / SGD(1) / SGD(0.1)",
         "92.9 % / 89.8 % / 71.9 %", "mnist", after_scaled("mnist", 0, ["SGN(3)", "SGD(1)", "SGD(0.1)"]),
         "mnist_T0_scaled"),
        ("MNIST @ 100 s scaled: SGN(3) / SGD(1)", "94.0 % / 93.0 %", "mnist",
         after_scaled("mnist", 1, ["SGN(3)", "SGD(1)"]), "mnist_T1_scaled"),
        ("MNIST: SGN(3) after epoch 1", "86.6 %", "mnist", at_epoch("SGN(3)", 1), "mnist_epoch1"),
        ("MNIST: SGN(3) after 100 epochs", "94.1 %", "mnist", at_epoch("SGN(3)", 100), None),
        ("MNIST: SGD(1) after 100 / 600 epochs", "92.5 % / 93.9 %", "mnist", both("SGD(1)", 100, 600), None),
        ("MNIST: SGN(10) after epoch 1 / 100", "90.3 % / 93.0 %", "mnist", both("SGN(10)", 1, 100), None),
        ("Fashion @ 50 s: SGD(0.1) / SGN(5) / SGN(3)", "86.7 % / 85.6 % / 85.2 %", "fashion",
         after("fashion", 0, ["SGD(0.1)", "SGN(5)", "SGN(3)"]), "fashion_T0"),
        ("Fashion @ 150 s: SGD(0.1) / SGN(5) / SGN(3)", "88.5 % / 87.8 % / 87.2 %", "fashion",
         after("fashion", 1, ["SGD(0.1)", "SGN(5)", "SGN(3)"]), "fashion_T1"),
        ("Fashion: SGN(10) after 10 epochs", "88.8 %", "fashion", at_epoch("SGN(10)", 10), None),
        (f"CIFAR-10 @ 650 s: SGN(10) / SGN(3) / SGD(0.1){stand_in}", "64.7 % / 49.3 % / 63.1 %", "cifar10",
         after("cifar10", 0, ["SGN(10)", "SGN(3)", "SGD(0.1)"]), "cifar10_T0"),
        ("CIFAR-10: SGN(10) after 10 epochs", "70.9 %", "cifar10", at_epoch("SGN(10)", 10), None),
    ]
    rows = [{"item": item, "reference": ref, "ours, paper scale": cell(summary, bench, "paper", fn),
             "ours, ci scale": cell(summary, bench, "ci", fn) if scale == "ci" else "—",
             "verdict": verdict_of(key, verdicts)} for item, ref, bench, fn, key in items]
    rows.append({"item": "ρ → ρ_min, α ≈ 1 on classification, line search active on regression",
                 "reference": "floor 1e-6; mean α 0.99–1.0; Boston SGN(10) backtracked 43 %",
                 "ours, paper scale": rep.trace_text(summary, "paper"),
                 "ours, ci scale": rep.trace_text(summary, "ci") if scale == "ci" else "—",
                 "verdict": "see section 10"})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- findings: sentences from the records

def num(v: float) -> str:
    """A result number for prose: two significant digits, exponent form below 1e-3.

    >>> num(0.005114), num(9.9e-05), num(0.4912), num(660000.0), num(float("inf"))
    ('0.0051', '9.9e-05', '0.49', '6.6e+05', 'inf')
    """
    if not np.isfinite(v):
        return "inf" if v > 0 else "—"
    return f"{v:.1e}" if 0 < abs(v) < 1e-3 or abs(v) >= 1e4 else f"{plotting.round_sig(v, 2):g}"


def factor(x: float) -> str:
    """A ratio for prose: three significant digits below 10 (``"1.03"``, ``"2.71"``), else two (``"4400"``).

    >>> factor(1.027), factor(2.712), factor(38.2), factor(4414.0)
    ('1.03', '2.71', '38', '4400')
    """
    if abs(x) < 10:
        return f"{x:.3g}"
    return f"{x:.2g}" if abs(x) < 100 else f"{plotting.round_sig(x, 2):.0f}"


def seeds_text(records: list[dict]) -> str:
    """``"seeds 1–5"`` for a run of consecutive seeds, ``"seed 1"``, or ``"seeds 1, 3"``.

    >>> seeds_text([{"config": {"seed": s}} for s in (3, 1, 2)]), seeds_text([{"config": {"seed": 4}}])
    ('seeds 1–3', 'seed 4')
    """
    s = rep.seeds_of(records)
    if len(s) == 1:
        return f"seed {s[0]}"
    if s == list(range(s[0], s[-1] + 1)):
        return f"seeds {s[0]}–{s[-1]}"
    return "seeds " + ", ".join(map(str, s))


def _budget(bench: str, tag: str, method: str = "sgn") -> str:
    b = rs.SETTINGS[tag][bench][f"{method}_budget"]
    return f"after {b['seconds']:g} s" if "seconds" in b else f"after {b['epochs']:g} epochs"


def evidence(v: Verdict) -> str:
    """A verdict's evidence without its trailing legend ``(seed mean [min–max])``."""
    return v.evidence.replace(" (seed mean [min–max])", "")


def display_name(bench: str, info: dict) -> str:
    """The benchmark's name in prose; a stand-in says so (``CIFAR-10 stand-in (fashion_mnist_32)``)."""
    return NAMES[bench] + (" stand-in (fashion_mnist_32)" if info.get("stand_in") else "")


def _verdict(verdicts: list[Verdict], start: str, contains: str = "") -> Verdict | None:
    return next((v for v in verdicts if v.claim.startswith(start) and contains in v.claim), None)


def _k(lab: str) -> float:
    return float(lab[4:].split(")")[0])


def _mean_epochs(records: list[dict]) -> dict:
    per: dict = {}
    for r in records:
        per.setdefault(rep.record_label(r["config"]), []).append(r["summary"]["epochs"])
    return {k: float(np.mean(v)) for k, v in per.items()}


def epoch_ratios(info: dict, bench: str) -> dict:
    """Epochs completed here over the reference's, per config, for the configs neither side diverged.

    Returns:
        ``{"sgd": mean ratio over the SGD rates, "sgn10": (ours, reference, ratio) for SGN(10) or None}``.
    """
    ours = _mean_epochs(info["records"])
    ref = sgn_reference.run_table(bench).groupby("config")["epochs"].mean()
    ref_div = set(sgn_reference.frame(bench).query("status == 'diverged'")["config"])
    ok = [lab for lab in ours if lab.startswith("SGD") and lab in ref.index
          and lab not in info["diverged"] and lab not in ref_div]
    sgn10 = (ours["SGN(10)"], float(ref["SGN(10)"]), ours["SGN(10)"] / float(ref["SGN(10)"])) \
        if "SGN(10)" in ours and "SGN(10)" in ref.index else None
    return {"sgd": float(np.mean([ours[lab] / ref[lab] for lab in ok])) if ok else math.nan, "sgn10": sgn10}


def _per_config(final: pd.Series, method: str) -> str:
    labs = [lab for lab in ro.config_order(final.index) if lab.startswith(method) and "longer" not in lab]
    return ", ".join(f"{lab[4:-1]}: {num(final[lab]) if np.isfinite(final[lab]) else 'diverged'}"
                     for lab in labs)


def _runner_up(df: pd.DataFrame, best: str) -> str:
    """The best SGN(k) against the next best k: within the seed spread or not (per-seed final MSE)."""
    fin = sv.final_frame(df, "test_loss")
    per = {lab: g["test_loss"].tolist() for lab, g in fin.groupby("config") if lab.startswith("SGN")}
    if len(per) < 2 or best not in per:
        return ""
    second = min((lab for lab in per if lab != best), key=lambda lab: np.mean(per[lab]))
    status = compare(per[best], per[second], higher_is_better=False)
    s1, s2 = spread(per[best]), spread(per[second])
    where = "outside" if status == "a" else "within"
    return (f"; the best k is {best[4:-1]}, the next best {second} ({num(s2.mean)}) is {where} the spread "
            f"over seeds ({num(s1.lo)}–{num(s1.hi)} against {num(s2.lo)}–{num(s2.hi)})")


def regression_findings(bench: str, bench_summary: dict, verdicts: list[Verdict]) -> list[str]:
    """One sentence per scale tag on a regression benchmark.

    The best SGN against the best SGD (with its verdict), the final test MSE per k and per learning
    rate, the best k against the next; at paper scale (seconds budgets) also the reference's logs
    and how many more epochs this machine completed in the same seconds.
    """
    out = []
    for tag, info in bench_summary.items():
        (sl, sval), (gl, gval) = info["sgn"], info["sgd"]
        win = _verdict(verdicts, f"{bench} ({tag}): best SGN below")
        div = _verdict(verdicts, f"{bench} ({tag}): SGD(1) diverges")
        text = (f"{NAMES[bench]} ({tag} scale, {seeds_text(info['records'])}; final test MSE "
                f"{_budget(bench, tag)}, seed means): best SGN {sl} {num(sval)}, best SGD {gl} {num(gval)}, "
                f"a factor {factor(gval / sval)}"
                + (f" ({win.status})" if win else "") + f". SGN by k: {_per_config(info['final'], 'SGN')}; "
                f"SGD by learning rate: {_per_config(info['final'], 'SGD')}"
                + (f"; {div.evidence}" if div else "") + _runner_up(info["df"], sl) + ".")
        if "seconds" in rs.SETTINGS[tag][bench]["sgn_budget"]:
            ref = rep.final_means(sgn_reference.frame(bench), "test_loss")
            (rsl, rsv), (rgl, rgv) = rep.best_of(ref, "SGN", True), rep.best_of(ref, "SGD", True)
            er = epoch_ratios(info, bench)
            text += (f" The reference's logs end at best SGN {rsl} {num(rsv)} and best SGD {rgl} {num(rgv)} "
                     f"(a factor {factor(rgv / rsv)}); in the same seconds this machine completed "
                     f"{er['sgd']:.0f}× the reference's SGD epochs (mean over the rates neither side "
                     "diverged)")
            if er["sgn10"]:
                o, r, x = er["sgn10"]
                text += f" and {x:.0f}× its SGN(10) epochs ({o:.0f} against {r:.0f})"
            text += "."
        out.append(text)
    return out


def _acc_at(info: dict, lab: str, epochs) -> str:
    e = info["epochs"].get(lab)
    if e is None:
        return ""
    got = [(E, e.get(float(E), np.nan)) for E in epochs]
    got = [(E, v) for E, v in got if np.isfinite(v)]
    if not got:
        return ""
    return (f"{lab} {' / '.join(f'{100 * v:.1f}' for _, v in got)} % after "
            f"{'epoch' if len(got) == 1 else 'epochs'} {' / '.join(f'{E:g}' for E, _ in got)}")


def _equal_epoch(info: dict) -> tuple[float, str, float, str, float] | None:
    """At the end of the SGN budget (the last epoch any SGN config reached): best SGN, best SGD there."""
    ends = [e.index.max() for lab, e in info["epochs"].items() if lab.startswith("SGN") and len(e)]
    if not ends:
        return None
    E = float(max(ends))
    at = pd.Series({lab: float(e.get(E, np.nan)) for lab, e in info["epochs"].items()})
    (sl, sval), (gl, gval) = rep.best_of(at, "SGN", False), rep.best_of(at, "SGD", False)
    return (E, sl, sval, gl, gval) if sl and gl else None


def _epoch_cost(df: pd.DataFrame, lab: str) -> float:
    """Seconds per epoch of ``lab`` over seconds per SGD epoch (the same records' clocks)."""
    return float(ro.time_per_epoch(df).get(lab, np.nan) / ro.sgd_epoch_time(df))


def _first_epoch_cost(df: pd.DataFrame, lab: str) -> float:
    at1 = df[(df["config"] == lab) & (df["epoch"] == 1.0)]["time"]
    return float(at1.mean() / ro.sgd_epoch_time(df)) if len(at1) else math.nan


def _sgn_iterations(info: dict) -> str:
    recs = [r for r in info["records"] if r["config"]["method"] == "SGN" and "steps" in r["summary"]]
    if not recs:
        return ""
    steps = int(np.mean([r["summary"]["steps"] for r in recs]))
    sgn = recs[0]["config"].get("sgn", {})
    warm = min(int(sgn.get("cg_warmup_steps", 0)), steps)
    return (f" With {steps} SGN iterations per run, {warm} of them are the "
            f"{sgn.get('cg_warmup_iter', 10)}-CG warm-up.")


def classification_findings(bench: str, bench_summary: dict, verdicts: list[Verdict]) -> list[str]:
    """One sentence per scale tag on a classification benchmark, without clock read-outs of ci runs.

    The epoch-1 verdict, the best SGN against the best SGD at the end of the SGN budget; for MNIST
    the reference's checkpoints (SGN(3), SGD(1), SGN(10)'s training loss); at paper scale the
    read-outs at the reference's T (our clock, and T scaled to the reference's SGD epochs) and what
    an SGN(3) epoch costs in SGD epochs, here and in the reference's logs. (Paper-scale clocks are
    stored in the records, so these numbers do not change from run to run.)
    """
    out = []
    for tag, info in bench_summary.items():
        name, df = sv.bench_label(bench, tag), info["df"]
        head = f"{display_name(bench, info)} ({tag} scale, {seeds_text(info['records'])}): "
        parts = []
        v1 = _verdict(verdicts, f"{name} ({tag}): best SGN above every SGD after epoch 1")
        if v1:
            parts.append(f"after epoch 1, {evidence(v1)} ({v1.status})")
        eq = _equal_epoch(info)
        if eq:
            E, sl, sval, gl, gval = eq
            parts.append(f"after epoch {E:g}, the end of the SGN budget: {sl} {pct(sval)} against the best "
                         f"SGD at the same epoch, {gl} {pct(gval)}")
        if bench == "mnist":
            parts += [p for p in (_acc_at(info, "SGN(3)", (1, 10, 100)), _acc_at(info, "SGD(1)", (100, 600)))
                      if p]
            fin = sv.final_frame(df[df["config"] == "SGN(10)"], "train_loss")
            if len(fin):
                s = spread(fin["train_loss"].tolist())
                parts.append(f"SGN(10) ends at a training loss of {num(s.mean)} "
                             f"({num(s.lo)}–{num(s.hi)} over seeds)")
        text = head + "; ".join(parts) + "."
        if tag == "paper":
            text += _paper_read_outs(bench, info, verdicts)
        if bench in ("fashion", "cifar10"):
            text += _sgn_iterations(info)
        out.append(text)
    return out


def _paper_read_outs(bench: str, info: dict, verdicts: list[Verdict]) -> str:
    df, text = info["df"], ""
    for T in rep.PAPER_READ_OUT[bench]:
        v = _verdict(verdicts, f"{sv.bench_label(bench, 'paper')} (paper) @ {T:g} s measured")
        if v and v.numbers:
            n = v.numbers
            text += (f" At {T:g} s on our clock: {n['best_sgn']} {pct(n['sgn_mean'])} against "
                     f"{n['best_sgd']} {pct(n['sgd_mean'])} ({v.status}).")
    ref = sgn_reference.frame(bench)
    ratio = ro.sgd_epoch_time(df) / rep.reference_sgd_epoch_time(ref)
    labs = [lab for lab in ("SGN(3)", "SGD(1)", "SGD(0.1)") if lab in info["final"].index]
    for T in rep.PAPER_READ_OUT[bench]:
        read = ro.read_reference_rule(df, T * ratio, "test_accuracy")
        text += (f" At the reference's {T:g} s in SGD-epoch equivalents (T = {T * ratio:.3g} s here), "
                 "by its rule: " + ", ".join(f"{lab} {pct(read[lab][0])}" for lab in labs if lab in read)
                 + ".")
    ours, theirs = _epoch_cost(df, "SGN(3)"), _epoch_cost(ref, "SGN(3)")
    if np.isfinite(ours):
        text += (f" An SGN(3) epoch costs {ours:.2g} SGD epochs on our clock ({theirs:.2g} in the "
                 f"reference's logs); our SGN(3) runs end their budget after "
                 f"{_end_clock(df, 'SGN(3)'):.3g} s.")
    return text


def _end_clock(df: pd.DataFrame, lab: str) -> float:
    return float(df[df["config"] == lab].groupby("seed")["time"].max().mean())


def findings(summary: dict, verdicts: list[Verdict]) -> list[str]:
    """The benchmarks' results as sentences, regressions then classifiers, every number from the records.

    Only numbers that do not depend on this run's clock: equal-epoch values of the ci runs and every
    paper-scale value (their clocks are stored in the records). See :func:`timed_findings` for the rest.
    """
    out = []
    for bench in ALL:
        info = summary.get(bench, {})
        if info:
            one = regression_findings if bench in rep.REGRESSION else classification_findings
            out += one(bench, info, verdicts)
    return out


def timed_findings(summary: dict, verdicts: list[Verdict]) -> list[str]:
    """The ci classification read-outs after T seconds (this run's clock): leader, values, verdict per T.

    Also what the first SGN(3) epoch cost in SGD epochs (its warm-up iterations use 10 CG products).
    """
    out = []
    for bench in rep.CLASSIFICATION:
        info = summary.get(bench, {}).get("ci")
        if not info:
            continue
        name = sv.bench_label(bench, "ci")
        parts = []
        for v in verdicts:
            if v.claim.startswith(f"{name} (ci) @ "):
                T = v.claim.split("@ ")[1].split(" s")[0]
                parts.append(f"at {T} s, {evidence(v)} ({v.status})")
        text = f"{display_name(bench, info)} (ci scale, measured clock): " + "; ".join(parts) + "."
        first = _first_epoch_cost(info["df"], "SGN(3)")
        if np.isfinite(first):
            text += f" The first SGN(3) epoch cost {first:.2g} SGD epochs."
        out.append(text)
    return out


def trace_findings(summary: dict) -> list[str]:
    """ρ and α as sentences, per scale tag: floor reached, mean α, backtracking on MNIST and Boston SGN(10).

    Ours are the first seed's runs; the reference's shares are over its full logs (mean, or min–max
    over seeds), its iteration counts the seed mean.
    """
    out = []
    for tag in ("ci", "paper"):
        _, st = rep.traces(summary, tag)
        if st.empty:
            continue
        cls = st[st["benchmark"].isin(rep.CLASSIFICATION)]
        text = (f"{tag} scale: ρ ends at the floor in {int(st['floor reached'].sum())} of {len(st)} SGN runs "
                f"(largest ρ {num(st['max rho'].max())})")
        if len(cls):
            text += f"; mean α on classification {cls['mean alpha'].min():.2f}–{cls['mean alpha'].max():.2f}"
        for bench in ("mnist", "boston"):
            b = st[st["benchmark"] == bench]
            if b.empty:
                continue
            ref = sgn_reference.run_table(bench).groupby("config")["backtracked_share"]
            if bench == "mnist":
                text += (f"; MNIST steps with a backtrack {b['backtracked (%)'].min():.2g}–"
                         f"{b['backtracked (%)'].max():.2g} % over k (the reference's "
                         f"{100 * ref.mean().reindex(b['config']).min():.2g}–"
                         f"{100 * ref.mean().reindex(b['config']).max():.2g} %)")
            b10 = b[b["config"] == "SGN(10)"]
            if bench == "boston" and len(b10):
                r = sgn_reference.run_table("boston").query("config == 'SGN(10)'")
                steps, share = int(b10["steps"].iloc[0]), float(b10["backtracked (%)"].iloc[0])
                its, share_ref = r["iterations"].mean(), 100 * r["backtracked_share"]
                text += (f"; Boston SGN(10): {steps} iterations, {share:.0f} % of them backtracked (the "
                         f"reference's runs: {its:.0f} iterations, {share_ref.min():.0f}–"
                         f"{share_ref.max():.0f} % backtracked; {steps / its:.2g}× as many iterations here)")
        out.append(text + ".")
    return out
