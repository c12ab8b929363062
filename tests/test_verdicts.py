"""curvlab.verdicts: the evidence rules on synthetic per-seed numbers."""
import math

import pandas as pd
import pytest

from curvlab import verdicts as V

NAN = float("nan")


def test_spread_is_mean_and_min_max_of_the_finite_values():
    s = V.spread([0.2, 0.5, 0.8, NAN, float("inf")])
    assert s.n == 3 and s.lo == 0.2 and s.hi == 0.8 and math.isclose(s.mean, 0.5)
    empty = V.spread([NAN])
    assert empty.n == 0 and math.isnan(empty.mean)
    assert "3 seeds" in str(s) and "1 seed" in str(V.spread([1.0]))


@pytest.mark.parametrize("a, b, higher, expected", [
    ([0.90, 0.92, 0.95], [0.80, 0.85, 0.89], True, "a"),       # disjoint: a's worst beats b's best
    ([0.80, 0.85, 0.89], [0.90, 0.92, 0.95], True, "b"),
    ([0.80, 0.91, 0.95], [0.90, 0.92, 0.93], True, "inconclusive"),   # means differ, ranges overlap
    ([0.1, 0.2], [0.3, 0.4], False, "a"),                      # losses: lower wins
    ([0.1, 0.2], [0.3, 0.4], True, "b"),
    ([0.5], [0.5], True, "inconclusive"),                      # touching ranges are not a gap
    ([NAN, NAN], [0.3, 0.4], True, "b"),                       # every seed of a diverged
    ([NAN], [NAN], True, "inconclusive"),
])
def test_compare(a, b, higher, expected):
    assert V.compare(a, b, higher_is_better=higher) == expected


@pytest.mark.parametrize("a, b, higher, expected", [
    ([0.10], [0.20], False, "a"),                  # one seed: a loss 2x lower wins
    ([0.15], [0.20], False, "inconclusive"),       # 1.33x is within the 1.5x margin
    ([0.40], [0.20], False, "b"),
    ([0.90], [0.50], True, "a"),                   # accuracies: 1.8x higher wins
    ([0.60], [0.50], True, "inconclusive"),
    ([0.10], [0.20, 0.30], False, "a"),            # one seed on one side is enough for the margin
    ([0.10, 0.12], [0.30, 0.40], False, "a"),      # two seeds each: the spread rule of compare
    ([0.10, 0.35], [0.30, 0.40], False, "inconclusive"),
    ([NAN], [0.2], False, "b"),
])
def test_compare_or_margin(a, b, higher, expected):
    assert V.compare_or_margin(a, b, higher_is_better=higher) == expected


def test_best_on_grid_flags_the_edges():
    lrs = [0.001, 0.01, 0.1, 1.0]
    assert V.best_on_grid(lrs, [0.1, 0.5, 0.9, 0.2]) == (0.1, False)
    assert V.best_on_grid(lrs, [0.1, 0.5, 0.6, 0.9]) == (1.0, True)
    assert V.best_on_grid(lrs, [0.9, 0.5, 0.6, 0.7]) == (0.001, True)
    # diverged runs never win; the grid's edge is judged on the sorted grid, not the input order
    assert V.best_on_grid([1.0, 0.01, 0.1], [NAN, 0.2, 0.3], higher_is_better=False) == (0.01, True)
    assert V.best_on_grid([1.0, 0.01, 0.1], [0.5, 0.2, 0.1], higher_is_better=False) == (0.1, False)


def test_best_on_grid_bad_input():
    with pytest.raises(ValueError, match="length"):
        V.best_on_grid([1, 2], [1.0])
    with pytest.raises(ValueError, match="finite"):
        V.best_on_grid([1, 2], [NAN, NAN])


def test_verdict_sentence_and_status_check():
    v = V.Verdict("SGN beats SGD", "reproduced", "84 % [83, 85] vs 80 % [79, 81], 3 seeds", {"gap": 4})
    assert v.sentence() == "SGN beats SGD — reproduced: 84 % [83, 85] vs 80 % [79, 81], 3 seeds"
    with pytest.raises(ValueError, match="status"):
        V.Verdict("x", "probably", "")


def test_scorecard_roundtrip(tmp_path):
    vs = [V.Verdict("a", "reproduced", "e1", {"x": 1.5}, paper="90 %", ours_ci="89 %"),
          V.Verdict("b", "needs GPU", "e2")]
    table = V.save_scorecard(vs, "toy")
    assert list(table.columns) == list(V.SCORECARD_COLUMNS)
    back = pd.read_csv(tmp_path / "outputs" / "tables" / "toy" / "scorecard.csv", keep_default_na=False)
    assert list(back["claim"]) == ["a", "b"] and list(back["status"]) == ["reproduced", "needs GPU"]
    assert back.loc[0, "numbers"] == '{"x": 1.5}' and back.loc[0, "ours_ci"] == "89 %"
