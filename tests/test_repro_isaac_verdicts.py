"""Every ISAAC verdict function on synthetic best-lr tables: each status it can return."""
import math

import pandas as pd
import pytest

from curvlab.repro import isaac_verdicts as V


def rec(train_s=1.0, steps=10, eval_s=0.5, acc=0.9):
    return {"summary": {"train_time_s": train_s, "steps": steps, "eval_time_s": eval_s,
                        "final_test_accuracy": acc}}


def table(rows):
    """rows: (setting, scores, lr, at_edge[, extra dict])."""
    out = []
    for r in rows:
        setting, scores, lr, edge = r[:4]
        extra = r[4] if len(r) > 4 else {}
        out.append({"setting": setting, "scores": list(scores), "lr": lr, "at_edge": edge,
                    "seeds": list(range(len(scores))), "records": [rec()] * len(scores),
                    "failed_lrs": [], **extra})
    return pd.DataFrame(out)


SUBSETS = ["{1,2,3,4,5}", "{1}", "{5}", "{1,2,3}", "{1,3,5}", "{2,4}"]


def fig5_table(others, s345, gd=(1.0, 1.1, 1.2), edge=False):
    return table([("GD", gd, 0.1, edge)] + [(s, others, 0.3, False) for s in SUBSETS]
                 + [("{3,4,5}", s345, 0.3, False)])


def test_fig5_reproduced_when_others_win_and_345_ties():
    v = V.fig5(fig5_table((0.5, 0.55, 0.6), (1.05, 1.15, 1.25)))
    assert v.status == "reproduced"
    assert v.numbers["vs_345"] == "inconclusive" and len(v.numbers["beat"]) == 6
    assert "3 seeds" in v.evidence


def test_fig5_differs_when_345_clearly_wins():
    assert V.fig5(fig5_table((0.5, 0.55, 0.6), (0.5, 0.55, 0.6))).status == "differs"


def test_fig5_inconclusive_when_a_subset_is_within_spread():
    t = fig5_table((0.5, 0.55, 0.6), (1.05, 1.15, 1.25))
    t.at[1, "scores"] = [0.9, 1.0, 1.15]                      # overlaps GD's [1.0, 1.2]
    assert V.fig5(t).status == "inconclusive"


def test_fig5_lr_at_grid_edge_wins_over_everything():
    v = V.fig5(fig5_table((0.5, 0.55, 0.6), (1.05, 1.15, 1.25), edge=True))
    assert v.status == "inconclusive (lr at grid edge)" and "GD (lr 0.1)" in v.evidence


def fig1_table(star_loss, edge=False):
    rows = [("GD", [1.0], 1.0, edge, {"la": math.nan, "lg": math.nan})]
    for la in (0.01, 1.0):
        rows.append(("ζ*", [star_loss], 0.3, False, {"la": la, "lg": math.nan}))
        rows.append(("ζ", [0.4], 0.3, False, {"la": la, "lg": 1.0}))
        rows.append(("ζ", [0.5], 0.3, False, {"la": la, "lg": 0.01}))
    return table(rows)


def test_fig1_statuses():
    assert V.fig1(fig1_table(0.5)).status == "reproduced"         # 0.5 within 1.5× of 0.4
    v = V.fig1(fig1_table(0.7))
    assert v.status == "differs" and v.numbers["worse_at"] == [0.01, 1.0]
    assert "1 seed" in v.evidence
    assert V.fig1(fig1_table(0.5, edge=True)).status == "inconclusive (lr at grid edge)"


def test_fig4_statuses():
    def t(star):
        return table([("Adam", [1.0], 0.001, False, {"la": math.nan})]
                     + [("ζ* + Adam", [s], 0.001, False, {"la": la}) for la, s in zip((0.1, 10.0), star)])
    assert V.fig4(t((0.5, 1.0))).status == "reproduced"
    assert V.fig4(t((1.2, 1.0))).status == "inconclusive"
    assert V.fig4(t((2.0, 3.0))).status == "differs"


def fig2_table(star01=0.1, kfac_ms=100.0, star001=0.1, failed=()):
    rows = [("GD", [0.5], 0.3, False)]
    for lam, star in ((0.1, star01), (0.01, star001)):
        rows += [(f"ζ* λ={lam:g}", [star], 0.3, False, {"failed_lrs": list(failed) if lam == 0.01 else []}),
                 (f"ζ λ={lam:g}", [0.1 if lam == 0.1 else 0.05], 0.3, False),
                 (f"K-FAC λ={lam:g}", [0.1 if lam == 0.1 else 0.05], 0.3, False)]
    t = table(rows)
    t["records"] = [[rec(train_s=ms / 100, steps=10)] for ms in
                    [9.0, 10.0, 20.0, kfac_ms, 10.0, 20.0, kfac_ms]]
    return t


def test_fig2_lambda01():
    v = V.fig2_lambda01(fig2_table())
    assert v.status == "reproduced" and v.numbers["ms_per_step"]["ζ* λ=0.1"] == pytest.approx(10.0)
    assert V.fig2_lambda01(fig2_table(star01=0.3)).status == "differs"      # 3× spread
    assert V.fig2_lambda01(fig2_table(kfac_ms=5.0)).status == "differs"    # ζ* not fastest


def test_fig2_lambda001():
    assert V.fig2_lambda001(fig2_table(star001=0.1)).status == "reproduced"          # ζ, K-FAC 2× better
    assert V.fig2_lambda001(fig2_table(star001=0.05)).status == "differs"
    assert V.fig2_lambda001(fig2_table(star001=0.05, failed=[1.0])).status == "reproduced"


