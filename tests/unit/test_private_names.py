"""No module of the package imports another module's private names (``from streamdrift.x import _name``): what a
module shares has a public name, so a reader sees it is shared and its owner cannot rename it unknowingly. A private
submodule (``from streamdrift.core import _speedups``) is a module, not a name, and is fine; so is a dunder
(``__version__``), and a fast path's use of the reference module it is tested equal to (``SAME_CONCERN``)."""

from __future__ import annotations

import ast
from pathlib import Path

import streamdrift

PACKAGE = Path(streamdrift.__file__).parent
# module -> the module whose private names it may use: one concern in two modules, kept equal by tests
SAME_CONCERN = {"streamdrift.core.join_bulk": "streamdrift.core.join"}  # the bulk join over join's buffers


def is_submodule(module: str, name: str) -> bool:
    """Whether ``module.name`` is a module (a package directory, a ``.py`` file, a built extension)."""
    directory = PACKAGE.parent.joinpath(*module.split("."))
    return directory.is_dir() and ((directory / name).is_dir() or any(directory.glob(f"{name}.*")))


def private_imports(source: str, importer: str = "") -> list[tuple[int, str, str]]:
    """(line, module, name) of each private name the source of module ``importer`` imports from the package.

    >>> private_imports("from streamdrift.core.decode import _timestamp as t\\nfrom streamdrift.core import _speedups")
    [(1, 'streamdrift.core.decode', '_timestamp')]
    >>> private_imports("from streamdrift import __version__\\nfrom streamdrift.core.join import _Buffer", "streamdrift.core.join_bulk")
    []
    """
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ImportFrom) or not (node.module or "").startswith("streamdrift"):
            continue
        if SAME_CONCERN.get(importer) == node.module:
            continue
        for alias in node.names:
            name = alias.name
            if name.startswith("_") and not name.startswith("__") and not is_submodule(node.module or "", name):
                found.append((node.lineno, node.module or "", name))
    return found


def module_name(path: Path) -> str:
    """``.../streamdrift/core/join_bulk.py`` -> ``streamdrift.core.join_bulk``."""
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)


def test_no_module_imports_another_modules_private_names():
    found = {
        f"{path.relative_to(PACKAGE)}:{line}": f"{module}.{name}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for line, module, name in private_imports(path.read_text(), module_name(path))
    }
    assert found == {}
