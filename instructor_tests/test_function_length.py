"""No function of the given code is longer than about 60 lines.

Given code is every tracked Python file outside the test folders: the package (student modules
included: their ``# BEGIN SOLUTION`` ... ``# END SOLUTION`` blocks do not count, since the handout
replaces them), the grader, the benchmarks, CI and the root scripts. A function's length runs from
its ``def`` to its last line, docstring and comments included.
"""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
LONGEST = 60
TEST_FOLDERS = ("tests/", "instructor_tests/", "autograder/hidden_tests/")


def given_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "*.py"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return [path for path in listed if not path.startswith(TEST_FOLDERS)]


def function_lengths(source: str) -> list[tuple[str, int, int]]:
    """(name, first line, length) of every function in ``source``, solution blocks left out."""
    lines = source.splitlines()
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        length, in_solution = 0, False
        for line in lines[node.lineno - 1 : node.end_lineno]:
            marker = line.strip()
            if marker.startswith("# BEGIN SOLUTION"):
                in_solution = True
            elif marker.startswith("# END SOLUTION"):
                in_solution = False
            elif not in_solution:
                length += 1
        found.append((node.name, node.lineno, length))
    return found


def test_no_given_function_is_longer_than_about_60_lines() -> None:
    too_long = [
        f"{path}:{line} {name} ({length} lines)"
        for path in given_files()
        for name, line, length in function_lengths((REPO_ROOT / path).read_text(encoding="utf-8"))
        if length > LONGEST
    ]
    assert not too_long, "split these functions: " + "; ".join(too_long)


def test_the_length_counts_the_given_lines_only() -> None:
    """A solution block does not count; everything else from ``def`` to the last line does."""
    body = "\n".join(f"    x{i} = {i}" for i in range(5))
    source = f'def f():\n    """Doc."""\n    # BEGIN SOLUTION\n{body}\n    # END SOLUTION\n    return 1\n'
    assert function_lengths(source) == [("f", 1, 3)]
    assert function_lengths("def g():\n" + body + "\n") == [("g", 1, 6)]
