"""The trusted judge: decide each test from the values it recorded, never from its own verdict.

A test process run by the grader writes a stream of JSON lines (``tests/graded.py``): ``start``
and ``end`` of each test, and one ``check`` per graded value. The reference solution's stream for
the same tests, made when the grading bundle was built, is the oracle. A test passes when

* the test process said it passed (it can only hurt itself by saying otherwise),
* it recorded the same checks, in the same order, as the reference run, and
* every check agrees: values close to (or equal to) the reference solution's, snapshots close
  to the grader's own copy, the exception the reference run expected raised with a matching
  message, timed blocks within their limit by the grader's clock.

This module runs in the grader and never imports student code. Everything it reads from a
submission's stream is untrusted data: parsed with caps, never unpickled. A check's line is kept
as bytes and parsed only when it is judged, one at a time, so that the grader's memory stays
near the stream's size; any error while reading or judging a value fails that test only.
"""

from __future__ import annotations

import ast
import base64
import binascii
import io
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autograder.sandbox import Record, TimerStart

MAX_LINE_BYTES = 96 << 20
MAX_OTHER_LINE_BYTES = 1 << 20  # start, end and collection-error lines (a capped report at most)
# Caps per stream and per test, far above what the reference solution records (at most 117 tests
# in a module, 780 checks and about 230,000 values in a test).
MAX_TESTS = 20_000
MAX_NODEID_CHARS = 4096
MAX_CHECKS_PER_TEST = 20_000
MAX_VALUES_PER_TEST = 3_000_000
MAX_MESSAGE_CHARS = 300
SHOWN_VALUE_CHARS = 200
CHECK_PREFIX = b'{"t":"check",'  # how tests/graded.py begins a check line
RECORD_TYPES = ("start", "check", "end", "collect_error")  # every record tests/graded.py writes
NOT_ACKNOWLEDGED = "the timed block did not wait for the grader"


class BadRecord(ValueError):
    """A record that is not what ``tests/graded.py`` writes."""


@dataclass
class TestRun:
    """What one test recorded: its check lines (unparsed, with the grader's arrival times) and how it ended."""

    nodeid: str
    records: list[Record] = field(default_factory=list)
    values: int = 0  # the values its check lines hold, counted as the JSON separators that begin them
    outcome: str | None = None  # passed / failed / skipped; None: it never ended
    ended: float | None = None  # arrival of its end line (the grader's clock)
    # arrival of the last known line before its start line (the previous test's end, say)
    opened_after: float | None = None
    message: str = ""
    report: str = ""  # the end of pytest's report of a failure (shown to instructors, never judged)
    corrupt: str | None = None  # why its records cannot be read

    @property
    def checks(self) -> list[dict]:
        """Its checks, parsed (for trusted streams: the reference run's)."""
        return [check_of(record) for record in self.records]

    def add_check(self, record: Record) -> None:
        """Keep a check line, unless the test already holds as many checks or values as a test may."""
        values = count_values(record.line)
        if len(self.records) >= MAX_CHECKS_PER_TEST or self.values + values > MAX_VALUES_PER_TEST:
            self.corrupt = self.corrupt or (
                f"more than {MAX_CHECKS_PER_TEST} checks or {MAX_VALUES_PER_TEST} values in one test"
            )
            return
        self.records.append(record)
        self.values += values


@dataclass(frozen=True)
class Stream:
    """A test process's records, by test, in the order the tests ran."""

    tests: dict[str, TestRun]
    collect_errors: list[str]

    @property
    def unfinished(self) -> str | None:
        """The test that was running when the process stopped, if any."""
        running = [run.nodeid for run in self.tests.values() if run.outcome is None]
        return running[-1] if running else None


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reason: str = ""


def count_values(line: bytes) -> int:
    """An upper bound on the JSON values in ``line``: every value but the first follows one of these."""
    return 1 + sum(line.count(separator) for separator in (b",", b":", b"[", b"{"))


def _json_line(line: bytes, max_bytes: int = MAX_LINE_BYTES) -> dict:
    if len(line) > max_bytes:
        raise BadRecord(f"a record of {len(line)} bytes")
    try:
        record = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise BadRecord(f"unreadable record ({type(error).__name__})") from None
    if not isinstance(record, dict) or not isinstance(record.get("t"), str):
        raise BadRecord("a record that is not an object with a type")
    return record


