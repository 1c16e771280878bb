"""``pytest --problem NAME``: the public tests of one problem of the assignment, exactly those that
its Gradescope entry counts.

The problems, their public test modules and a pattern on test names are in
``configs/grading.json`` (``"problems"``); a test belongs to the first problem that lists its module
and whose pattern its name matches (no pattern: every test of those modules). The grader assigns
tests to problems with the same function, :func:`problem_of`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

RULES_FILE = Path(__file__).resolve().parent.parent / "configs" / "grading.json"


def load_problems(path: Path = RULES_FILE) -> list[dict]:
    """The problems of ``configs/grading.json``, in order."""
    return json.loads(path.read_text(encoding="utf-8"))["problems"]


def function_name(nodeid: str) -> str:
    """``tests/test_model.py::test_rope_x[500.0]`` -> ``test_rope_x``."""
    return nodeid.split("::")[-1].split("[", 1)[0]


def problem_of(nodeid: str, problems: Sequence[Mapping]) -> str | None:
    """The first problem whose modules include the test's and whose pattern matches its name."""
    module = nodeid.split("::", 1)[0]
    for problem in problems:
        if module in problem["modules"] and re.search(problem.get("tests", ""), function_name(nodeid)):
            return problem["name"]
    return None


def selected(nodeids: Sequence[str], wanted: Sequence[str], problems: Sequence[Mapping]) -> list[bool]:
    """For each test, whether ``pytest --problem`` with the problems ``wanted`` runs it."""
    return [problem_of(nodeid, problems) in wanted for nodeid in nodeids]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--problem",
        action="append",
        metavar="NAME",
        help="run only the public tests of this problem of the assignment (as its Gradescope entry counts"
        " them; see configs/grading.json; any case: silu is SiLU); may be given several times",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wanted = config.getoption("problem")
    if not wanted:
        return
    problems = load_problems()
    names = [problem["name"] for problem in problems]
    by_folded_name = {name.casefold(): name for name in names}  # silu finds SiLU
    unknown = [name for name in wanted if name.casefold() not in by_folded_name]
    if unknown:
        raise pytest.UsageError(f"--problem: no problem named {', '.join(unknown)}; the problems: {', '.join(names)}")
    wanted = [by_folded_name[name.casefold()] for name in wanted]
    chosen = selected([item.nodeid for item in items], wanted, problems)
    config.hook.pytest_deselected(items=[item for item, keep in zip(items, chosen, strict=True) if not keep])
    items[:] = [item for item, keep in zip(items, chosen, strict=True) if keep]
