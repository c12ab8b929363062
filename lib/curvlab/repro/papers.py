"""Render the verdict blocks of ``papers.md`` from the scorecards the notebooks write.

Each paper's section of ``papers.md`` holds a block between two markers::

    <!-- verdicts:isaac -->
    | claim | paper | ours (paper scale) | ours (ci) | status | evidence |
    ...
    <!-- /verdicts:isaac -->

whose table is rendered from ``tables/<paper>/scorecard.csv`` (written by
:func:`curvlab.verdicts.save_scorecard`). So the status column of ``papers.md`` is computed from the
records, never typed by hand. ``python -m curvlab.repro.papers`` rewrites the blocks;
``--check`` only compares and exits 1 when ``papers.md`` disagrees with a scorecard. A block
without a scorecard is left as it is; a scorecard without a block is an error (its paper's section
needs the markers).

Blocks ``<!-- bench:<name> -->`` … ``<!-- /bench:<name> -->`` are filled the same way from
``results/bench/<name>.json`` by :func:`curvlab.repro.bench_report.render_bench` (a block whose
record is absent is left as it is).
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import pandas as pd

from ..data import REPO_ROOT
from ..plotting import output_root
from .bench_report import load_bench, render_bench

COLUMNS = (("claim", "claim"), ("paper", "paper"), ("ours_paper", "ours (paper scale)"),
           ("ours_ci", "ours (ci)"), ("status", "status"), ("evidence", "evidence"))

# Older scorecards name the same columns differently; read them as the canonical ones.
ALIASES = {"item": "claim", "reference": "paper", "ours, paper scale": "ours_paper",
           "ours, ci scale": "ours_ci", "verdict": "status"}

_BLOCK = re.compile(r"(<!-- verdicts:(?P<paper>[\w.-]+) -->\n)(?P<body>.*?)(<!-- /verdicts:(?P=paper) -->)",
                    re.DOTALL)
_BENCH = re.compile(r"(<!-- bench:(?P<name>[\w.-]+) -->\n)(?P<body>.*?)(<!-- /bench:(?P=name) -->)",
                    re.DOTALL)


def papers_md() -> Path:
    """``papers.md`` at the repository root."""
    return REPO_ROOT / "papers.md"


def _cell(value) -> str:
    text = "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)
    # a pipe or a line break would split the Markdown table's cell
    return " ".join(text.split()).replace("|", "\\|")


def render_block(table: pd.DataFrame) -> str:
    """A scorecard as the Markdown table of a verdict block (missing columns render empty).

    >>> print(render_block(pd.DataFrame({"claim": ["A beats B"], "status": ["reproduced"]})))
    | claim | paper | ours (paper scale) | ours (ci) | status | evidence |
    |---|---|---|---|---|---|
    | A beats B |  |  |  | reproduced |  |
    """
    table = table.rename(columns=ALIASES)
    lines = ["| " + " | ".join(title for _, title in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for _, row in table.iterrows():
        lines.append("| " + " | ".join(_cell(row.get(key)) for key, _ in COLUMNS) + " |")
    return "\n".join(lines)


def load_scorecards(tables: Path | None = None) -> dict[str, pd.DataFrame]:
    """Every ``tables/<paper>/scorecard.csv``, by paper name (read as text: nothing re-formatted)."""
    root = tables if tables is not None else output_root("tables")
    return {p.parent.name: pd.read_csv(p, dtype=str, keep_default_na=False)
            for p in sorted(root.glob("*/scorecard.csv"))}


def render(text: str, scorecards: dict[str, pd.DataFrame], bench: dict[str, dict] | None = None) -> str:
    """``text`` (a ``papers.md``) with each block that has a scorecard (or bench record) re-rendered.

    Raises:
        ValueError: a scorecard's paper has no marker pair in ``text``.
    """
    present = {m.group("paper") for m in _BLOCK.finditer(text)}
    missing = sorted(set(scorecards) - present)
    if missing:
        raise ValueError(f"papers.md lacks the markers <!-- verdicts:P --> ... <!-- /verdicts:P --> for "
                         f"P in {missing}; add them to the paper's section")

    def fill(match: re.Match) -> str:
        paper = match.group("paper")
        if paper not in scorecards:
            return match.group(0)
        return match.group(1) + render_block(scorecards[paper]) + "\n" + match.group(4)

    def fill_bench(match: re.Match) -> str:
        name = match.group("name")
        if name not in (bench or {}):
            return match.group(0)
        return match.group(1) + render_bench(name, bench[name]) + "\n" + match.group(4)
    return _BENCH.sub(fill_bench, _BLOCK.sub(fill, text))


def check(path: Path, scorecards: dict[str, pd.DataFrame], bench: dict[str, dict] | None = None) -> list[str]:
    """The blocks of ``path`` that differ from their scorecard or bench record (empty when all agree)."""
    text = path.read_text()
    new = render(text, scorecards, bench)
    differ = []
    for pattern, key, prefix in ((_BLOCK, "paper", "verdicts"), (_BENCH, "name", "bench")):
        old_blocks = {m.group(key): m.group(0) for m in pattern.finditer(text)}
        new_blocks = {m.group(key): m.group(0) for m in pattern.finditer(new)}
        differ += [f"{prefix}:{p}" for p in new_blocks if new_blocks[p] != old_blocks.get(p)]
    return sorted(differ)


def main(argv: list[str] | None = None) -> int:
    """``python -m curvlab.repro.papers [--check] [--papers PATH] [--tables DIR]``."""
    parser = argparse.ArgumentParser(description="Render papers.md's verdict blocks from the scorecards.")
    parser.add_argument("--check", action="store_true", help="exit 1 if papers.md disagrees; write nothing")
    parser.add_argument("--papers", type=Path, default=None, help="papers.md to render (default: the repo's)")
    parser.add_argument("--tables", type=Path, default=None, help="the tables/ folder (default: the repo's)")
    parser.add_argument("--bench", type=Path, default=None,
                        help="the results/bench/ folder (default: the repo's)")
    args = parser.parse_args(argv)
    path = args.papers or papers_md()
    scorecards = load_scorecards(args.tables)
    bench = load_bench(args.bench)
    if args.check:
        differ = check(path, scorecards, bench)
        for block in differ:
            print(f"{path}: the {block} block differs from its scorecard or bench record; "
                  "run `python -m curvlab.repro.papers` to re-render it", file=sys.stderr)
        return 1 if differ else 0
    text = path.read_text()
    new = render(text, scorecards, bench)
    if new != text:
        path.write_text(new)
    print(f"{path}: verdict blocks rendered for {', '.join(scorecards) or 'no paper'}; "
          f"bench blocks for {', '.join(bench) or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