def check_of(record: Record) -> dict:
    """A check line, parsed."""
    if count_values(record.line) > MAX_VALUES_PER_TEST:
        raise BadRecord(f"more than {MAX_VALUES_PER_TEST} values in one record")
    data = _json_line(record.line)
    if data["t"] != "check":
        raise BadRecord("a check line that is not a check")
    return data


def parse_stream(records: Iterable[Record]) -> Stream:
    """Group the records of a test process by test; a damaged record marks its test corrupt.

    Check lines are kept unparsed (they are parsed when judged); other lines are small.
    """
    tests: dict[str, TestRun] = {}
    collect_errors: list[str] = []
    current: TestRun | None = None
    last_known: float | None = None  # arrival of the last line that is a record graded.py writes
    for record in records:
        if record.line.startswith(CHECK_PREFIX):
            if current is not None and current.outcome is None:
                current.add_check(record)
            last_known = record.received
            continue
        try:
            data = _json_line(record.line, MAX_OTHER_LINE_BYTES)
            if data["t"] not in RECORD_TYPES:
                raise BadRecord(f"a record of unknown type {data['t'][:20]!r}")
        except BadRecord as error:
            if current is not None:
                current.corrupt = current.corrupt or str(error)
            continue
        opened_after, last_known = last_known, record.received
        kind = data["t"]
        if kind == "start" and isinstance(data.get("test"), str):
            nodeid = data["test"]
            # A test id seen twice is a forged stream: keep the first run, mark it corrupt.
            if nodeid in tests:
                tests[nodeid].corrupt = "the test was reported twice"
                current = None
                continue
            if len(tests) >= MAX_TESTS or len(nodeid) > MAX_NODEID_CHARS:
                current = None  # what it records goes nowhere: a test of the reference never runs this way
                continue
            current = tests[nodeid] = TestRun(nodeid, opened_after=opened_after)
        elif kind == "check" and current is not None and current.outcome is None:
            current.add_check(record)
        elif kind == "end" and current is not None and data.get("test") == current.nodeid:
            outcome = data.get("outcome")
            current.outcome = outcome if outcome in ("passed", "failed", "skipped") else "failed"
            current.ended = record.received
            message = data.get("message")
            current.message = message[:MAX_MESSAGE_CHARS] if isinstance(message, str) else ""
            report = data.get("report")
            current.report = report[-3000:] if isinstance(report, str) else ""
            current = None
        elif kind == "collect_error" and tests:
            # pytest collects before any test runs: a collection error after a start is forged
            if current is not None:
                current.corrupt = current.corrupt or "a collection error in the middle of a test"
        elif kind == "collect_error":
            message = data.get("message")
            collect_errors.append(message[-MAX_MESSAGE_CHARS:] if isinstance(message, str) else "collection error")
    return Stream(tests, collect_errors)


# ---------------------------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Array:
    """A recorded tensor or array: its dtype name as the test saw it (e.g. torch.bfloat16) and values."""

    dtype: str
    values: np.ndarray


def decode(value: Any, depth: int = 0) -> Any:
    """A recorded value back as Python data and numpy arrays (the inverse of ``graded.encode``)."""
    if depth > 40:
        raise BadRecord("a value nested too deep")
    if value is None or isinstance(value, bool):
        return value
    if not isinstance(value, dict) or len(value) != 1:
        raise BadRecord("a value that is not tagged")
    ((tag, content),) = value.items()
    if tag == "int" and isinstance(content, str) and len(content) <= 50:
        try:
            return int(content)
        except ValueError:
            raise BadRecord("an int that is not one") from None
    if tag == "float" and isinstance(content, str) and len(content) <= 50:
        try:
            return float(content)
        except ValueError:
            raise BadRecord("a float that is not one") from None
    if tag == "str" and isinstance(content, str):
        return content
    if tag == "bytes" and isinstance(content, str):
        try:
            return base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError):
            raise BadRecord("bytes that are not base64") from None
    if tag in ("tuple", "list", "set") and isinstance(content, list):
        items = [decode(item, depth + 1) for item in content]
        return tuple(items) if tag == "tuple" else ("set", tuple(items)) if tag == "set" else items
    if tag == "dict" and isinstance(content, list):
        pairs = []
        for pair in content:
            if not isinstance(pair, list) or len(pair) != 2:
                raise BadRecord("a dict item that is not a pair")
            pairs.append((decode(pair[0], depth + 1), decode(pair[1], depth + 1)))
        return ("dict", tuple(pairs))
    if tag == "array" and isinstance(content, dict):
        return _decode_array(content)
    raise BadRecord(f"an unknown value tag {tag[:20]!r}")


