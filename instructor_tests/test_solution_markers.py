"""Solution markers: every block students write is fenced by ``# BEGIN SOLUTION`` / ``# END SOLUTION``.

The handout builder replaces a block inside a function body with ``raise NotImplementedError``
and deletes a block at module or class level (solution-only helpers). These checks keep the
markers well formed so that the handout can be built. They cover every Python file that goes to
students; the student modules are the files among them with markers (so a new module is covered
as soon as it has a block).
"""

from __future__ import annotations

import ast
import re

import pytest

from autograder.make_handout import REPO_ROOT, handout_files
from autograder.markers import BEGIN, END, student_modules

HANDOUT_PYTHON_FILES = [path for path in handout_files() if path.endswith(".py")]
STUDENT_MODULES = student_modules(REPO_ROOT, HANDOUT_PYTHON_FILES)


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


def test_student_modules_are_found():
    expected = {"cs288_lm/bpe.py", "cs288_lm/tokenizer.py", "cs288_lm/model.py", "cs288_lm/nn_utils.py"}
    assert expected <= set(STUDENT_MODULES)


@pytest.mark.parametrize("path", HANDOUT_PYTHON_FILES)
def test_markers_are_balanced_and_never_nested(path):
    assert marker_errors((REPO_ROOT / path).read_text(encoding="utf-8")) == []


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
