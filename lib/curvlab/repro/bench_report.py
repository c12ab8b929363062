"""The benchmark blocks of ``papers.md``, rendered from the records ``make bench`` writes.

Each benchmark script under ``benchmarks/`` writes ``results/bench/<name>.json``. A section of
``papers.md`` may hold a block between two markers::

    <!-- bench:sgn -->
    ...
    <!-- /bench:sgn -->

which :func:`render_bench` fills with a Markdown table of that record's cost ratios, the machine
and torch version that produced them, and whether each target of the record is met. No cost number
in ``papers.md`` is typed by hand; ``python -m curvlab.repro.papers`` renders these blocks with the
verdict blocks. A record in a format this module does not know renders as a line saying so.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from ..data import REPO_ROOT


def bench_dir() -> Path:
    """``results/bench`` at the repository root."""
    return REPO_ROOT / "results" / "bench"


def load_bench(root: Path | None = None) -> dict[str, dict]:
    """Every ``results/bench/<name>.json``, by name."""
    root = bench_dir() if root is None else root
    return {p.stem: json.loads(p.read_text()) for p in sorted(root.glob("*.json"))}


def _x(value) -> str:
    return "—" if value is None else f"{value:.2f}×"


def _met(flag) -> str:
    return {True: "met", False: "**not met**", None: "n/a"}[flag]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(r) + " |" for r in rows]


def _ratio(entry: dict, method: str, key: str = "time_ratio"):
    """``entry[method][key]`` or None."""
    return entry.get(method, {}).get(key)


def _row_ratio(rows: dict, key: str, field: str) -> str:
    """A row's ratio formatted, or a dash when the benchmark did not time that row."""
    return _x(rows[key][field]) if key in rows else "—"


def _isaac(rec: dict) -> list[str]:
    """Table 2's cost: ζ*, ζ, K-FAC per model and thread count, as ratios to a gradient step."""
    target = rec["target"]
    rows, verdicts = [], []
    for threads, run in sorted(rec["runs"].items(), key=lambda kv: int(kv[0])):
        for model, r in run["results"].items():
            cells = [_ratio(r, "isaac"), _ratio(r, "isaac", "ratio_to_pypi"), _ratio(r, "zeta"),
                     _ratio(r, "kfac"), _ratio(r, "isaac", "memory_ratio")]
            rows.append([model, threads, *map(_x, cells)])
        got = run["results"].get(target["model"], {}).get("isaac", {})
        verdicts.append(f"{threads} thread(s): {_x(got.get('time_ratio'))} time, "
                        f"{_x(got.get('ratio_to_pypi'))} PyPI, {_x(got.get('memory_ratio'))} memory "
                        f"→ {_met(run.get('target_met'))}")
    lines = _table(["model", "threads", "ζ* time", "ζ* / PyPI isaac", "ζ time", "K-FAC time", "ζ* memory"],
                   rows)
    lines.append("")
    lines.append(f"Target ({target['model']}): ζ* ≤ {target['time']}× a gradient step, ≤ {target['pypi']}× "
                 f"the PyPI `isaac` step in the same run, memory ≤ {target['memory']}×: "
                 + "; ".join(verdicts) + ".")
    return lines


def _sgn(rec: dict) -> list[str]:
    """GGN-vector products in gradients, SGN(k) iterations in SGD steps, per model."""
    rows, notes = [], []
    for model, r in rec["results"].items():
        grad = [_row_ratio(r["rows"], k, "ratio_to_gradient")
                for k in ("ggn reuse [traced]", "ggn standalone", "curvlinops")]
        sgd = [_row_ratio(r["rows"], f"sgn({k}) [traced]", "ratio_to_sgd_step") for k in (1, 3, 10)]
        rows.append([model, *grad, *sgd])
        fit = r.get("sgn_fit [traced]")
        fit_text = f"fit {fit['fixed']:.2f} + {fit['per_cg_iteration']:.2f}·k SGD steps; " if fit else ""
        notes.append(f"{model}: {fit_text}" + ", ".join(f"{t} {_met(m)}" for t, m in r["targets"].items()))
    lines = _table(["model", "GGN product, reused (gradients)", "standalone", "curvlinops",
                    "SGN(1) (SGD steps)", "SGN(3)", "SGN(10)"], rows)
    lines += [""] + [f"- {n}" for n in notes]
    return lines


def _grouped_newton(rec: dict) -> list[str]:
    """One summaries call per route, in gradient-step equivalents, per model (and the full step)."""
    rows, notes = [], []
    for model, r in rec["results"].items():
        routes = r.get("routes", {})
        for route, e in routes.items():
            rows.append([model, route, _x(e.get("ratio_to_gradient")), _x(e.get("ratio_to_baseline"))])
        for target, met in r.get("targets", {}).items():
            notes.append(f"{model}: {target} {_met(met)}")
    lines = _table(["model", "route", "gradients", "vs the nested-reverse baseline"], rows)
    lines += [""] + [f"- {n}" for n in notes]
    return lines


def _lcnn(rec: dict) -> list[str]:
    """Each training variant's step and the curvature measurement, as ratios to a standard step."""
    res = rec["results"]
    rows = []
    for row, e in res["rows"].items():
        hvps = e.get("hvp_equivalents")
        rows.append([row, _x(e["ratio_to_standard"]), "—" if hvps is None else f"{hvps:.2f}",
                     _x(e.get("memory_ratio"))])
    lines = [f"Model: {res['model']}.", ""]
    lines += _table(["row", "time (standard steps)", "time (input HVPs)", "peak memory (standard step's)"],
                    rows)
    m = res["measurement"]
    lines += ["", f"- measure_curvature (K = {m['power_iterations']}, batch {m['batch']}): "
              f"{m['hvp_equivalents']:.2f} input-HVP equivalents per batch"]
    lines += [f"- target: {t} {_met(met)}" for t, met in res["targets"].items()]
    lines += [f"- expected: {t} {'yes' if inside else '**no**'}"
              for t, inside in res.get("expected", {}).items()]
    return lines


RENDERERS: dict[str, Callable[[dict], list[str]]] = {"isaac": _isaac, "sgn": _sgn,
                                                     "grouped_newton": _grouped_newton, "lcnn": _lcnn}


def render_bench(name: str, rec: dict) -> str:
    """The Markdown body of the ``bench:<name>`` block for the record ``rec``."""
    head = (f"`results/bench/{name}.json` (`make bench`): {rec.get('cpu', 'CPU')}, "
            f"torch {rec.get('torch', '?')}"
            + (f", {rec['threads']} thread(s)" if "threads" in rec and "runs" not in rec else "")
            + (", quick run" if rec.get("quick") else "") + ".")
    renderer = RENDERERS.get(name)
    try:
        body = renderer(rec) if renderer else [f"(no renderer for the benchmark {name!r})"]
    except (KeyError, TypeError) as err:         # an older record layout: say so, never guess numbers
        body = [f"(the record's layout is not the current one ({err!r}); re-run `make bench`)"]
    return "\n".join([head, ""] + body)
