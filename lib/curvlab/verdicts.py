"""Evidence rules: how per-seed numbers become a verdict on a paper's claim.

Pure functions on plain numbers, so every rule is unit-tested on synthetic values:

- :func:`spread` summarises one method's per-seed values by mean and min–max range.
- :func:`compare` says which of two methods is better, and only when their min–max ranges over
  seeds do not overlap; a gap inside the seed-to-seed spread is ``"inconclusive"``.
- :func:`best_on_grid` picks the best grid value and says whether it sits on the grid's edge (then
  the true optimum may lie outside the grid, and a verdict built on it is
  ``"inconclusive (lr at grid edge)"``).
- :class:`Verdict` is one claim's outcome with the numbers behind it; :func:`scorecard` and
  :func:`save_scorecard` collect them into ``tables/<paper>/scorecard.csv``, which
  :mod:`curvlab.repro.papers` renders into ``papers.md``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable, Sequence

import pandas as pd

STATUSES = ("reproduced", "differs", "inconclusive", "inconclusive (lr at grid edge)", "proxy",
            "needs GPU", "not reproducible here")

SCORECARD_COLUMNS = ("claim", "status", "evidence", "paper", "ours_paper", "ours_ci", "numbers")


@dataclass(frozen=True)
class Spread:
    """Mean and min–max range of one quantity over ``n`` seeds (non-finite values count as lost)."""

    mean: float
    lo: float
    hi: float
    n: int

    def text(self, fmt: Callable[[float], str] = "{:.3g}".format, seeds: bool = True) -> str:
        """``mean [lo–hi] (n seeds)``, each number through ``fmt``; the one format of every verdict.

        >>> Spread(2.0, 1.0, 3.0, 2).text()
        '2 [1–3] (2 seeds)'
        >>> Spread(0.5, 0.5, 0.5, 1).text("{:.1%}".format, seeds=False)
        '50.0%'
        """
        if self.n == 0:
            return "no finite value"
        count = f" ({self.n} seed{'s' if self.n > 1 else ''})" if seeds else ""
        if self.n == 1:
            return fmt(self.mean) + count
        return f"{fmt(self.mean)} [{fmt(self.lo)}–{fmt(self.hi)}]" + count

    def __str__(self) -> str:
        return self.text("{:.4g}".format)


def spread(values: Iterable[float]) -> Spread:
    """Mean, min and max of the finite ``values``; ``n`` counts the finite ones.

    Args:
        values: one number per seed.

    Returns:
        ``Spread(mean, lo, hi, n)``; all ``nan`` with ``n = 0`` when no value is finite.

    >>> spread([1.0, 3.0, float("nan")])
    Spread(mean=2.0, lo=1.0, hi=3.0, n=2)
    """
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        return Spread(math.nan, math.nan, math.nan, 0)
    return Spread(sum(finite) / len(finite), min(finite), max(finite), len(finite))


def compare(a: Sequence[float], b: Sequence[float], *, higher_is_better: bool = True) -> str:
    """Which of two methods is better, judged on their per-seed values.

    ``a`` wins when its worst seed beats ``b``'s best seed (the min–max ranges are disjoint);
    overlapping ranges, or a side without a finite value, give ``"inconclusive"``. A method whose
    every seed is non-finite (diverged) loses to one with finite values.

    Args:
        a: per-seed values of the first method.
        b: per-seed values of the second method.
        higher_is_better: ``True`` for accuracies, ``False`` for losses.

    Returns:
        ``"a"``, ``"b"`` or ``"inconclusive"``.

    >>> compare([0.9, 0.92], [0.80, 0.85])
    'a'
    >>> compare([0.9, 0.8], [0.85, 0.86])
    'inconclusive'
    """
    sa, sb = spread(a), spread(b)
    if sa.n == 0 or sb.n == 0:
        if sa.n and len(b):
            return "a"
        if sb.n and len(a):
            return "b"
        return "inconclusive"
    sign = 1.0 if higher_is_better else -1.0
    # in "higher is better" units: a wins iff min(a) > max(b)
    a_lo, a_hi = sorted((sign * sa.lo, sign * sa.hi))
    b_lo, b_hi = sorted((sign * sb.lo, sign * sb.hi))
    if a_lo > b_hi:
        return "a"
    if b_lo > a_hi:
        return "b"
    return "inconclusive"


MARGIN = 1.5      # one seed on a side: "better" needs a ratio beyond this (no spread was measured)


def compare_or_margin(a: Sequence[float], b: Sequence[float], *, higher_is_better: bool = True,
                      margin: float = MARGIN) -> str:
    """:func:`compare` when both sides have two or more seeds; a ratio margin when one has a single seed.

    With one seed there is no seed-to-seed spread to compare against, so ``a`` wins only when its
    value beats ``b``'s by more than the factor ``margin`` (for positive quantities such as losses),
    e.g. ``1.5``: a loss 1.4× lower is "inconclusive". Non-finite sides follow :func:`compare`.

    >>> compare_or_margin([0.1], [0.2], higher_is_better=False)
    'a'
    >>> compare_or_margin([0.15], [0.2], higher_is_better=False)
    'inconclusive'
    """
    sa, sb = spread(a), spread(b)
    if (len(a) > 1 and len(b) > 1) or not sa.n or not sb.n:
        return compare(a, b, higher_is_better=higher_is_better)
    def beats(x: float, y: float) -> bool:
        return y * margin < x if higher_is_better else x * margin < y
    if beats(sa.mean, sb.mean):
        return "a"
    if beats(sb.mean, sa.mean):
        return "b"
    return "inconclusive"


def best_on_grid(grid_values: Sequence[float], scores: Sequence[float], *, higher_is_better: bool = True
                 ) -> tuple[float, bool]:
    """The grid value with the best score, and whether it lies on the grid's edge.

    Non-finite scores (diverged runs) never win. The edge is judged on the sorted grid: the best at
    its smallest or largest value means the optimum may lie outside it.

    Args:
        grid_values: e.g. learning rates, one per score.
        scores: one score per grid value (e.g. a mean over seeds).
        higher_is_better: ``True`` for accuracies, ``False`` for losses.

    Returns:
        ``(best_value, at_edge)``.

    Raises:
        ValueError: lengths differ, the grid is empty, or no score is finite.

    >>> best_on_grid([0.01, 0.1, 1.0], [0.5, 0.9, 0.7])
    (0.1, False)
    >>> best_on_grid([0.01, 0.1, 1.0], [2.0, 1.0, 0.5], higher_is_better=False)
    (1.0, True)
    """
    if len(grid_values) != len(scores):
        raise ValueError(f"grid_values and scores differ in length ({len(grid_values)} vs {len(scores)})")
    pairs = [(float(g), float(s)) for g, s in zip(grid_values, scores) if s is not None and math.isfinite(s)]
    if not pairs:
        raise ValueError("best_on_grid needs at least one finite score")
    sign = 1.0 if higher_is_better else -1.0
    best = max(pairs, key=lambda p: sign * p[1])[0]
    ordered = sorted(float(g) for g in grid_values)
    at_edge = len(ordered) < 3 or best in (ordered[0], ordered[-1])
    return best, at_edge


@dataclass(frozen=True)
class Verdict:
    """One paper claim's outcome.

    Attributes:
        claim: the claim in a few words.
        status: one of :data:`STATUSES`.
        evidence: the numbers in prose: seeds, spread, the rule that decided.
        numbers: the numbers behind the status (JSON-able), for tests and tables.
        paper: what the paper reports.
        ours_paper: our result at paper scale ("" if not run).
        ours_ci: our result at ci scale.
    """

    claim: str
    status: str
    evidence: str
    numbers: dict = field(default_factory=dict)
    paper: str = ""
    ours_paper: str = ""
    ours_ci: str = ""

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")

    def sentence(self) -> str:
        """One prose line: ``"Claim — status: evidence"``.

        >>> Verdict("SGN beats SGD", "inconclusive", "ranges overlap (3 seeds)").sentence()
        'SGN beats SGD — inconclusive: ranges overlap (3 seeds)'
        """
        return f"{self.claim} — {self.status}: {self.evidence}"


def scorecard(verdicts: Iterable[Verdict]) -> pd.DataFrame:
    """One row per verdict, columns :data:`SCORECARD_COLUMNS` (``numbers`` as compact JSON)."""
    import json
    rows = []
    for v in verdicts:
        row = asdict(v)
        row["numbers"] = json.dumps(row["numbers"], sort_keys=True, default=float)
        rows.append({k: row[k] for k in SCORECARD_COLUMNS})
    return pd.DataFrame(rows, columns=list(SCORECARD_COLUMNS))


def save_scorecard(verdicts: Iterable[Verdict], paper: str) -> pd.DataFrame:
    """Write ``tables/<paper>/scorecard.csv`` (and its Markdown twin); return the table."""
    from .plotting import save_table
    table = scorecard(verdicts)
    save_table(table, paper, "scorecard")
    return table
