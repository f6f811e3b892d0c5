"""Coding effort: logical lines of a framework's implementation file."""

from __future__ import annotations

import ast
from pathlib import Path


def _is_docstring(node: ast.stmt) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def logical_lines(path: Path) -> int:
    """Statements in the file (a compound statement's header counts once), docstrings and comments excluded.

    Physical lines would reward long lines and punish readable wrapping; a
    statement count measures what the programmer had to write.
    """
    tree = ast.parse(Path(path).read_text())
    return sum(1 for node in ast.walk(tree) if isinstance(node, ast.stmt) and not _is_docstring(node))
