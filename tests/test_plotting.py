"""curvlab.plotting: figures are saved with their data; tables as CSV and Markdown."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from curvlab import plotting  # noqa: E402


def test_save_figure_writes_png_and_csv_and_summary():
    plotting.set_theme()
    fig, ax = plt.subplots()
    df = pd.DataFrame({"step": [0, 1, 2], "loss": [1.0, 0.123456, 0.0101]})
    ax.plot(df.step, df.loss)
    line = plotting.save_figure(fig, "toy", "fig1", df)
    root = plotting.output_root("figures") / "toy"
    assert (root / "fig1.png").read_bytes()[:4] == b"\x89PNG"
    assert pd.read_csv(root / "fig1.csv").equals(df)
    assert line == "figures/toy/fig1.png: 3 rows; step [0, 2]; loss [0.01, 1]"
    plt.close(fig)


def test_png_is_byte_stable():
    plotting.set_theme()
    blobs = []
    for _ in range(2):
        fig, ax = plt.subplots()
        ax.plot([0, 1], [1, 0])
        plotting.save_figure(fig, "toy", "stable", {"x": [0, 1]})
        blobs.append((plotting.output_root("figures") / "toy" / "stable.png").read_bytes())
        plt.close(fig)
    assert blobs[0] == blobs[1]


def test_save_table_markdown():
    table = pd.DataFrame({"method": ["SGD", "SGN"], "acc": [0.91234, float("nan")]})
    md = plotting.save_table(table, "toy", "t1")
    assert md.splitlines()[2] == "| SGD | 0.9123 |" and "—" in md.splitlines()[3]
    assert (plotting.output_root("tables") / "toy" / "t1.csv").exists()


def test_round_sig():
    assert plotting.round_sig(0.0123456) == 0.012 and plotting.round_sig(98765, 3) == 98800


def test_overlapping_writes_of_one_file_do_not_collide(tmp_path):
    # a second writer of the same file starts while the first is still writing (two processes
    # rendering one figure): both renames succeed, the last one wins, no temporary file is left
    target = tmp_path / "fig.csv"

    def outer(tmp):
        tmp.write_text("first")
        plotting._atomic(target, lambda inner: inner.write_text("second"))
        assert target.read_text() == "second"

    plotting._atomic(target, outer)
    assert target.read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.csv"]


def test_method_colors_are_fixed_per_name_and_distinct():
    import matplotlib
    first = plotting.method_colors(["SGN(10)", "SGD(0.1)", "SGN(3)"])
    assert len(set(first.values())) == 3
    # a later figure listing a subset, in another order, with a new name, keeps the old colours
    later = plotting.method_colors(["ζ* test-only", "SGN(3)", "SGD(0.1)"])
    assert later["SGN(3)"] == first["SGN(3)"] and later["SGD(0.1)"] == first["SGD(0.1)"]
    assert later["ζ* test-only"] not in first.values()
    assert all(matplotlib.colors.is_color_like(c) for c in later.values())


def test_natural_order():
    assert sorted(["lr 1e-3", "SGN(20)", "SGN(3)", "SGD(1)", "SGD(0.01)"], key=plotting.natural_key) == \
        ["SGD(0.01)", "SGD(1)", "SGN(3)", "SGN(20)", "lr 1e-3"]


def test_mean_band_draws_mean_band_and_marks_diverged_runs():
    fig, ax = plt.subplots()
    x = [0, 1, 2, 3]
    runs = [[1.0, 2.0, 3.0, 4.0], [3.0, 4.0, 5.0, 6.0], [2.0, 9.0, float("nan")]]   # seed 3 diverged
    line = plotting.mean_band(ax, x, runs, "SGD", color="C1")
    np.testing.assert_allclose(line.get_ydata(), [2.0, 5.0, 4.0, 5.0])   # finite seeds only, per x
    assert line.get_label() == "SGD (3 seeds)"
    band = ax.collections[0].get_paths()[0].vertices
    assert band[:, 1].min() == 1.0 and band[:, 1].max() == 9.0          # min–max over seeds, not clipped
    marks = [ln for ln in ax.lines if ln.get_marker() == "x"]
    assert len(marks) == 1 and marks[0].get_xdata()[0] == 1 and marks[0].get_ydata()[0] == 9.0
    # explicit flags: a finite blow-up is marked too
    ax2 = plt.subplots()[1]
    plotting.mean_band(ax2, x, [[1, 2, 3, 4], [1, 2, 3e6, 3e6]], "SGD(0.1)", diverged=[False, True])
    assert sum(ln.get_marker() == "x" for ln in ax2.lines) == 1
    plt.close("all")
