"""curvlab.repro.bench_report: papers.md's benchmark blocks rendered from results/bench records."""
import json

from curvlab.repro import bench_report as B
from curvlab.repro import papers as P

ISAAC = {"benchmark": "isaac", "torch": "2.13.0+cpu", "cpu": "Test CPU", "quick": False,
         "target": {"model": "mlp 5x400", "time": 1.15, "memory": 1.05, "pypi": 1.0},
         "runs": {"2": {"target_met": True, "results": {"mlp 5x400": {
             "isaac": {"time_ratio": 1.1, "memory_ratio": 1.01, "ratio_to_pypi": 0.9},
             "zeta": {"time_ratio": 2.0}, "kfac": {"time_ratio": 9.0}}}},
                  "1": {"target_met": False, "results": {"mlp 5x400": {
                      "isaac": {"time_ratio": 1.32, "memory_ratio": 1.02, "ratio_to_pypi": 0.93},
                      "zeta": {"time_ratio": 2.4}, "kfac": {"time_ratio": 10.0}}}}}}
SGN = {"benchmark": "sgn", "torch": "2.13.0+cpu", "cpu": "Test CPU", "threads": 2, "results": {"mlp": {
    "rows": {"ggn reuse [traced]": {"ratio_to_gradient": 0.95}, "ggn standalone": {"ratio_to_gradient": 1.45},
             "sgn(1) [traced]": {"ratio_to_sgd_step": 2.6}, "sgn(3) [traced]": {"ratio_to_sgd_step": 4.0}},
    "sgn_fit [traced]": {"fixed": 1.5, "per_cg_iteration": 0.8},
    "targets": {"sgn(1) [traced] <= 2.5x sgd step": False, "reuse [traced] <= 2.0x gradient": True}}}}


def test_isaac_block_lists_every_thread_count_with_its_target():
    text = B.render_bench("isaac", ISAAC)
    assert "Test CPU" in text and "| mlp 5x400 | 1 | 1.32× | 0.93× | 2.40× | 10.00× | 1.02× |" in text
    assert text.index("| mlp 5x400 | 1 |") < text.index("| mlp 5x400 | 2 |")      # threads in order
    assert "1 thread(s): 1.32× time, 0.93× PyPI, 1.02× memory → **not met**" in text
    assert "2 thread(s): 1.10× time, 0.90× PyPI, 1.01× memory → met" in text


def test_sgn_block_reports_missing_rows_and_unmet_targets():
    text = B.render_bench("sgn", SGN)
    assert "| mlp | 0.95× | 1.45× | — | 2.60× | 4.00× | — |" in text
    assert "sgn(1) [traced] <= 2.5x sgd step **not met**" in text and "fit 1.50 + 0.80·k" in text


def test_an_old_record_layout_is_named_not_guessed():
    text = B.render_bench("isaac", {"results": {}, "target": {}})
    assert "re-run `make bench`" in text and "×" not in text


def test_papers_renders_and_checks_bench_blocks(tmp_path):
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "sgn.json").write_text(json.dumps(SGN))
    md = tmp_path / "papers.md"
    md.write_text("# P\n\n<!-- bench:sgn -->\nold numbers 2.35\n<!-- /bench:sgn -->\n\n"
                  "<!-- bench:gone -->\nkept\n<!-- /bench:gone -->\n")
    tables = tmp_path / "tables"
    tables.mkdir()
    assert P.main(["--check", "--papers", str(md), "--tables", str(tables), "--bench", str(bench)]) == 1
    assert P.main(["--papers", str(md), "--tables", str(tables), "--bench", str(bench)]) == 0
    text = md.read_text()
    assert "old numbers" not in text and "2.60×" in text and "kept" in text
    assert P.check(md, {}, B.load_bench(bench)) == []
