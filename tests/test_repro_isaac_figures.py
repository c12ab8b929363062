"""ISAAC figure conventions: one colour per method, six distinguishable Figure 2 curves, readable cells."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from curvlab.repro import isaac_figures as FIG  # noqa: E402

FIG2 = ["GD"] + [f"{m} λ={lam:g}" for lam in (0.1, 0.01) for m in ("ζ*", "ζ", "K-FAC")]


def test_one_colour_per_method_whatever_the_lambda_or_batch():
    assert FIG.color("ζ* λ=0.1") == FIG.color("ζ* λ=0.01") == FIG.color("ζ*") == FIG.color("ζ* last layer")
    assert FIG.color("K-FAC λ=0.01 batch 600") == FIG.color("K-FAC λ=0.1")
    assert FIG.color("GD") == "black"
    assert len({FIG.color(m) for m in ("GD", "ζ*", "ζ", "K-FAC", "Adam", "SGD+momentum")}) == 6


def test_figure2_curves_are_six_distinct_styles():
    keys = {tuple(sorted(FIG.style(m).items())) for m in FIG2}
    assert len(keys) == len(FIG2)
    assert FIG.style("ζ λ=0.1")["ls"] != FIG.style("ζ λ=0.01")["ls"]
    assert FIG.style("ζ λ=0.1")["marker"] != FIG.style("K-FAC λ=0.1")["marker"]


def test_legend_puts_gd_first_and_lambdas_in_numeric_order():
    fig, ax = plt.subplots()
    for m in ["ζ λ=0.1", "GD", "ζ λ=0.01", "ζ* λ=0.1", "ζ* λ=0.01"]:
        ax.plot([0, 1], [0, 1], label=m)
    FIG.ordered_legend(ax)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["GD", "ζ λ=0.01", "ζ λ=0.1", "ζ* λ=0.01", "ζ* λ=0.1"]
    plt.close(fig)


def test_heatmap_text_contrasts_with_its_cell():
    fig, ax = plt.subplots()
    values = pd.DataFrame([[0.0, 1.0], [np.nan, 0.5]], index=["a", "b"], columns=["x", "y"])
    FIG.heatmap(ax, values, cmap="gray")           # gray: 0 black cell, 1 white cell
    text = {t.get_text(): t.get_color() for t in ax.texts}
    assert text["0.00"] == "white" and text["1.00"] == "black" and "diverged" in text
    plt.close(fig)


def test_mean_band_marks_diverged_runs_instead_of_dropping_them():
    fig, ax = plt.subplots()
    df = pd.DataFrame({"step": [0, 10, 0, 10], "loss": [2.0, 1.0, 2.0, np.nan], "seed": [0, 0, 1, 1],
                       "outcome": ["ok", "ok", "diverged", "diverged"]})
    FIG.mean_band(ax, df, "step", "loss", "ζ*", color="C0")
    crosses = [line for line in ax.lines if line.get_marker() == "x"]
    assert len(crosses) == 1 and list(crosses[0].get_xdata()) == [0]
    assert ax.collections                            # the min–max band over two seeds
    plt.close(fig)