def _decode_array(content: dict) -> Array:
    dtype, npy = content.get("dtype"), content.get("npy")
    if not isinstance(dtype, str) or not isinstance(npy, str) or len(dtype) > 40:
        raise BadRecord("an array without dtype or data")
    try:
        data = base64.b64decode(npy, validate=True)
    except (binascii.Error, ValueError):
        raise BadRecord("an array that is not base64") from None
    return Array(dtype, read_npy(data))


def read_npy(data: bytes) -> np.ndarray:
    """The numeric array of ``.npy`` bytes, its header checked against the bytes before any array is built."""
    buffer = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(buffer)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(buffer, max_header_size=10_000)
        elif version == (2, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(buffer, max_header_size=10_000)
        else:
            raise BadRecord(f"an array in .npy format version {version}")
    except (ValueError, OSError, EOFError, SyntaxError) as error:
        raise BadRecord(f"an array that cannot be read ({type(error).__name__})") from None
    if dtype.hasobject or dtype.kind not in "biufc":
        raise BadRecord("an array that is not numeric")
    if any(not isinstance(size, int) or size < 0 for size in shape):
        raise BadRecord("an array with a negative size")
    count = math.prod(shape)
    held = len(data) - buffer.tell()
    if count * dtype.itemsize != held:
        raise BadRecord(f"an array whose header declares {count * dtype.itemsize} bytes where it holds {held}")
    values = np.frombuffer(data, dtype=dtype, count=count, offset=buffer.tell()) if count else np.empty(0, dtype)
    return values.reshape(shape, order="F" if fortran_order else "C")


def _is_tagged(value: Any, tag: str) -> bool:
    """Whether ``value`` is a decoded dict (``("dict", pairs)``) or set (``("set", items)``)."""
    if not (isinstance(value, tuple) and len(value) == 2 and value[0] == tag and isinstance(value[1], tuple)):
        return False
    return tag != "dict" or all(isinstance(pair, tuple) and len(pair) == 2 for pair in value[1])


def _readable(value: Any) -> str:
    if isinstance(value, Array):
        return f"{value.dtype} {list(value.values.shape)} {np.array2string(value.values, threshold=8, edgeitems=2)}"
    if _is_tagged(value, "dict"):
        return "{" + ", ".join(f"{_readable(key)}: {_readable(item)}" for key, item in value[1]) + "}"
    if _is_tagged(value, "set"):
        return "{" + ", ".join(_readable(item) for item in value[1]) + "}" if value[1] else "set()"
    if isinstance(value, (list, tuple)):
        inner = ", ".join(_readable(item) for item in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner}{',' if len(value) == 1 else ''})"
    return repr(value)


def _shown(value: Any) -> str:
    text = " ".join(_readable(value).split())
    return text if len(text) <= SHOWN_VALUE_CHARS else text[: SHOWN_VALUE_CHARS - 3] + "..."


# Where in a recorded value a difference lies: one step per level, "[2]" (an item) or "['key']" (a dict's).
Place = tuple[str, ...]


def difference(actual: Any, reference: Any, rtol: float | None, atol: float | None) -> str | None:
    """Why ``actual`` is not ``reference`` (exactly, or within tolerance when given); None if it is.

    A difference inside a container names its place: ``item [1]['logits']: ...``."""
    found = _difference(actual, reference, rtol, atol, ())
    if found is None:
        return None
    place, problem = found
    return f"item {''.join(place)}: {problem}" if place else problem


