"""The record stream between a test process and the grader: timed blocks start on the grader's
acknowledgement and are timed by its clock, a flood of records cannot blow up the grader's memory,
and the results page's total counts only what students may see at once."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from autograder.grade import summary
from autograder.judge import judge_test, parse_stream
from autograder.sandbox import Limits, Record, TimerStart, _RecordCollector, run_pytest
from tests.graded import GraderDidNotAcknowledge, _Acks, encode

REPO_ROOT = Path(__file__).resolve().parents[1]
NODE = "test_timed.py::"

TIMED_TESTS = """
import time
from tests.graded import _acks, check_equal, record_check, time_limit

def test_waits_for_the_grader():
    with time_limit(5):
        time.sleep(0.3)
    check_equal(1, 1)

def test_runs_the_block_before_the_handshake():
    time.sleep(0.3)  # the block, before its start is even sent
    record_check("timer_start")
    record_check("timer_stop", limit=5, token=_acks.next_token(5))
    check_equal(1, 1)
"""


def compact(record: dict) -> bytes:
    return json.dumps(record, separators=(",", ":")).encode()


def reference_test(limit: float):
    """The reference run of a test with one timed block and one value."""
    checks = [
        {"t": "check", "kind": "timer_start", "site": "s"},
        {"t": "check", "kind": "timer_stop", "site": "s", "limit": limit},
        {"t": "check", "kind": "equal", "site": "s", "actual": encode(1), "against": "reference"},
    ]
    lines = [{"t": "start", "test": "x"}, *checks, {"t": "end", "test": "x", "outcome": "passed"}]
    return parse_stream(Record(0.0, compact(line)) for line in lines).tests["x"]


@pytest.fixture(scope="module")
def timed_run(tmp_path_factory: pytest.TempPathFactory):
    """TIMED_TESTS run by the grader's sandbox, with the real graded.py."""
    work = tmp_path_factory.mktemp("timed") / "work"
    (work / "tests").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "tests" / "graded.py", work / "tests" / "graded.py")
    (work / "conftest.py").write_text('pytest_plugins = ["tests.graded"]\n')
    (work / "test_timed.py").write_text(TIMED_TESTS)
    result = run_pytest(work, ["test_timed.py"], Limits(seconds=60, memory_bytes=4 << 30, file_bytes=1 << 30))
    assert result.problem is None, result.output_tail
    return result


def test_the_grader_acknowledges_each_timed_block_and_its_stop_carries_the_token(timed_run):
    stream = parse_stream(timed_run.records)
    for name in ("test_waits_for_the_grader", "test_runs_the_block_before_the_handshake"):
        start, stop, _ = stream.tests[NODE + name].records
        assert isinstance(start, TimerStart) and json.loads(stop.line)["token"] == start.token


@pytest.mark.parametrize("name", ["test_waits_for_the_grader", "test_runs_the_block_before_the_handshake"])
def test_a_block_is_timed_from_the_line_before_its_start(timed_run, name):
    run = parse_stream(timed_run.records).tests[NODE + name]
    assert judge_test(run, reference_test(limit=5), lambda _: None).passed
    slow = judge_test(run, reference_test(limit=0.25), lambda _: None)
    assert not slow.passed and "by the grader's clock; the limit is 0.25 s" in slow.reason


def test_a_timed_block_without_an_acknowledgement_fails_clearly():
    read_end, write_end = os.pipe()
    try:
        acks = _Acks()
        acks.fd = read_end
        with pytest.raises(GraderDidNotAcknowledge, match="did not acknowledge the start of the timed block"):
            acks.next_token(0.2)
        os.write(write_end, b"abc\ndef\n")
        assert (acks.next_token(1), acks.next_token(1)) == ("abc", "def")
    finally:
        os.close(read_end)
        os.close(write_end)


