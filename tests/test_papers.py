"""curvlab.repro.papers: papers.md's verdict blocks rendered from the scorecards, and checked."""
import pandas as pd
import pytest

from curvlab.repro import papers as P
from curvlab.verdicts import Verdict, scorecard

TEXT = """# Papers

## 1. Toy

Some prose that must survive.

<!-- verdicts:toy -->
stale text
<!-- /verdicts:toy -->

## 2. Other

<!-- verdicts:other -->
kept as it is (no scorecard)
<!-- /verdicts:other -->
"""


@pytest.fixture
def toy(tmp_path):
    tables = tmp_path / "tables"
    (tables / "toy").mkdir(parents=True)
    card = scorecard([Verdict("A | B beats C", "reproduced", "3 seeds,\nranges disjoint", {"gap": 1},
                              paper="90 %", ours_ci="89 %"),
                      Verdict("D", "needs GPU", "CIFAR-10 at paper scale")])
    card.to_csv(tables / "toy" / "scorecard.csv", index=False)
    md = tmp_path / "papers.md"
    md.write_text(TEXT)
    return md, tables


def test_render_fills_only_blocks_with_a_scorecard(toy):
    md, tables = toy
    assert P.main(["--check", "--papers", str(md), "--tables", str(tables)]) == 1
    assert P.main(["--papers", str(md), "--tables", str(tables)]) == 0
    text = md.read_text()
    assert "stale text" not in text and "Some prose that must survive." in text
    assert "kept as it is (no scorecard)" in text
    block = text.split("<!-- verdicts:toy -->\n")[1].split("<!-- /verdicts:toy -->")[0]
    rows = block.strip().splitlines()
    assert rows[0] == "| claim | paper | ours (paper scale) | ours (ci) | status | evidence |"
    # the pipe is escaped and the line break folded, so each row stays one table row of 6 cells
    assert rows[2] == "| A \\| B beats C | 90 % |  | 89 % | reproduced | 3 seeds, ranges disjoint |"
    assert rows[3].split(" | ")[4] == "needs GPU"
    assert P.main(["--check", "--papers", str(md), "--tables", str(tables)]) == 0     # now agrees
    again = md.read_text()
    P.main(["--papers", str(md), "--tables", str(tables)])
    assert md.read_text() == again                                                   # idempotent


def test_check_catches_a_hand_edited_status(toy):
    md, tables = toy
    P.main(["--papers", str(md), "--tables", str(tables)])
    md.write_text(md.read_text().replace("| needs GPU |", "| reproduced |"))
    assert P.check(md, P.load_scorecards(tables)) == ["verdicts:toy"]


def test_scorecard_without_markers_is_an_error(toy):
    md, tables = toy
    (tables / "lost").mkdir()
    pd.DataFrame({"claim": ["x"], "status": ["proxy"]}).to_csv(tables / "lost" / "scorecard.csv", index=False)
    with pytest.raises(ValueError, match="lost"):
        P.render(md.read_text(), P.load_scorecards(tables))


def test_older_scorecard_columns_are_read_by_their_aliases():
    old = pd.DataFrame({"item": ["Boston"], "reference": ["0.01"], "ours, ci scale": ["0.009"],
                        "verdict": ["reproduced"]})
    assert P.render_block(old).splitlines()[2] == "| Boston | 0.01 |  | 0.009 | reproduced |  |"


def test_the_repository_papers_md_agrees_with_its_scorecards():
    cards = P.load_scorecards(P.REPO_ROOT / "tables")
    if not cards:
        pytest.skip("no tables/*/scorecard.csv yet (make reproduce writes them)")
    assert P.check(P.papers_md(), cards, P.load_bench()) == [], \
        "run `python -m curvlab.repro.papers` (make reproduce)"
