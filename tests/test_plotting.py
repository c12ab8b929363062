"""curvlab.plotting: figures are saved with their data; tables as CSV and Markdown."""
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
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
    md = plotting.save_table(pd.DataFrame({"method": ["SGD", "SGN"], "acc": [0.91234, float("nan")]}), "toy", "t1")
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
