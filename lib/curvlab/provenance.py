"""Which code made a record: the git commit, the dirty flag, and a hash of each library module it ran.

A record is *stale* when a module its run function reaches has changed since the record was made.
"Reaches" is the run function's own module plus every ``curvlab`` module it imports, transitively
(found through module globals: ``from .. import isaac`` and ``from ..sgn import SGN`` both count).
Each module is hashed on its syntax tree with docstrings removed, so editing a comment, a docstring
or the formatting leaves records fresh; changing code makes them stale.

Records made before provenance existed have no ``code`` entry: they are *unversioned*, loaded as
they are and listed as such, never silently called fresh or stale.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import inspect
import subprocess
import sys
import types
from pathlib import Path
from typing import Callable

__all__ = ["code_version", "module_hash", "reached_modules", "git_state", "stale_modules"]

PACKAGE = "curvlab"


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None),
                                                                      ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def source_hash(source: str) -> str:
    r"""SHA-256 (16 hex digits) of the source's syntax tree without docstrings or comments.

    Example:
        >>> source_hash("x = 1  # one") == source_hash('"doc"\nx = 1')
        True
        >>> source_hash("x = 1") == source_hash("x = 2")
        False
    """
    dump = ast.dump(_strip_docstrings(ast.parse(source)), include_attributes=False)
    return hashlib.sha256(dump.encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=None)
def _file_hash(path: str, mtime: float) -> str:
    return source_hash(Path(path).read_text())


def module_hash(module: types.ModuleType) -> str | None:
    """:func:`source_hash` of a module's file (``None`` for a module without a source file)."""
    path = getattr(module, "__file__", None)
    if not path or not path.endswith(".py"):
        return None
    return _file_hash(path, Path(path).stat().st_mtime)


def _imported_modules(module: types.ModuleType) -> set[str]:
    names = set()
    for value in vars(module).values():
        target = value if isinstance(value, types.ModuleType) else inspect.getmodule(value)
        if target is not None and target.__name__.split(".")[0] == PACKAGE:
            names.add(target.__name__)
    return names


_SCRIPT_NAMES = ("__main__", "__mp_main__")    # a module run with ``python -m``, and its copy in workers


def importable_name(module: types.ModuleType) -> str:
    """The name a module is imported under: ``__spec__.name`` for one run as a script.

    ``python -m curvlab.repro.isaac`` runs that file as ``__main__`` (``__mp_main__`` in the
    processes of a local Dask cluster); a record must name it ``curvlab.repro.isaac``, which any
    later process can import to check it, not the name of one process's entry point.
    """
    spec = getattr(module, "__spec__", None)
    if module.__name__ in _SCRIPT_NAMES and spec is not None and spec.name:
        return spec.name
    return module.__name__


def reached_modules(fn: Callable) -> list[str]:
    """Names of the ``curvlab`` modules ``fn`` can reach: its own and their imports, transitively.

    A module run with ``python -m`` is listed under its importable name; a plain script (no module
    name to import it by) is left out, its run function being covered by the function hash of
    :func:`code_version`.
    """
    start = inspect.getmodule(fn)
    if start is None:
        return []
    seen, todo = set(), [start.__name__]
    while todo:
        name = todo.pop()
        if name in seen or name not in sys.modules:
            continue
        if name.split(".")[0] != PACKAGE and name != start.__name__:
            continue
        seen.add(name)
        todo.extend(_imported_modules(sys.modules[name]) - seen)
    named = {importable_name(sys.modules[name]) for name in seen}
    return sorted(named - set(_SCRIPT_NAMES))         # a plain script: its function hash covers it


@functools.lru_cache(maxsize=1)
def git_state() -> tuple[str | None, bool | None]:
    """``(commit, dirty)`` of the repository holding this package, or ``(None, None)`` without git."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "lib"],
                                cwd=root, capture_output=True, text=True, timeout=10, check=True).stdout
        return commit or None, bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        return None, None


def code_version(fn: Callable) -> dict:
    """``{"commit", "dirty", "function", "modules": {name: hash}}`` for a run function.

    ``function`` hashes the run function's own source, which covers a function defined in a script
    run as ``__main__`` (its module then has another name in a worker).
    """
    commit, dirty = git_state()
    by_name = {importable_name(m): m for m in list(sys.modules.values()) if isinstance(m, types.ModuleType)}
    modules = {name: module_hash(by_name[name]) for name in reached_modules(fn)}
    try:
        function = source_hash(inspect.getsource(fn).strip() if not inspect.getsource(fn).startswith(" ")
                               else "if True:\n" + inspect.getsource(fn))
    except (OSError, TypeError, SyntaxError):
        function = None
    return {"commit": commit, "dirty": dirty, "function": function,
            "modules": {k: v for k, v in modules.items() if v is not None}}


def stale_modules(code: dict) -> list[str]:
    """The modules of a record's ``code`` entry whose source differs from the current one."""
    import importlib
    changed = []
    for name, recorded in code.get("modules", {}).items():
        try:
            current = module_hash(importlib.import_module(name))
        except ImportError:
            current = None
        if current != recorded:
            changed.append(name)
    return changed
