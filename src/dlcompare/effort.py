"""Coding effort: logical lines of a framework's implementation file, its own code and its adapters apart.

Each framework file names, in `HARNESS_ADAPTERS`, the functions, classes and
methods that exist only to plug it into dlcompare's shared harness: canonical
weight names, the shared batches, the conventions every framework is held to
(Keras' Adam epsilon, the biased batch-norm variance), the equivalence tests'
one-step and forward hooks. A user of that framework alone would not write
them, so they are counted apart from the implementation's own lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

MARKER = "HARNESS_ADAPTERS"


def _is_docstring(node: ast.stmt) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def _statements(node: ast.AST) -> int:
    """Statements in `node` (a compound statement's header counts once), docstrings excluded."""
    return sum(1 for child in ast.walk(node) if isinstance(child, ast.stmt) and not _is_docstring(child))


def _adapter_names(tree: ast.Module) -> set[str]:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == MARKER for t in node.targets):
            return set(ast.literal_eval(node.value))
    return set()


def _defined_names(tree: ast.Module) -> set[str]:
    """Top-level functions and classes, and the methods of top-level classes: what an adapter name can name."""
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        if isinstance(node, ast.ClassDef):
            names.update(member.name for member in node.body if isinstance(member, ast.FunctionDef))
    return names


def coding_effort(path: Path) -> dict[str, int]:
    """{"own": statements a user of the framework writes, "adapters": statements that plug it into the harness}.

    Statements, not physical lines: physical lines would reward long lines and
    punish readable wrapping; a statement count measures what was written.
    """
    tree = ast.parse(Path(path).read_text())
    names = _adapter_names(tree)
    unknown = sorted(names - _defined_names(tree))
    if unknown:
        # A misspelt name would silently count its adapter as the framework's own code.
        raise ValueError(f"{path}: {MARKER} names {', '.join(unknown)}, which the file does not define")
    adapters = 0
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == MARKER for t in node.targets):
            adapters += 1
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in names:
            adapters += _statements(node)
        elif isinstance(node, ast.ClassDef):
            adapters += sum(_statements(member) for member in node.body
                            if isinstance(member, ast.FunctionDef) and member.name in names)
    return {"own": _statements(tree) - adapters, "adapters": adapters}