def _difference(
    actual: Any, reference: Any, rtol: float | None, atol: float | None, place: Place
) -> tuple[Place, str] | None:
    """Where and why ``actual`` is not ``reference``; None if it is."""
    if isinstance(reference, Array) or isinstance(actual, Array):
        if not (isinstance(reference, Array) and isinstance(actual, Array)):
            return place, f"got {_shown(actual)} where the reference has {_shown(reference)}"
        found = _array_difference(actual, reference, rtol, atol)
        return None if found is None else (place, found)
    if type(actual) is not type(reference):
        return place, (
            f"got a {type(actual).__name__} ({_shown(actual)})"
            f" where the reference has a {type(reference).__name__} ({_shown(reference)})"
        )
    if _is_tagged(reference, "dict") and _is_tagged(actual, "dict"):
        return _dict_difference(actual[1], reference[1], rtol, atol, place)
    if _is_tagged(reference, "set") and _is_tagged(actual, "set"):
        if _difference(list(actual[1]), list(reference[1]), rtol, atol, ()) is None:
            return None
        return place, f"got the set {_shown(actual)} where the reference has {_shown(reference)}"
    if isinstance(reference, (list, tuple)):
        if len(actual) != len(reference):
            return place, (
                f"got {len(actual)} items where the reference has {len(reference)}:"
                f" {_shown(actual)} vs {_shown(reference)}"
            )
        for index, (a, r) in enumerate(zip(actual, reference, strict=True)):
            if inner := _difference(a, r, rtol, atol, (*place, f"[{index}]")):
                return inner
        return None
    if isinstance(reference, float) and rtol is not None and atol is not None:
        if np.isnan(reference) and np.isnan(actual):
            return None
        if abs(actual - reference) <= atol + rtol * abs(reference) or actual == reference:
            return None
        return place, f"got {actual!r} where the reference has {reference!r} (atol {atol:g}, rtol {rtol:g})"
    if isinstance(reference, float) and np.isnan(reference) and np.isnan(actual):
        return None
    if actual != reference:
        return place, f"got {_shown(actual)} where the reference has {_shown(reference)}"
    return None


def _dict_difference(
    actual: tuple, reference: tuple, rtol: float | None, atol: float | None, place: Place
) -> tuple[Place, str] | None:
    """Dicts as their (key, value) pairs in the recorded order: the keys first, then each value by key."""
    keys, reference_keys = [key for key, _ in actual], [key for key, _ in reference]
    if _difference(keys, reference_keys, None, None, ()) is not None:
        return place, f"got the keys {_shown(keys)} where the reference has {_shown(reference_keys)}"
    for (key, a), (_, r) in zip(actual, reference, strict=True):
        found = _difference(a, r, rtol, atol, (*place, f"[{_shown(key)}]"))
        if found:
            return found
    return None


def _array_difference(actual: Array, reference: Array, rtol: float | None, atol: float | None) -> str | None:
    if actual.dtype != reference.dtype:
        return f"dtype {actual.dtype} where the reference has {reference.dtype}"
    if actual.values.shape != reference.values.shape:
        return f"shape {tuple(actual.values.shape)} where the reference has {tuple(reference.values.shape)}"
    a, r = actual.values, reference.values
    if rtol is None or atol is None or a.dtype.kind in "biu":
        bad = ~((a == r) | (np.isnan(a) & np.isnan(r)) if a.dtype.kind in "fc" else (a == r))
    else:
        with np.errstate(all="ignore"):
            bad = ~np.isclose(
                a.astype(np.complex128 if a.dtype.kind == "c" else np.float64), r, rtol=rtol, atol=atol, equal_nan=True
            )
    if not bad.any():
        return None
    index = tuple(int(i) for i in np.argwhere(bad)[0])
    tolerance = "" if rtol is None else f" (atol {atol:g}, rtol {rtol:g})"
    return (
        f"{int(bad.sum())} of {bad.size} values differ from the reference{tolerance}; "
        f"first at index {index}: got {a[index].item()!r}, reference {r[index].item()!r}"
    )


# ---------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------

SnapshotLoader = Callable[[str], "dict[str, np.ndarray] | None"]


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRecord(f"the reference's {name} is not a number")
    return float(value)


