"""Graded checks: what the tests assert about the values student code computes.

Run locally (plain ``pytest``), every helper here is an ordinary assertion: a failure stops the
test with a message that shows what differs.

Run by the autograder, the same helpers do not decide anything. The grader starts pytest with
the environment variable ``CS288_RECORD_FD`` naming a pipe; each helper then writes what it was
given as data (JSON, arrays as ``.npy`` bytes) to that pipe and lets the test go on. The grader
runs the same tests with the reference solution beforehand, and a trusted process that never
imports student code compares the two streams of values (the autograder's judge). Nothing that
happens inside the test process — an assertion that passes, a pytest report, an exit status — is
taken as evidence: a test passes only if the values it recorded are the reference's.

The helpers:

* ``check_close(actual, expected, rtol=, atol=)``: numbers, tensors or arrays (also nested in
  lists, tuples and dicts) close to ``expected`` elementwise, same shapes and dtypes. Graded
  against the reference solution's ``actual``; with ``against="expected"`` (values that depend on
  how an implementation draws random numbers, such as statistics of an initialisation) against
  the reference run's ``expected``.
* ``check_equal(actual, expected)``: the same, exactly (token ids, strings, bytes, shapes).
* ``pytest.raises(...)``: while grading, the exception raised (its classes and message) is
  recorded and judged against the reference run's ``pytest.raises`` arguments.
* ``time_limit(seconds)``: a block that must finish in time, timed by the grader's clock. While
  grading, the block starts only once the grader has acknowledged its start (a token on the pipe
  named by ``CS288_ACK_FD``), and its stop record carries that token.
* the ``numpy_snapshot`` fixture (``tests/snapshots.py``) records what it is given, and the grader
  compares it with its own copy of the snapshot.

Bare ``assert`` statements still work and still stop a test, but they are not evidence: every
test records at least one value through these helpers (the grader refuses tests that do not).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import select
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import pytest

RECORD_FD_ENV = "CS288_RECORD_FD"
ACK_FD_ENV = "CS288_ACK_FD"
# How long a timed block waits for the grader to acknowledge its start: generous, since a busy
# grader only delays the acknowledgement, never the verdict.
ACK_TIMEOUT_SECONDS = 120.0
# Bounds on what one value may take in the stream (the grader enforces its own caps as well).
MAX_STRING_CHARS = 1 << 20
MAX_INT_DIGITS = 40
MAX_DEPTH = 32
MAX_ARRAY_BYTES = 64 << 20


# ---------------------------------------------------------------------------------------------
# Values as data
# ---------------------------------------------------------------------------------------------


class UnrecordableValue(TypeError):
    """A value the graded checks cannot record as data (an object, a function, a generator)."""


def _array_record(array: np.ndarray, dtype_name: str) -> dict:
    if array.dtype == object:
        raise UnrecordableValue("arrays of Python objects cannot be recorded")
    if array.nbytes > MAX_ARRAY_BYTES:
        raise UnrecordableValue(f"an array of {array.nbytes} bytes is larger than {MAX_ARRAY_BYTES} bytes")
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return {"array": {"dtype": dtype_name, "npy": base64.b64encode(buffer.getvalue()).decode("ascii")}}


def encode(value: Any, depth: int = 0) -> Any:
    """``value`` as JSON data: tensors and arrays as ``.npy`` bytes, containers and scalars tagged.

    Tags keep apart what JSON would merge: a tuple from a list, an int from a float, bytes from
    str, a float NaN from a string.
    """
    if depth > MAX_DEPTH:
        raise UnrecordableValue(f"values nested deeper than {MAX_DEPTH} levels cannot be recorded")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if len(str(abs(value))) > MAX_INT_DIGITS:
            raise UnrecordableValue(f"integers longer than {MAX_INT_DIGITS} digits cannot be recorded")
        return {"int": str(value)}
    if isinstance(value, float):
        return {"float": repr(value)}
    if isinstance(value, str):
        if len(value) > MAX_STRING_CHARS:
            raise UnrecordableValue(f"strings longer than {MAX_STRING_CHARS} characters cannot be recorded")
        return {"str": value}
    if isinstance(value, (bytes, bytearray)):
        return {"bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, Path):
        return {"str": str(value)}
    if isinstance(value, np.generic):  # a numpy scalar is its Python number (int, float, bool)
        return encode(value.item(), depth)
    if isinstance(value, np.ndarray):
        return _array_record(value, str(value.dtype))
    torch = sys.modules.get("torch")
    if torch is not None:
        if isinstance(value, torch.Size):
            return {"tuple": [encode(int(v), depth + 1) for v in value]}
        if isinstance(value, torch.dtype):
            return {"str": str(value)}
        if isinstance(value, torch.Tensor):
            tensor = value.detach().cpu()
            if tensor.dtype in (torch.bfloat16, torch.float16):
                return _array_record(tensor.float().numpy(), str(tensor.dtype))
            return _array_record(tensor.resolve_conj().resolve_neg().numpy(), str(tensor.dtype))
    if isinstance(value, tuple):
        return {"tuple": [encode(v, depth + 1) for v in value]}
    if isinstance(value, list):
        return {"list": [encode(v, depth + 1) for v in value]}
    if isinstance(value, (set, frozenset)):
        items = [encode(v, depth + 1) for v in value]
        return {"set": sorted(items, key=lambda item: json.dumps(item, sort_keys=True))}
    if isinstance(value, Mapping):
        items = [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]
        return {"dict": sorted(items, key=lambda item: json.dumps(item[0], sort_keys=True))}
    raise UnrecordableValue(f"a {type(value).__name__} cannot be recorded; check the values it holds instead")


# ---------------------------------------------------------------------------------------------
# The record stream
# ---------------------------------------------------------------------------------------------


class _Stream:
    """The pipe to the grader, or nothing when the tests run locally."""

    def __init__(self) -> None:
        self.fd: int | None = None

    def open_from_environment(self) -> None:
        value = os.environ.get(RECORD_FD_ENV)
        self.fd = int(value) if value else None

    @property
    def grading(self) -> bool:
        return self.fd is not None

    def write(self, record: dict) -> None:
        data = (json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n").encode("utf-8")
        view, fd = memoryview(data), self.fd
        assert fd is not None, "records are written only while grading"
        while view:
            view = view[os.write(fd, view) :]


_stream = _Stream()


class GraderDidNotAcknowledge(RuntimeError):
    """The grader did not acknowledge the start of a timed block in time."""


class _Acks:
    """The grader's acknowledgements of timed blocks' starts: one token a line, in order."""

    def __init__(self) -> None:
        self.fd: int | None = None
        self._pending = b""

    def open_from_environment(self) -> None:
        value = os.environ.get(ACK_FD_ENV)
        self.fd = int(value) if value else None

    def next_token(self, timeout: float) -> str:
        """The next token, waiting up to ``timeout`` seconds for it."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._pending:
            remaining = deadline - time.monotonic()
            if self.fd is None or remaining <= 0:
                raise GraderDidNotAcknowledge(
                    f"the grader did not acknowledge the start of the timed block within {timeout:g} s"
                )
            if select.select([self.fd], [], [], remaining)[0]:
                chunk = os.read(self.fd, 4096)
                if not chunk:
                    raise GraderDidNotAcknowledge("the grader closed the acknowledgement pipe")
                self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        return line.decode("ascii", errors="replace")


