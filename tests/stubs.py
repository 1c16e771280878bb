"""One line per function that is not written yet, instead of a traceback per test that reaches it.

On the bare handout most tests stop at a stub, ``raise NotImplementedError("Implement ...")`` in a
student module (``cs288_lm/*.py``). Plain ``pytest`` reports such a test as ``not implemented``
(``N`` in the progress line) rather than as a failure with its traceback, and lists at the end each
such function once, with how many tests reached it::

    cs288_lm/model.py:57 Linear.forward: not implemented yet (9 tests)

A test still counts as failed for pytest's exit status, and every other failure (an assertion, a
``NotImplementedError`` raised outside the student modules) keeps its full traceback. Under the
grader (``tests/graded.py`` recording) nothing changes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import graded

STUDENT_PACKAGE = "cs288_lm"  # student modules are the files directly in it
CATEGORY = "not implemented"


@dataclass(frozen=True, order=True)
class Stub:
    """Where a test stopped: a function of a student module that raised ``NotImplementedError``."""

    path: str
    line: int
    function: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line} {self.function}: not implemented yet"


_stopped: dict[tuple[str, str], Stub] = {}  # (nodeid, phase) -> the stub it stopped at


def stub_of(excinfo: pytest.ExceptionInfo, root: Path) -> Stub | None:
    """The student function that raised ``excinfo``, if it is a ``NotImplementedError`` raised directly
    in a student module."""
    if not excinfo.errisinstance(NotImplementedError) or not excinfo.traceback:
        return None
    entry = excinfo.traceback[-1]  # the frame that raised it
    try:
        relative = Path(entry.path).resolve().relative_to(root.resolve())
    except ValueError:
        return None
    if len(relative.parts) != 2 or relative.parts[0] != STUDENT_PACKAGE:
        return None
    code = entry.frame.code.raw
    return Stub(relative.as_posix(), entry.lineno + 1, getattr(code, "co_qualname", code.co_name))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.failed and call.excinfo is not None and not graded.grading():
        stub = stub_of(call.excinfo, item.config.rootpath)
        if stub is not None:
            _stopped[(report.nodeid, report.when)] = stub
    return report


@pytest.hookimpl(tryfirst=True)
def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config):
    if (report.nodeid, report.when) in _stopped:
        return CATEGORY, "N", ("NOT IMPLEMENTED", {"yellow": True})
    return None


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    reached = Counter(_stopped.values())
    if not reached:
        return
    terminalreporter.section("not implemented yet", sep="=", yellow=True)
    for stub, tests in sorted(reached.items()):
        terminalreporter.line(f"{stub} ({tests} test{'s' if tests != 1 else ''})")
    stopped = len({nodeid for nodeid, _ in _stopped})
    others = " The other failures are shown above with their tracebacks." if terminalreporter.stats.get("failed") else ""
    terminalreporter.line(f"{stopped} test{'s' if stopped != 1 else ''} stopped at one of these functions.{others}")
