"""No path used by the library or the notebooks leads outside the repository.

A clone must carry everything it reads: a literal that is absolute, or that climbs out of the
repository (``"../shared/..."``), works only where something happens to sit beside the clone.
Every string literal of ``lib/`` and ``notebooks/*.py`` that looks like a path is checked; the
notebooks run with ``notebooks/`` as working directory (``make reproduce``), library code
resolves relative paths against the repository root.
"""
import ast
import re
from pathlib import Path

import pytest

from curvlab import data, experiment, plotting

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "lib").rglob("*.py")) + sorted((ROOT / "notebooks").glob("*.py"))

# Absolute paths that name the machine, not a file a clone should carry.
SYSTEM = ("/proc/", "/dev/", "/sys/", "/usr/share/")
_ABSOLUTE = re.compile(r"^(/[\w.-]+)+/?$|^[A-Za-z]:\\")       # "/a/b", "C:\..."
_CLIMBS = re.compile(r"(^|[/\\])\.\.([/\\]|$)")


def _docstrings(tree):
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                yield id(body[0].value)


def path_literals(path: Path):
    """``(line, text)`` of every string literal that is absolute or contains a ``..`` component."""
    tree = ast.parse(path.read_text(), filename=str(path))
    skip = set(_docstrings(tree))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            text = node.value.strip()
            if "\n" in text or " " in text:
                continue                                   # prose or markdown, not a path
            if _ABSOLUTE.match(text) or _CLIMBS.search(text):
                yield node.lineno, text


def escapes(path: Path, text: str) -> bool:
    """Whether ``text``, used as a path by the file ``path``, resolves outside the repository."""
    if _ABSOLUTE.match(text):
        return not text.startswith(SYSTEM)
    base = ROOT / "notebooks" if path.parent.name == "notebooks" else ROOT
    resolved = (base / text).resolve()
    return resolved != ROOT and ROOT not in resolved.parents


def test_the_checker_catches_what_it_should(tmp_path):
    fake = tmp_path / "notebooks" / "x.py"
    fake.parent.mkdir()
    fake.write_text('"""Doc /abs/in/docstring."""\nA = "../../shared/reference/sgn"\nB = "/home/me/data"\n'
                    'C = "../figures/sgn"\nD = "/proc/cpuinfo"\nE = "text with ../ inside a sentence"\n')
    found = dict((t, ln) for ln, t in path_literals(fake))
    assert set(found) == {"../../shared/reference/sgn", "/home/me/data", "../figures/sgn", "/proc/cpuinfo"}
    assert escapes(ROOT / "notebooks" / "x.py", "../../shared/reference/sgn")
    assert escapes(ROOT / "notebooks" / "x.py", "/home/me/data")
    assert not escapes(ROOT / "notebooks" / "x.py", "../figures/sgn")      # notebooks/../figures: inside
    assert not escapes(ROOT / "lib" / "x.py", "/proc/cpuinfo")


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_literal_path_leaves_the_repository(source):
    bad = [f"{source.relative_to(ROOT)}:{ln}: {text!r}" for ln, text in path_literals(source)
           if escapes(source, text)]
    assert not bad, "paths outside the repository:\n" + "\n".join(bad)


def test_default_roots_are_inside_the_repository(monkeypatch):
    for var in ("DATA_DIR", "CURVLAB_RESULTS", "CURVLAB_OUTPUTS"):
        monkeypatch.delenv(var, raising=False)
    assert data.REPO_ROOT.resolve() == ROOT
    roots = [data.data_dir(), experiment.results_dir(), plotting.output_root("figures"),
             plotting.output_root("tables")]
    for root in roots:
        assert ROOT in root.resolve().parents, root