def judge_check(check: dict, reference: dict, snapshot: SnapshotLoader, elapsed: float | None) -> str | None:
    """Why ``check`` (from the submission) does not agree with ``reference``; None if it does."""
    kind = reference["kind"]
    if kind in ("close", "equal"):
        expected = decode(reference["expected"] if reference.get("against") == "expected" else reference["actual"])
        rtol = _number(reference["rtol"], "rtol") if kind == "close" else None
        atol = _number(reference["atol"], "atol") if kind == "close" else None
        return difference(decode(check.get("actual")), expected, rtol, atol)
    if kind == "snapshot":
        stored = snapshot(reference["name"])
        if stored is None:
            return f"the grader has no snapshot {reference['name']!r}"
        actual = decode(check.get("arrays"))
        expected = ("dict", tuple((key, Array(str(stored[key].dtype), stored[key])) for key in sorted(stored)))
        if not (isinstance(actual, tuple) and actual[:1] == ("dict",)):
            return "the snapshot check recorded no arrays"
        actual = ("dict", tuple(sorted(actual[1], key=lambda pair: str(pair[0]))))
        found = _difference(
            actual, expected, _number(reference["rtol"], "rtol"), _number(reference["atol"], "atol"), ()
        )
        if found is None:
            return None
        place, problem = found
        # The first step is the array's key ("['name']"); a snapshot of one array names none.
        array = f", array {place[0][1:-1]}" if place and len(expected[1]) > 1 else ""
        return f"snapshot {reference['name']!r}{array}: {problem}"
    if kind == "raises":
        raised, message = check.get("raised"), check.get("message")
        wanted = " or ".join(name.rsplit(".", 1)[-1] for name in reference["expected"])
        if not isinstance(raised, list) or not raised:
            return f"expected {wanted} to be raised; nothing was raised"
        if not any(name in raised for name in reference["expected"]):
            return (
                f"expected {wanted}; got {str(raised[0]).rsplit('.', 1)[-1][:80]}: {str(message)[:MAX_MESSAGE_CHARS]}"
            )
        pattern = reference.get("match")
        if pattern is not None and not (isinstance(message, str) and re.search(pattern, message)):
            return f"{wanted} raised, but its message {str(message)[:MAX_MESSAGE_CHARS]!r} does not match {pattern!r}"
        return None
    if kind == "timer_start":
        return None
    if kind == "timer_stop":
        limit = _number(reference["limit"], "limit")
        if elapsed is None:
            return "a timed block without a start"
        return None if elapsed <= limit else f"took {elapsed:.2f} s by the grader's clock; the limit is {limit:g} s"
    raise BadRecord(f"the reference has an unknown check {kind!r}")


def judge_test(
    run: TestRun | None, reference: TestRun, snapshot: SnapshotLoader, messages: Mapping[str, str] | None = None
) -> Verdict:
    """The verdict on one test: the submission's run against the reference run.

    ``messages`` (from :func:`check_messages`): the test's own words for a check, by the reference
    run's site of the check; a failed check's reason starts with them."""
    if run is None:
        return Verdict(False, "did not run (the test process stopped before it)")
    if run.corrupt:
        return Verdict(False, f"its records are damaged: {run.corrupt}")
    if run.outcome is None:
        return Verdict(False, "did not finish (the test process stopped during it)")
    if run.outcome != "passed":
        return Verdict(False, run.message or run.outcome)
    expected_checks = reference.checks
    if not expected_checks:
        return Verdict(False, "the reference run records no value for this test")
    if len(run.records) != len(expected_checks):
        return Verdict(
            False, f"recorded {len(run.records)} checks where the reference run records {len(expected_checks)}"
        )
    timer: TimerStart | None = None
    for index, (record, expected) in enumerate(zip(run.records, expected_checks, strict=True)):
        where = expected.get("site", "?")
        if expected["kind"] == "timer_start":
            timer = record if isinstance(record, TimerStart) else None
        # A timed block ends at the line after its stop (the next check, or the test's end): that
        # line cannot be sent before the block ran, even by a process that sends its stop early.
        after = run.records[index + 1].received if index + 1 < len(run.records) else run.ended
        try:
            problem = _check_problem(index, record, expected, snapshot, timer, after, run.opened_after)
        except BadRecord as error:
            problem = f"unreadable value ({error})"
        except Exception as error:  # noqa: BLE001 (whatever a value does to the judge fails its test only)
            problem = f"unreadable value ({type(error).__name__})"
        if problem:
            said = (messages or {}).get(where)
            return Verdict(False, f"{said} ({where}: {problem})" if said else f"{where}: {problem}")
    return Verdict(True)