def test_the_collector_answers_timer_starts_with_fresh_tokens_and_the_previous_arrival():
    read_end, write_end = os.pipe()
    try:
        collector = _RecordCollector(1 << 20, write_end)
        opened = time.monotonic()
        timer_start = compact({"t": "check", "kind": "timer_start", "site": "s"})
        collector.take(timer_start + b"\n", opened + 1)  # no line before it: timed from the opening
        collector.take(b'{"t":"start","test":"x"}\n', opened + 2)
        collector.take(timer_start + b"\n" + timer_start + b"\n", opened + 3)
        first, _, second, third = collector.records
        assert first.since <= opened and (second.since, third.since) == (opened + 2, opened + 3)
        tokens = os.read(read_end, 1000).decode().split()
        assert tokens == [first.token, second.token, third.token] and len(set(tokens)) == 3
    finally:
        os.close(read_end)
        os.close(write_end)


# --- the grader's memory under a flood of records ----------------------------------------------

FLOOD = """
import json, resource, sys
from autograder.judge import judge_stream, parse_stream
from autograder.sandbox import Record, _RecordCollector

cap = int(sys.argv[1])
check = b'{"t":"check","kind":"equal","site":"s","actual":null}\\n'
start, end = b'{"t":"start","test":"t::%d"}\\n', b'{"t":"end","test":"t::%d","outcome":"passed"}\\n'
lines = [(start % 0).strip(), *[check.strip()] * 1000, (end % 0).strip()]
reference = parse_stream(Record(0.0, line) for line in lines)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
collector = _RecordCollector(cap)
test = 0
while not collector.overflowed:  # tests of 1000 tiny checks each
    lines = [start % test, check * 1000, end % test]
    collector.take(b"".join(lines), 1.0)
    test += 1
verdicts = judge_stream(parse_stream(collector.records), reference, lambda name: None)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
grown = (after - before) * 1024
print(json.dumps({"grown_bytes": grown, "records": len(collector.records), "passed": verdicts["t::0"].passed}))
"""


def test_a_flood_of_records_grows_the_grader_by_about_the_cap():
    cap = 64 << 20
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(FLOOD), str(cap)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    measured = json.loads(result.stdout)
    assert measured["passed"] and measured["records"] > 300_000
    assert measured["grown_bytes"] < 1.5 * cap, measured


# --- what the results page says at once ------------------------------------------------------------


def test_the_total_shown_at_once_counts_only_visible_entries():
    tests = [
        {"name": "Allowed imports", "score": 0, "max_score": 0, "visibility": "visible"},
        {"name": "Part 1: train_bpe (public tests)", "score": 7.5, "max_score": 7.5, "visibility": "visible"},
        {"name": "Part 1: train_bpe (hidden tests)", "score": 3.75, "max_score": 7.5, "visibility": "after_published"},
        {"name": "Part 4A", "score": 6, "max_score": 12, "visibility": "after_published"},
        {"name": "Review flags", "score": 0, "max_score": 0, "visibility": "hidden"},
        {"name": "Part 2: rope (public tests)", "score": 2.5, "max_score": 2.5, "visibility": "visible"},
    ]
    text = summary(tests)
    assert text.splitlines()[0] == "Total of the entries shown now: 10 points."
    assert "19.75" not in text and "13.75" not in text and "3.75" not in text and "Part 4A" not in text
    assert "  Part 1: train_bpe (public tests): 7.5/7.5" in text


def test_results_json_holds_only_printable_text(tmp_path: Path) -> None:
    """What a submission's messages carry (lone surrogates, NUL, escape sequences) never reaches
    results.json, which strict JSON readers must accept."""
    from autograder.grade import write_results

    message = "bad \ud800 char \x00 nul \x1b[31m red\tand\nnewline"
    write_results({"score": 0, "tests": [{"name": "x", "output": message}]}, tmp_path / "results.json")
    data = (tmp_path / "results.json").read_bytes()
    data.decode("utf-8", errors="strict")
    text = json.loads(data)["tests"][0]["output"]
    assert text == "bad \ufffd char \ufffd nul \ufffd[31m red\tand\nnewline"
    assert b"\\ud800" not in data and b"\\u0000" not in data
