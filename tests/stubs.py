"""One line per function that is not written yet, instead of a traceback per test that reaches it.

On the bare handout most tests stop at a stub, ``raise NotImplementedError("Implement ...")`` in a
student module (``cs288_lm/*.py``). Plain ``pytest`` reports such a test as ``not implemented``
(``N`` in the progress line) rather than as a failure with its traceback, and lists at the end each
such function once, with how many tests reached it::

    cs288_lm/model.py:57 Linear.forward: not implemented yet (9 tests)

A failure that began there counts too: a ``pytest.warns`` that saw no warning because the stub
raised first, a stub's error sent back by a worker process, a check on a subprocess that stopped
at a stub (the check's message quotes the subprocess's traceback, e.g. its stderr). A test still
counts as failed for pytest's exit status, and every other failure (an assertion, a ``NotImplementedError`` raised
outside the student modules) keeps its full traceback. Under the grader (``tests/graded.py``
recording) nothing changes.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
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
    # Its qualified name (Python 3.10 and a worker process's traceback give the bare name).
    function: str = field(compare=False)

    def __str__(self) -> str:
        return f"{self.path}:{self.line} {self.function}: not implemented yet"


_stopped: dict[tuple[str, str], Stub] = {}  # (nodeid, phase) -> the stub it stopped at
# A frame of a traceback that another process sent as text (multiprocessing's RemoteTraceback, stderr).
REMOTE_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\S+)')
TRACEBACK_HEADER = "Traceback (most recent call last):"


def stub_of(error: BaseException | None, root: Path) -> Stub | None:
    """The student function where the failure ``error`` began, if it began with a ``NotImplementedError``
    raised directly in a student module: ``error`` itself, or what it was raised from or while handling
    (``pytest.warns`` that saw no warning, a worker process's error)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, NotImplementedError):
            stub = _raised_here(error, root) or _raised_in_a_worker(error, root)
            if stub is not None:
                return stub
        stub = _raised_in_a_subprocess(str(error), root)
        if stub is not None:
            return stub
        error = error.__cause__ or error.__context__
    return None


def _student_module(filename: str, root: Path) -> str | None:
    """The path of a student module file under ``root`` (e.g. ``cs288_lm/model.py``), else None."""
    try:
        relative = Path(filename).resolve().relative_to(root.resolve())
    except (ValueError, OSError):
        return None
    return relative.as_posix() if len(relative.parts) == 2 and relative.parts[0] == STUDENT_PACKAGE else None


def _raised_here(error: BaseException, root: Path) -> Stub | None:
    frame = error.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    if frame is None:
        return None
    code = frame.tb_frame.f_code
    path = _student_module(code.co_filename, root)
    # co_qualname is new in Python 3.11; students may run 3.10.
    return None if path is None else Stub(path, frame.tb_lineno, getattr(code, "co_qualname", code.co_name))


def _raised_in_a_worker(error: BaseException, root: Path) -> Stub | None:
    if type(error.__cause__).__name__ != "RemoteTraceback":
        return None
    frames = REMOTE_FRAME.findall(str(error.__cause__))
    path = _student_module(frames[-1][0], root) if frames else None
    return None if path is None else Stub(path, int(frames[-1][1]), frames[-1][2])


def _raised_in_a_subprocess(text: str, root: Path) -> Stub | None:
    """The stub where a traceback printed in ``text`` (a subprocess's stderr quoted by a failed check)
    began, if it ends in a ``NotImplementedError`` raised directly in a student module."""
    if TRACEBACK_HEADER not in text:
        return None
    for block in text.split(TRACEBACK_HEADER)[1:]:
        lines = [line for line in block.splitlines()[1:] if line.strip()]
        # pytest indents a multi-line assertion message: frames sit two spaces deeper than the block.
        margin = len(lines[0]) - len(lines[0].lstrip()) - 2 if lines else 0
        frames: list[tuple[str, str, str]] = []
        for line in lines:
            if line[margin:].startswith("  File "):
                frames += REMOTE_FRAME.findall(line)
            elif not line[margin : margin + 1].isspace():  # the exception line ends the block
                path = _student_module(frames[-1][0], root) if frames else None
                if line[margin:].startswith("NotImplementedError") and path is not None:
                    return Stub(path, int(frames[-1][1]), frames[-1][2])
                break
    return None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.failed and call.excinfo is not None and not graded.grading():
        stub = stub_of(call.excinfo.value, item.config.rootpath)
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
    named = {stub: max((s.function for s in _stopped.values() if s == stub), key=len) for stub in reached}
    terminalreporter.section("not implemented yet", sep="=", yellow=True)
    for stub, tests in sorted(reached.items()):
        terminalreporter.line(f"{Stub(stub.path, stub.line, named[stub])} ({tests} test{'s' if tests != 1 else ''})")
    stopped = len({nodeid for nodeid, _ in _stopped})
    shown = config.getoption("tbstyle", "auto") != "no"  # --tb=no shows no traceback at all
    others = (
        " The other failures are shown above with their tracebacks."
        if terminalreporter.stats.get("failed") and shown
        else ""
    )
    terminalreporter.line(f"{stopped} test{'s' if stopped != 1 else ''} stopped at one of these functions.{others}")