def _check_problem(
    index: int,
    record: Record,
    expected: dict,
    snapshot: SnapshotLoader,
    timer: TimerStart | None,
    after: float | None,
    run_opened_after: float | None,
) -> str | None:
    """Why the check line ``record`` does not agree with the reference run's check ``expected``."""
    check = check_of(record)
    if check.get("kind") != expected["kind"]:
        return (
            f"check {index + 1} is a {str(check.get('kind'))[:20]!r} check"
            f" where the reference run makes a {expected['kind']!r} check"
        )
    elapsed = None
    if expected["kind"] == "timer_start" and timer is None:
        return NOT_ACKNOWLEDGED
    if expected["kind"] == "timer_stop":
        if timer is None or check.get("token") != timer.token:
            return NOT_ACKNOWLEDGED
        # From the line before the test's start at the latest: a test start held back until the
        # work was done does not shorten the block.
        since = timer.since if run_opened_after is None else min(timer.since, run_opened_after)
        elapsed = max(record.received, after if after is not None else record.received) - since
    return judge_check(check, expected, snapshot, elapsed)


def judge_stream(
    stream: Stream, reference: Stream, snapshot: SnapshotLoader, messages: Mapping[str, str] | None = None
) -> dict[str, Verdict]:
    """The verdict on every test of the reference stream."""
    return {
        nodeid: _judged(stream.tests.get(nodeid), ref, snapshot, messages) for nodeid, ref in reference.tests.items()
    }


def _judged(
    run: TestRun | None, reference: TestRun, snapshot: SnapshotLoader, messages: Mapping[str, str] | None
) -> Verdict:
    try:
        return judge_test(run, reference, snapshot, messages)
    except Exception as error:  # noqa: BLE001 (a last line of defence: one test fails, the grade goes on)
        return Verdict(False, f"could not be judged ({type(error).__name__})")


def read_snapshot(data: bytes) -> dict[str, np.ndarray]:
    """A trusted ``.npz`` snapshot (from the bundle), read without pickle."""
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


# ---------------------------------------------------------------------------------------------
# The tests' own words
# ---------------------------------------------------------------------------------------------

MESSAGE_CHECKS = ("check_close", "check_equal")  # the graded checks that take a ``message=``


def check_messages(sources: Mapping[str, bytes]) -> dict[str, str]:
    """The ``message=`` of every graded check in trusted test sources (path -> bytes), by site.

    A site is what ``tests/graded.py`` records (``test_nn_utils.py:49``: file name and the line the
    call starts on). Only literal strings count: a computed message may hold expected values, and
    the test modules that run next to submitted code have every message stripped
    (``autograder/strip_expected.py``), so the words come from here, never from a test process. A
    site that two files or two calls share gets none.
    """
    found: dict[str, str | None] = {}
    for path, data in sources.items():
        try:
            tree = ast.parse(data, filename=path)
        except (SyntaxError, ValueError):
            continue
        name = path.rsplit("/", 1)[-1]
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and (message := _literal_message(node)) is not None:
                site = f"{name}:{node.lineno}"
                found[site] = None if site in found else message
    return {site: message for site, message in found.items() if message}


def _literal_message(node: ast.AST) -> str | None:
    """The literal ``message=`` of a graded check call, else None."""
    if not isinstance(node, ast.Call):
        return None
    called = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
    if called not in MESSAGE_CHECKS:
        return None
    for keyword in node.keywords:
        if (
            keyword.arg == "message"
            and isinstance(keyword.value, ast.Constant)
            and isinstance(keyword.value.value, str)
        ):
            return " ".join(keyword.value.value.split())[:MAX_MESSAGE_CHARS]
    return None
