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


LCNN = {"benchmark": "lcnn", "torch": "2.13.0+cpu", "cpu": "Test CPU", "threads": 2, "quick": True,
        "results": {
    "model": "resnet18 width 0.25 (ci)", "rows": {
        "standard": {"ratio_to_standard": 1.0, "memory_ratio": 1.0},
        "lcnn": {"ratio_to_standard": 1.42, "memory_ratio": 1.1},
        "gradient-norm": {"ratio_to_standard": 2.5, "memory_ratio": 2.2},
        "input hvp": {"ratio_to_standard": 0.8, "memory_ratio": 1.5, "hvp_equivalents": 1.0},
        "measure_curvature": {"ratio_to_standard": 9.0, "memory_ratio": 1.6, "hvp_equivalents": 11.25}},
    "measurement": {"power_iterations": 10, "batch": 128, "hvp_equivalents": 11.25},
    "targets": {"lcnn step <= 1.3x standard step": False},
    "expected": {"gradient-norm step 2-3x standard step": True}}}


def test_lcnn_block_lists_rows_measurement_and_unmet_target():
    text = B.render_bench("lcnn", LCNN)
    assert "Test CPU" in text and ", quick run" in text and "resnet18 width 0.25 (ci)" in text
    assert "| lcnn | 1.42× | — | 1.10× |" in text
    assert "| measure_curvature | 9.00× | 11.25 | 1.60× |" in text
    assert text.index("| standard |") < text.index("| lcnn |") < text.index("| gradient-norm |")
    assert "11.25 input-HVP equivalents per batch" in text and "K = 10, batch 128" in text
    assert "lcnn step <= 1.3x standard step **not met**" in text
    assert "gradient-norm step 2-3x standard step yes" in text


def test_lcnn_block_without_measurement_says_the_layout_is_old():
    rec = {**LCNN, "results": {k: v for k, v in LCNN["results"].items() if k != "measurement"}}
    text = B.render_bench("lcnn", rec)
    assert "re-run `make bench`" in text and "×" not in text
