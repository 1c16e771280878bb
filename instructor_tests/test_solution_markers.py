"""Solution markers: every block students write is fenced by ``# BEGIN SOLUTION`` / ``# END SOLUTION``.

The handout builder replaces a block inside a function body with ``raise NotImplementedError``
and deletes a block at module or class level (solution-only helpers). These checks keep the
markers well formed so that the handout can be built.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"
STUDENT_MODULES = [
    "cs288_lm/bpe.py",
    "cs288_lm/tokenizer.py",
    "cs288_lm/model.py",
    "cs288_lm/nn_utils.py",
    "cs288_lm/optimizer.py",
    "cs288_lm/data.py",
    "cs288_lm/checkpointing.py",
]


def python_files() -> list[Path]:
    skip = {".venv", "dist", "build", ".git", "__pycache__"}
    return sorted(p for p in REPO_ROOT.rglob("*.py") if not skip.intersection(p.relative_to(REPO_ROOT).parts))


def marker_errors(source: str) -> list[str]:
    """Problems with the markers of one file: unbalanced, nested, or text on the marker lines."""
    errors, open_line = [], None
    for number, line in enumerate(source.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith(BEGIN):
            if open_line is not None:
                errors.append(f"line {number}: BEGIN SOLUTION nested inside the block opened on line {open_line}")
            open_line = number
        elif stripped.startswith(END):
            if open_line is None:
                errors.append(f"line {number}: END SOLUTION without BEGIN SOLUTION")
            open_line = None
        elif re.search(r"#\s*(BEGIN|END)\s+SOLUTION", stripped, re.IGNORECASE):
            errors.append(f"line {number}: malformed marker {stripped!r}")
    if open_line is not None:
        errors.append(f"line {open_line}: BEGIN SOLUTION never closed")
    return errors


def test_marker_checker_finds_problems():
    assert marker_errors(f"{BEGIN}\nx = 1\n{END}\n") == []
    assert marker_errors(f"{BEGIN}\n{BEGIN}\n{END}\n{END}\n")[0].startswith("line 2: BEGIN SOLUTION nested")
    assert marker_errors(f"{END}\n") == ["line 1: END SOLUTION without BEGIN SOLUTION"]
    assert marker_errors(f"{BEGIN}\nx = 1\n") == ["line 1: BEGIN SOLUTION never closed"]
    assert marker_errors("# begin solution\n") == ["line 1: malformed marker '# begin solution'"]


@pytest.mark.parametrize("path", python_files(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_markers_are_balanced_and_never_nested(path):
    if path == Path(__file__).resolve():
        return  # this file spells the markers out in its own checks
    assert marker_errors(path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("module", STUDENT_MODULES)
def test_student_modules_have_solution_blocks_with_docstrings_outside(module):
    source = (REPO_ROOT / module).read_text(encoding="utf-8")
    assert source.count(BEGIN) >= 1
    tree = ast.parse(source)
    lines = source.splitlines()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = lines[node.lineno - 1 : node.end_lineno]
            has_block = any(line.strip().startswith(BEGIN) for line in body)
            if has_block and not node.name.startswith("_"):
                # A function students implement keeps its docstring, which is their specification.
                docstring = ast.get_docstring(node)
                assert docstring, f"{module}:{node.lineno} {node.name} has a solution block but no docstring"
                first_marker = next(i for i, line in enumerate(body) if line.strip().startswith(BEGIN))
                assert node.body[0].end_lineno - node.lineno < first_marker, f"{node.name}: docstring inside the block"
