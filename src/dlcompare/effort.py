"""Coding effort: statements of a framework's implementation file, as its model, its training loop and its adapters.

Each framework file names, in `HARNESS_ADAPTERS`, the functions, classes and
methods that exist only to plug it into dlcompare's shared harness: canonical
weight names, the shared batches, the conventions every framework is held to
(Keras' Adam epsilon, the biased batch-norm variance), the equivalence tests'
one-step and forward hooks. A user of that framework alone would not write
them, so they are counted apart from the implementation's own statements.

The file's own code is split by two section lines it must hold, in this order:
`# ---- model` (the network: layers, blocks, the presets) and `# ---- training`
(optimiser, loop, saving, loading). Statements above the first (imports,
constants) count with the training loop. A name in `HARNESS_ADAPTERS` that the
file does not define, or a missing section line, is an error: either would
otherwise move statements silently from one count to another.
"""

from __future__ import annotations

import ast
from pathlib import Path

MARKER = "HARNESS_ADAPTERS"
SECTIONS = ("# ---- model", "# ---- training")


def _is_docstring(node: ast.stmt) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def _statements(node: ast.AST) -> int:
    """Statements in `node` (a compound statement's header counts once), docstrings excluded."""
    return sum(1 for child in ast.walk(node) if isinstance(child, ast.stmt) and not _is_docstring(child))


def _is_marker(node: ast.stmt) -> bool:
    return isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == MARKER for t in node.targets)


def _adapter_names(tree: ast.Module) -> set[str]:
    for node in tree.body:
        if _is_marker(node):
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


def _section_lines(path: Path, source: str) -> tuple[int, int]:
    """The line numbers of the file's two section lines (see the module docstring)."""
    found = {}
    for number, line in enumerate(source.splitlines(), start=1):
        for section in SECTIONS:
            if line.startswith(section):
                if section in found:
                    raise ValueError(f"{path}: two '{section}' section lines (lines {found[section]} and {number})")
                found[section] = number
    missing = [section for section in SECTIONS if section not in found]
    if missing:
        raise ValueError(f"{path}: no '{missing[0]}' section line; every framework file marks its model and its training "
                         "loop (dlcompare/effort.py)")
    model, training = (found[section] for section in SECTIONS)
    if training < model:
        raise ValueError(f"{path}: '{SECTIONS[1]}' (line {training}) comes before '{SECTIONS[0]}' (line {model})")
    return model, training


def _adapter_statements(node: ast.stmt, names: set[str]) -> int:
    """Statements of the top-level `node` that are adapters: the marker itself, a named definition, named methods."""
    if _is_marker(node):
        return 1
    if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in names:
        return _statements(node)
    if isinstance(node, ast.ClassDef):
        return sum(_statements(member) for member in node.body if isinstance(member, ast.FunctionDef) and member.name in names)
    return 0


def coding_effort(path: Path) -> dict[str, int]:
    """{"model": the network's own statements, "training_loop": every other own statement, "adapters": statements
    that plug the file into the harness}.

    Statements, not physical lines: physical lines would reward long lines and
    punish readable wrapping; a statement count measures what was written.
    """
    source = Path(path).read_text()
    tree = ast.parse(source)
    names = _adapter_names(tree)
    unknown = sorted(names - _defined_names(tree))
    if unknown:
        raise ValueError(f"{path}: {MARKER} names {', '.join(unknown)}, which the file does not define")
    model_line, training_line = _section_lines(path, source)
    counts = {"model": 0, "training_loop": 0, "adapters": 0}
    for node in tree.body:
        if _is_docstring(node):
            continue
        adapters = _adapter_statements(node, names)
        own = "model" if model_line < node.lineno < training_line else "training_loop"
        counts["adapters"] += adapters
        counts[own] += _statements(node) - adapters
    return counts