def test_step_cost_reads_the_table2_measurement():
    res = {"auto-encoder": {"gradient": {"time_ms": 9.0}, "isaac": {"time_ms": 10.0}}}
    v = V.step_cost(res)
    assert v.numbers["faster"] == pytest.approx(0.1) and v.status == "reproduced"
    res["auto-encoder"]["isaac"]["time_ms"] = 20.0                     # GD twice as fast
    assert V.step_cost(res).status == "differs"


def test_fig3():
    def heat(star):
        rows = []
        for ds in ("mnist", "fashion_mnist"):
            rows += [{"dataset": ds, "setting": "GD", "scores": [1.0]},
                     {"dataset": ds, "setting": "ζ*", "scores": [star]},
                     {"dataset": ds, "setting": "ζ", "scores": [0.4]}]
        return pd.DataFrame(rows)
    assert V.fig3(heat(0.5)).status == "reproduced"
    assert V.fig3(heat(0.9)).status == "differs"


def fig6_table(st03):
    rows = []
    for lr, gd, st, out in [(1.0, [0.5], [0.1], "collapsed to chance"), (0.3, [0.6], st03, "ok"),
                            (0.1, [0.5], [0.6], "ok")]:
        rows += [{"setting": "GD", "lr": lr, "accuracy": gd, "outcome": "ok"},
                 {"setting": "ζ* last layer", "lr": lr, "accuracy": st, "outcome": out}]
    return pd.DataFrame(rows)


def test_fig6_proxy_and_chance():
    v = V.fig6(fig6_table([0.7]), stand_in="fashion_mnist_32")
    assert v.status == "proxy" and v.numbers["agree"] and v.numbers["collapsed"] == [1.0]
    assert "fashion_mnist_32" in v.evidence
    assert V.fig6(fig6_table([0.7])).status == "reproduced"
    assert V.fig6(fig6_table([0.55])).status == "differs"          # best lr 0.3 is not a win


def test_table2():
    res = {"mlp 5x100": {"isaac": {"time_ratio": 1.5, "memory_ratio": 1.0}, "zeta": {"time_ratio": 3.0},
                         "kfac": {"time_ratio": 20.0}},
           "mlp 5x400": {"isaac": {"time_ratio": 1.2, "memory_ratio": 1.02}, "zeta": {"time_ratio": 2.0},
                         "kfac": {"time_ratio": 9.0}}}
    assert V.table2(res).status == "reproduced"
    res["mlp 5x400"]["isaac"]["memory_ratio"] = 1.5
    assert V.table2(res).status == "differs"


def test_not_run_statuses_are_known():
    from curvlab.verdicts import STATUSES
    assert {v.status for v in V.not_run()} <= set(STATUSES)


def test_fmt():
    assert V.fmt(math.inf) == "diverged" and V.fmt(0.012345) == "0.012"


def test_a_diverged_setting_loses_even_with_one_seed():
    assert V._lower([math.inf], [0.5]) == "b" and V._lower([0.5], [math.inf]) == "a"
    assert V._mean([math.inf, math.nan]) == math.inf


def test_fig5_with_one_seed_orders_by_the_margin_not_by_any_gap():
    v = V.fig5(fig5_table((0.9,), (0.95,), gd=(1.0,)))          # 10 % below GD: inside the 1.5× margin
    assert v.status == "inconclusive" and "one seed" in v.evidence
    v = V.fig5(fig5_table((0.5,), (0.95,), gd=(1.0,)))
    assert v.status == "reproduced" and v.numbers["vs_345"] == "inconclusive"


def test_fig5_paper_reads_only_complete_record_sets(tmp_path, monkeypatch):
    import json

    from curvlab.experiment import config_hash
    from curvlab.repro import isaac_grids as G
    from curvlab.repro import isaac_results as RES
    monkeypatch.setenv("CURVLAB_RESULTS", str(tmp_path))
    ci = fig5_table((0.5, 0.55, 0.6), (1.05, 1.15, 1.25))
    assert RES.fig5_paper(ci) is None                               # nothing on disk: nothing is run
    folder = tmp_path / "paper" / "01_isaac"
    folder.mkdir(parents=True)
    for i, setting in enumerate(G.SUBSETS):
        loss = 1.0 if setting in ("GD", "{3,4,5}") else 0.4
        metrics = {"step": [0, 600], "epoch": [0, 1], "time": [0.0, 1.0], "eval_train_loss": [2.3, loss],
                   "test_accuracy": [0.1, 0.9]}
        config = {"fig": "fig5", "setting": setting, "lr": 0.3, "seed": 0}
        rec = {"name": f"fig5-{i}", "config_hash": config_hash(config), "status": "ok", "metrics": metrics,
               "config": config,
               "summary": {"final_train_loss": loss, "final_test_accuracy": 0.9, "train_time_s": 1.0,
                           "eval_time_s": 0.1, "steps": 600},
               "environment": {"device_name": "Test CPU"}}
        (folder / f"fig5-{i}.json").write_text(json.dumps(rec))
        if i == 2:
            assert RES.fig5_paper(ci) is None                       # incomplete: not rendered
    out = RES.fig5_paper(ci)
    assert out["device"] == "Test CPU" and out["verdict"].status == "reproduced"
    assert out["verdict"].ours_paper.startswith("6/6 below GD")