_acks = _Acks()


def grading() -> bool:
    """Whether the tests run under the autograder (values are recorded, not asserted)."""
    return _stream.grading


def _site() -> str:
    """``file:line`` of the test code that made the check (for messages)."""
    frame: FrameType | None = sys._getframe(2)
    fallback = None
    while frame is not None:
        name = Path(frame.f_code.co_filename).name
        if name.startswith("test_") and name.endswith(".py"):
            fallback = fallback or frame
            if frame.f_code.co_name.startswith("test_"):
                fallback = frame
                break
        frame = frame.f_back
    if fallback is None:
        return "?"
    return f"{Path(fallback.f_code.co_filename).name}:{fallback.f_lineno}"


def record_check(kind: str, **fields: Any) -> None:
    """Write one check to the grader's stream (only while grading)."""
    _stream.write({"t": "check", "kind": kind, "site": _site(), **fields})


# ---------------------------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------------------------


def _local_values(value: Any) -> Any:
    """Tensors detached, for torch.testing's comparisons."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, (list, tuple)):
        return type(value)(_local_values(v) for v in value)
    if isinstance(value, Mapping):
        return {k: _local_values(v) for k, v in value.items()}
    return value


def check_close(
    actual: Any, expected: Any, *, rtol: float = 1e-5, atol: float = 1e-5, against: str = "reference"
) -> None:
    """``actual`` equals ``expected`` within ``atol + rtol * |expected|``, with the same shapes and dtypes.

    ``against="expected"``: the grader compares ``actual`` with the reference run's ``expected``
    rather than with the reference solution's ``actual`` (for values that may differ between
    correct implementations, like the statistics of randomly initialised weights).
    """
    __tracebackhide__ = True  # a failure shows the test's line, not this helper's body
    if against not in ("reference", "expected"):
        raise ValueError(f"against must be 'reference' or 'expected', not {against!r}")
    if _stream.grading:
        fields = {"actual": encode(actual), "rtol": rtol, "atol": atol, "against": against}
        if against == "expected":
            fields["expected"] = encode(expected)
        record_check("close", **fields)
        return
    import torch

    torch.testing.assert_close(
        _local_values(actual), _local_values(expected), rtol=rtol, atol=atol, equal_nan=True, check_device=False
    )


def check_equal(actual: Any, expected: Any, *, message: str = "", against: str = "reference") -> None:
    """``actual`` equals ``expected`` exactly (tensors: same dtype, shape and values).

    Locally a failure says ``message`` (the test's words) and then what differs."""
    __tracebackhide__ = True  # a failure shows the test's line, not this helper's body
    if against not in ("reference", "expected"):
        raise ValueError(f"against must be 'reference' or 'expected', not {against!r}")
    if _stream.grading:
        fields = {"actual": encode(actual), "against": against}
        if against == "expected":
            fields["expected"] = encode(expected)
        record_check("equal", **fields)
        return
    actual = actual.item() if isinstance(actual, np.generic) else actual
    torch = sys.modules.get("torch")
    if torch is not None and (isinstance(actual, torch.Tensor) or isinstance(expected, torch.Tensor)):
        torch.testing.assert_close(
            _local_values(actual),
            _local_values(expected),
            rtol=0,
            atol=0,
            equal_nan=True,
            msg=lambda summary: _failure(message, summary),
        )
        return
    if isinstance(actual, np.ndarray) or isinstance(expected, np.ndarray):
        np.testing.assert_array_equal(actual, expected, err_msg=message)
        return
    number = (bool, int, float)
    if isinstance(actual, number) and isinstance(expected, number) and type(actual) is not type(expected):
        # The grader compares Python scalars by type too: 24.0 is not the count 24.
        summary = f"{_short(actual)} is a {type(actual).__name__}, expected a {type(expected).__name__}"
        raise AssertionError(_failure(message, summary))
    if actual != expected:
        raise AssertionError(_failure(message, f"got {_short(actual)}, expected {_short(expected)}"))


def _failure(message: str, summary: str) -> str:
    """A failed check's text: the test's own words first, then what differs."""
    return f"{message}\n{summary}" if message else summary


def _short(value: Any, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """The block must finish within ``seconds`` (timed by the grader's own clock when grading).

    While grading, the block runs only after the grader has acknowledged the start record: the
    grader times it from the record before the start to the record after the stop (the stop
    carries the grader's token), so the block's time includes everything up to the next check.
    """
    if _stream.grading:
        record_check("timer_start")
        token = _acks.next_token(ACK_TIMEOUT_SECONDS)
        yield
        record_check("timer_stop", limit=seconds, token=token)
        return
    start = time.perf_counter()
    yield
    elapsed = time.perf_counter() - start
    assert elapsed < seconds, f"took {elapsed:.2f} s; the limit is {seconds:g} s"


# ---------------------------------------------------------------------------------------------
# pytest.raises, recorded
# ---------------------------------------------------------------------------------------------


def _class_names(exception_type: type) -> list[str]:
    return [f"{cls.__module__}.{cls.__qualname__}" for cls in exception_type.__mro__]


class _RecordedRaises:
    """``pytest.raises`` as a context manager that records what was raised."""

    def __init__(self, raises: Any, expected: Any, match: str | None) -> None:
        self._inner, self._match = raises, match
        expected = expected if isinstance(expected, tuple) else (expected,)
        self._expected = [f"{cls.__module__}.{cls.__qualname__}" for cls in expected]

    def __enter__(self) -> Any:
        return self._inner.__enter__()

    def __exit__(self, exc_type, exc_value, traceback) -> bool:
        record_check(
            "raises",
            expected=self._expected,
            match=self._match,
            raised=_class_names(exc_type) if exc_type is not None else None,
            message=str(exc_value)[:4000] if exc_value is not None else None,
        )
        return self._inner.__exit__(exc_type, exc_value, traceback)


def _recording_raises(real_raises):
    def raises(expected_exception, *args, **kwargs):
        if args:  # the function-call form: pytest.raises(E, func, *args)
            function, *call_args = args
            with raises(expected_exception, **kwargs) as info:
                function(*call_args)
            return info
        return _RecordedRaises(real_raises(expected_exception, **kwargs), expected_exception, kwargs.get("match"))

    return raises


# ---------------------------------------------------------------------------------------------
# The plugin (registered by the root conftest.py)
# ---------------------------------------------------------------------------------------------


class _Outcomes:
    """Each test's phases, so that its end record says how the whole test went."""

    def __init__(self) -> None:
        self.failed: dict[str, tuple[str, str]] = {}  # nodeid -> (one line, the report's tail)
        self.skipped: set[str] = set()


_outcomes = _Outcomes()


def pytest_configure(config: pytest.Config) -> None:
    _stream.open_from_environment()
    _acks.open_from_environment()
    if _stream.grading:
        pytest.raises = _recording_raises(pytest.raises)


def pytest_runtest_logstart(nodeid: str, location) -> None:
    if _stream.grading:
        _stream.write({"t": "start", "test": nodeid})


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if not _stream.grading:
        return
    if report.failed and report.nodeid not in _outcomes.failed:
        crash = getattr(report.longrepr, "reprcrash", None)
        line = crash.message if crash is not None else (report.longreprtext.strip().splitlines() or [""])[-1]
        _outcomes.failed[report.nodeid] = (f"{report.when}: {line}", report.longreprtext[-3000:])
    if report.skipped:
        _outcomes.skipped.add(report.nodeid)
    if report.when == "teardown":
        record = {"t": "end", "test": report.nodeid, "outcome": "passed", "message": ""}
        if report.nodeid in _outcomes.failed:
            line, details = _outcomes.failed[report.nodeid]
            record.update(outcome="failed", message=line[:2000], report=details)
        elif report.nodeid in _outcomes.skipped:
            record["outcome"] = "skipped"
        _stream.write(record)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if _stream.grading and report.failed:
        crash = getattr(report.longrepr, "reprcrash", None)
        text = crash.message if crash is not None else str(report.longrepr)
        _stream.write({"t": "collect_error", "test": report.nodeid, "message": text[-2000:]})
